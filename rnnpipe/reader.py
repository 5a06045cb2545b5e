"""Reading text input as it arrives: bytes from file descriptors, decoded as
UTF-8 piece by piece, handed over as read, in pieces of bounded size.

Memory is bounded by the piece size, not by the input. How the reads fall
does not matter to training (train.py cuts blocks by character position).
While a pipe is silent the reader says so every POLL seconds (a None among
the pieces), so that training can learn from what has arrived
(`tail -f log | rnnpipe train`) and stop on time. Files are read again for
each pass; stdin can be spooled to a temporary file for them.

This module imports no numpy, so the command line starts fast.
"""

from __future__ import annotations

import hashlib
import io
import os
import select
import stat
import tempfile

from .vocab import Decoder

READ_BYTES = 1 << 20  # the most one os.read asks for
BLOCK_CHARS = 1 << 20  # the largest piece handed over (about 1 MB of ASCII)
POLL = 0.2  # seconds between word that nothing came (None), while waiting for input


def lone_surrogate(text):
    """Words for the first lone surrogate in text (half of a UTF-16 pair, which
    no UTF-8 file can hold, so a model that learned it could not be saved), or
    None when there is none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"the text holds a lone surrogate, U+{ord(text[e.start]):04X}, at character {e.start}: not text"
    return None


class InputError(Exception):
    """An input cannot be opened or read; the message names it."""


FINGERPRINT_BYTES = 1 << 20  # bytes at each end of a file that its fingerprint covers
BINARY_SNIFF = 1 << 16  # bytes of each input looked at to tell binary data from text
BINARY_INVALID = 0.1  # the share of invalid UTF-8 among them that makes an input binary
_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8 bytes that continue a character


class Source:
    """One input: a file descriptor we read bytes from, or (for streams
    injected in tests) a file object."""

    def __init__(self, name, fd=None, fileobj=None, size=None, close=False):
        self.name, self.fd, self.fileobj, self.size, self._close = name, fd, fileobj, size, close
        self.start = None
        if fd is not None and size is not None:  # a regular file: it can be read again from here
            self.start = os.lseek(fd, 0, os.SEEK_CUR)

    @property
    def rereadable(self):
        """Whether the input is a named regular file that can be read again
        (stdin is read once, even when it is a redirected file)."""
        return self.start is not None and self.name != "<stdin>"

    def rewind(self):
        os.lseek(self.fd, self.start, os.SEEK_SET)

    def describe(self):
        """What this input is, for telling whether a later run reads the same:
        its name, and for a file its size and a fingerprint of its content
        (SHA-256 of the size, the first and the last MiB: cheap for any size,
        and changed by any edit that changes the size or touches either end)."""
        if not self.rereadable:
            return {"name": self.name}
        here = os.lseek(self.fd, 0, os.SEEK_CUR)
        try:
            h = hashlib.sha256(str(self.size).encode())
            head = min(self.size, FINGERPRINT_BYTES)
            h.update(_read_at(self.fd, self.start, head))
            tail = max(head, self.size - FINGERPRINT_BYTES)
            h.update(_read_at(self.fd, self.start + tail, self.size - tail))
        finally:
            os.lseek(self.fd, here, os.SEEK_SET)
        return {"name": self.name, "size": self.size, "fingerprint": h.hexdigest()}

    def chars(self):
        """Characters in a file (None for a pipe), counted without decoding:
        every byte but UTF-8's continuation bytes starts one (exact for valid
        UTF-8; each invalid byte, which becomes U+FFFD, is near enough)."""
        if not self.rereadable:
            return None
        here, n, left = os.lseek(self.fd, 0, os.SEEK_CUR), 0, self.size
        try:
            os.lseek(self.fd, self.start, os.SEEK_SET)
            while left > 0:
                data = os.read(self.fd, min(left, READ_BYTES))
                if not data:
                    break
                n += len(data.translate(None, _CONTINUATION))
                left -= len(data)
        finally:
            os.lseek(self.fd, here, os.SEEK_SET)
        return n

    def close(self):
        if self._close and self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _read_at(fd, offset, n):
    os.lseek(fd, offset, os.SEEK_SET)
    parts = []
    while n > 0:
        data = os.read(fd, min(n, READ_BYTES))
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def _remaining(fd):
    """Bytes left to read on fd when it is a regular file, else None."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)
    except OSError:
        return None


def _stdin_source(stdin):
    if stdin is None:  # the process started with its standard input closed (`<&-`)
        raise InputError("cannot read stdin: it is closed; give a FILE")
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return Source("<stdin>", fileobj=stdin)
    return Source("<stdin>", fd=fd, size=_remaining(fd))


def open_inputs(paths, stdin):
    """Open every input before anything else happens, so a missing or
    unreadable file is reported before training starts. No paths, or "-",
    mean stdin."""
    sources = []
    try:
        for path in paths or ["-"]:
            if path == "-":
                sources.append(_stdin_source(stdin))
                continue
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # Windows: no newline translation
            except OSError as e:
                raise InputError(f"cannot read {path}: {e.strerror}") from None
            sources.append(Source(path, fd=fd, size=_remaining(fd), close=True))
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InputError(f"cannot read {path}: it is a directory")
    except BaseException:
        for s in sources:
            s.close()
        raise
    return sources


