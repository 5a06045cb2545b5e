"""Surprise per line: how many bits per character a model needs for each
line of a text, the core of `rnnpipe score` and %charrnn_score.

The text is read as `rnnpipe eval` reads it (evaluate.py), one continuous
stream from the zero state: each character is predicted from all the known
characters before it, across line ends, and characters the model has never
seen are skipped (neither predicted nor context) and counted. A line's score
is the surprise of its characters, its newline included, so the lines' bits
add up to eval's total for the same text (up to eval's tolerance, TOL in
evaluate.py: eval reads many parts of a text side by side, this reads one).

Unlike eval, which waits for a window of 262,144 characters to read it in
parallel, this reads one step after another from the state the last piece
left, so each line can be written as soon as its newline arrives (a log
followed with tail -f); memory is bounded by the pieces fed and by LONGEST
characters of one line, whatever the length of the text.

The model may change between pieces (`rnnpipe score --learn` trains it on
each line after scoring it): the next piece is read with the new weights, and
a grown vocabulary, from the state the old ones left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cells import net

CHUNK = 128  # time steps per forward call: the fastest measured (64 to 256 within 10%), memory flat
LONGEST = 1 << 20  # characters of one line kept for writing out; a longer line is scored whole, kept cut


@dataclass
class Line:
    """One line's score.

    number: its line number, from 1
    text: the line, its newline included (the last line of a text may have none); cut after LONGEST characters
    length: its length in characters, before any cut
    bits: the surprise of its scored characters added up, -log2 of the probability of each
    chars: characters scored (known, and not the first known character of the text)
    unknown: characters the model has never seen, skipped
    worst: the position in the line (from 0) of its most surprising character, None when none was scored
    worst_prob: the probability the model gave that character
    surprise: per character bits (NaN where not scored), when the scorer was asked to keep them
    """

    number: int
    text: str
    length: int
    bits: float
    chars: int
    unknown: int
    worst: int | None
    worst_prob: float | None
    surprise: np.ndarray | None = None

    @property
    def bits_per_char(self):
        """Mean surprise of its scored characters; NaN when none was (a line the model knows none of)."""
        return self.bits / self.chars if self.chars else math.nan

    @property
    def cut(self):
        return len(self.text) < self.length


class LineScorer:
    """Lines of a text fed as str pieces of any size, in order: feed() gives
    the lines its piece completed, finish() the last one when the text does
    not end with a newline. keep_surprise: also keep each line's per
    character surprise (Line.surprise)."""

    def __init__(self, model, *, keep_surprise=False):
        self.model = model
        self.keep_surprise = keep_surprise
        # what the prepared weights were prepared from (the model's buffers, at which update): a changed model is
        # prepared again
        self._weights = self._at = None
        self.prepared = None
        self.state = None
        self.prev = None  # the last known character's index: the input that predicts the next one
        self.lines = 0  # lines completed
        self.chars = 0  # characters scored, over the whole text
        self.unknown = 0
        self.bits = 0.0
        self._open()

    def _open(self):
        """A new line: nothing of it read yet."""
        self._parts, self._kept, self._length = [], 0, 0
        self._bits, self._chars, self._unknown = 0.0, 0, 0
        self._worst, self._worst_bits = None, -math.inf
        self._surprise = []

    def _ready(self):
        """Prepare the model's current weights, once per change (training, a grown vocabulary)."""
        m = self.model
        m.sync()
        # the buffers themselves, held (an id() could be reused): new arrays (own, restore) are prepared again
        at = (m.iterations, len(m.vocab))
        if self._weights is not m.buffers or at != self._at:
            self.prepared = net.prepare(m.params, m.config)
            self._weights, self._at = m.buffers, at
        if self.state is None:
            self.state = net.zero_state(m.config, 1)

    def surprise(self, text):
        """Bits of each character of text (NaN where not scored), read on
        from where the text fed before ended; moves the stream on."""
        return self._read(text)[0]

    def _read(self, text):
        """(surprise, whether the model knows each character) of text, read on from the stream's state."""
        self._ready()
        m = self.model
        ix = m.vocab.encode(text)
        where = np.flatnonzero(ix >= 0)
        kix = ix[where]
        self.unknown += len(text) - len(kix)
        out = np.full(len(text), np.nan)
        if not len(kix):
            return out, ix >= 0
        # the character before each known one predicts it; the first known character of the text has none
        inputs = kix[:-1] if self.prev is None else np.concatenate([[self.prev], kix[:-1]])
        targets, at = (kix[1:], where[1:]) if self.prev is None else (kix, where)
        nats = np.empty(len(targets))
        for start in range(0, len(inputs), CHUNK):
            X = inputs[start : start + CHUNK].reshape(-1, 1)
            hs, self.state, _ = net.forward(m.params, m.config, X, self.state, prepared=self.prepared)
            logp = net.log_softmax(net.logits(m.params, hs))
            nats[start : start + len(X)] = -logp[np.arange(len(X)), targets[start : start + len(X)]]
        self.prev = int(kix[-1])
        out[at] = nats / math.log(2)
        return out, ix >= 0

    def feed(self, text):
        """Score text, the next piece of the stream; returns the Lines it completed."""
        if not text:
            return []
        bits, known = self._read(text)
        done, start = [], 0
        while start < len(text):
            end = text.find("\n", start)
            end = len(text) if end < 0 else end + 1
            self._add(text[start:end], bits[start:end], known[start:end])
            if text[end - 1] == "\n":
                done.append(self._close())
            start = end
        return done

    def finish(self):
        """The last line, when the text did not end with a newline (else None)."""
        return self._close() if self._length else None

    def _add(self, part, bits, known):
        scored = ~np.isnan(bits)
        n = int(scored.sum())
        if n:
            i = int(np.nanargmax(bits))
            if bits[i] > self._worst_bits:
                self._worst, self._worst_bits = self._length + i, float(bits[i])
            self._bits += float(bits[scored].sum())
        self._chars += n
        self._unknown += len(part) - int(known.sum())
        room = LONGEST - self._kept
        if room > 0:
            self._parts.append(part[:room])
            if self.keep_surprise:
                self._surprise.append(bits[:room])
            self._kept += min(room, len(part))
        self._length += len(part)

    def _close(self):
        self.lines += 1
        line = Line(
            number=self.lines,
            text="".join(self._parts),
            length=self._length,
            bits=self._bits,
            chars=self._chars,
            unknown=self._unknown,
            worst=self._worst,
            worst_prob=None if self._worst is None else 2.0**-self._worst_bits,
            surprise=np.concatenate(self._surprise) if self.keep_surprise and self._surprise else None,
        )
        self.chars += line.chars
        self.bits += line.bits
        self._open()
        return line
