"""Characters are Unicode code points; the vocabulary maps them to indices."""

from __future__ import annotations

import codecs
import re

import numpy as np

REPLACEMENT = "\ufffd"
_ESCAPED = re.compile("[\udc80-\udcff]")


class Vocab:
    """An ordered list of characters. Index order never changes: growing the
    vocabulary appends, so weights learned for old characters stay put."""

    def __init__(self, chars=()):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("vocabulary has repeated characters")
        if any(not isinstance(c, str) or len(c) != 1 for c in self.chars):
            raise ValueError("vocabulary entries must be single characters")
        self.index = {c: i for i, c in enumerate(self.chars)}
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._order = np.argsort(codes)
        self._sorted = codes[self._order]

    def __len__(self):
        return len(self.chars)

    def __contains__(self, char):
        return char in self.index

    def missing(self, text):
        """Characters of text not in the vocabulary, in code point order."""
        return sorted(set(text) - self.index.keys())

    def extended(self, chars) -> Vocab:
        return Vocab(self.chars + [c for c in chars if c not in self.index])

    def encode(self, text):
        """Indices of text's characters; -1 for characters not in the vocabulary."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
        if not len(self.chars):
            return np.full(len(codes), -1, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, codes), len(self._sorted) - 1)
        return np.where(self._sorted[pos] == codes, self._order[pos], -1)

    def decode(self, indices):
        return "".join(self.chars[i] for i in indices)


class Decoder:
    """Incremental UTF-8 decoding that turns each invalid byte into U+FFFD and
    counts them, for text that arrives in pieces of arbitrary size."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.replaced = 0

    def decode(self, data: bytes, final=False) -> str:
        text = self._decoder.decode(data, final)
        text, n = _ESCAPED.subn(REPLACEMENT, text)
        self.replaced += n
        return text


def decode(data: bytes) -> tuple[str, int]:
    """Whole-buffer version of Decoder: (text, invalid bytes replaced)."""
    d = Decoder()
    return d.decode(data, final=True), d.replaced