def _cut_short():
    """`stopped` said stop while text was being read: end training there.
    Ending the iteration instead would pass the text read so far off as the
    whole pass (trained as its last block, the pass taken for finished)."""
    from .errors import Stop

    raise Stop("stopped")


class TextReader:
    """Iterate over `blocks()` to get the inputs' text as it arrives, in
    pieces of at most `block_chars` characters; None among them means that
    nothing came for POLL seconds on a pipe (so training can learn from what
    has arrived, `tail -f log | rnnpipe train`, and stop on time)."""

    def __init__(self, sources, *, block_chars=BLOCK_CHARS, stopped=None, binary_ok=True, spool=False):
        self.sources = sources
        self.binary_ok = binary_ok  # False: refuse input that is evidently not text
        self.block_chars = block_chars
        self.stopped = stopped or (lambda: False)
        self.chars = 0  # characters read so far, over all passes
        self.bytes = 0  # bytes read in the first pass
        self.replaced = 0  # invalid UTF-8 bytes turned into U+FFFD, in the first pass
        self.passes = 0
        # stdin read once, kept in an unnamed temporary file for the later passes
        self._spool = tempfile.TemporaryFile() if spool else None

    @property
    def rereadable(self):
        """Whether every input can be read again (see again())."""
        return all(s.rereadable for s in self.sources)

    def again(self):
        """The inputs' blocks once more, from where they started: another
        pass over files read from disk, or over the spooled copy of stdin,
        not kept in memory."""
        if not self.passes:  # the first pass: nothing read yet
            return self.blocks()
        if self._spool is not None:
            self._spool.flush()
            size = self._spool.seek(0, os.SEEK_END)
            self._spool.seek(0)
            self.sources = [Source(self.sources[0].name, fd=self._spool.fileno(), size=size)]
            self._spooled, self._spool = self._spool, None  # complete: read it from now on, do not write it
        else:
            for source in self.sources:
                source.rewind()
        return self.blocks()

    def blocks(self):
        """The inputs' text. The caller closes the sources."""
        self.passes += 1
        for source in self.sources:
            for piece in self._pieces(source):
                if piece is None:
                    yield None
                for start in range(0, len(piece or ""), self.block_chars):
                    chunk = piece[start : start + self.block_chars]
                    self.chars += len(chunk)
                    yield chunk
                if self.stopped():
                    _cut_short()

    def _pieces(self, source):
        """Yield text read from source as it comes (may be ""), and None
        after each POLL seconds of silence."""
        decoder = Decoder()
        sniff = None if self.binary_ok else _Sniffer(source.name)
        try:
            pieces = (
                self._pieces_fileobj(source.fileobj, decoder)
                if source.fd is None
                else self._pieces_fd(source.fd, decoder)
            )
            for text in pieces:
                if text is not None and sniff is not None and sniff(text, decoder.replaced):
                    sniff = None  # looked at enough of it: text
                yield text
        finally:
            if self.passes == 1:
                self.replaced += decoder.replaced

    def _pieces_fileobj(self, f, decoder):
        while True:
            data = f.read(READ_BYTES)
            if not data:
                yield decoder.decode(b"", final=True) if not isinstance(data, str) else ""
                return
            if isinstance(data, str):
                self._count(data.encode("utf-8", "surrogatepass"))
                yield data
            else:
                self._count(data)
                yield decoder.decode(data)

    def _count(self, data):
        if self.passes == 1:
            self.bytes += len(data)
            if self._spool is not None:
                self._spool.write(data)

    def _pieces_fd(self, fd, decoder):
        pollable = True
        while True:
            if self.stopped():
                _cut_short()
            if pollable:
                ready = self._wait(fd)
                if ready is None:
                    pollable = False
                elif not ready:
                    yield None  # nothing new yet: the caller may act on what it has
                    continue
            try:
                data = os.read(fd, READ_BYTES)
            except OSError as e:
                raise InputError(f"cannot read input: {e.strerror}") from None
            if not data:
                yield decoder.decode(b"", final=True)
                return
            self._count(data)
            yield decoder.decode(data)

    @staticmethod
    def _wait(fd):
        """True when fd has input (or its end) waiting, False when none came
        within POLL seconds, None when fd cannot be polled."""
        try:
            ready, _, _ = select.select([fd], [], [], POLL)
        except (OSError, ValueError):
            return None
        return bool(ready)


class _Sniffer:
    """Tells binary input from text as grep does, from the first BINARY_SNIFF
    bytes: a NUL byte, or more than BINARY_INVALID of them invalid UTF-8.
    Called with each decoded piece; raises InputError for binary data, and
    returns True once it has seen enough to call it text."""

    def __init__(self, name):
        self.name, self.chars = name, 0

    def __call__(self, text, replaced):
        if "\0" in text:
            raise InputError(f"{self.name}: binary data, not text (it has NUL bytes); --binary trains on it anyway")
        self.chars += len(text)
        if replaced > BINARY_INVALID * max(self.chars, 1) and self.chars >= 16:
            raise InputError(
                f"{self.name}: binary data, not text ({replaced} of its first {self.chars} characters are invalid "
                "UTF-8); --binary trains on it anyway"
            )
        return self.chars >= BINARY_SNIFF
