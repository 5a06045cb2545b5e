"""Reading text input as it arrives: bytes from file descriptors, decoded as
UTF-8 piece by piece, handed over in blocks of bounded size.

Memory is bounded by the block size, not by the input: a block is handed over
as soon as it holds `ready_chars` characters and no more input is waiting, when
the input has been idle for `idle` seconds with at least `idle_chars`
characters buffered (so `tail -f log | rnnpipe train` learns as lines come),
when it reaches `block_chars`, and at the end of the input.

This module imports no numpy, so the command line starts fast.
"""

from __future__ import annotations

import io
import os
import select
import stat
import time

from .vocab import Decoder

READ_BYTES = 1 << 20  # the most one os.read asks for
BLOCK_CHARS = 1 << 20  # the largest block handed over (about 1 MB of ASCII)
IDLE = 0.5  # seconds of silence after which a short buffer is handed over
POLL = 0.2  # seconds between checks of `stopped` while waiting for input


class InputError(Exception):
    """An input cannot be opened or read; the message names it."""


BINARY_SNIFF = 1 << 16  # bytes of each input looked at to tell binary data from text
BINARY_INVALID = 0.1  # the share of invalid UTF-8 among them that makes an input binary


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

    def close(self):
        if self._close and self.fd is not None:
            os.close(self.fd)
            self.fd = None


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
                fd = os.open(path, os.O_RDONLY)
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


def known_size(sources):
    """Total bytes of the inputs when every one has a known size, else None."""
    sizes = [s.size for s in sources]
    return None if any(n is None for n in sizes) else sum(sizes)


class TextReader:
    """Iterate over `blocks()` to get the inputs' text in blocks (str)."""

    def __init__(
        self,
        sources,
        *,
        ready_chars=2,
        idle_chars=2,
        block_chars=BLOCK_CHARS,
        idle=IDLE,
        stopped=None,
        binary_ok=True,
    ):
        self.sources = sources
        self.binary_ok = binary_ok  # False: refuse input that is evidently not text
        self.ready_chars = max(ready_chars, 1)  # hand over as soon as this much is here and nothing waits
        self.idle_chars = max(idle_chars, 1)  # hand over this much after `idle` seconds of silence
        self.block_chars = block_chars
        self.idle = idle  # None: never hand over early (wait for block_chars or the end)
        self.stopped = stopped or (lambda: False)
        self.chars = 0  # characters read so far
        self.bytes = 0  # bytes read so far
        self.replaced = 0  # invalid UTF-8 bytes turned into U+FFFD
        self._buffered = 0  # characters read but not handed over yet

    @property
    def rereadable(self):
        """Whether every input can be read again (see again())."""
        return all(s.rereadable for s in self.sources)

    def again(self):
        """The inputs' blocks once more, from where they started: another
        pass over files read from disk, not kept in memory."""
        for source in self.sources:
            source.rewind()
        return self.blocks()

    def blocks(self):
        """The inputs' text in blocks. The caller closes the sources."""
        buf, self._buffered = [], 0
        for source in self.sources:
            for piece, waiting in self._pieces(source):
                if piece:
                    buf.append(piece)
                    self._buffered += len(piece)
                    self.chars += len(piece)
                if self._buffered and (self._buffered >= self.block_chars or not waiting):
                    yield "".join(buf)
                    buf, self._buffered = [], 0
                if self.stopped():
                    return
        if buf:
            yield "".join(buf)

    def _pieces(self, source):
        """Yield (text, waiting): text read from source (may be ""), and
        whether the caller should keep buffering rather than hand over now."""
        decoder = Decoder()
        sniff = None if self.binary_ok else _Sniffer(source.name)
        try:
            pieces = (
                self._pieces_fileobj(source.fileobj, decoder)
                if source.fd is None
                else self._pieces_fd(source.fd, decoder)
            )
            for text, waiting in pieces:
                if sniff is not None and sniff(text, decoder.replaced):
                    sniff = None  # looked at enough of it: text
                yield text, waiting
        finally:
            self.replaced += decoder.replaced

    def _pieces_fileobj(self, f, decoder):
        while True:
            data = f.read(READ_BYTES)
            if not data:
                text = decoder.decode(b"", final=True) if not isinstance(data, str) else ""
                yield text, True
                return
            if isinstance(data, str):
                self.bytes += len(data.encode("utf-8", "surrogatepass"))
                yield data, True
            else:
                self.bytes += len(data)
                yield decoder.decode(data), True

    def _pieces_fd(self, fd, decoder):
        pollable = True
        last_data = time.monotonic()
        while True:
            if self.stopped():
                return
            if pollable:
                n = self._buffered
                if self.idle is None or n < self.idle_chars:
                    deadline = None  # wait for input, however long
                elif n >= self.ready_chars:
                    deadline = time.monotonic()  # enough is here: take only what is already waiting
                else:
                    deadline = last_data + self.idle  # a little is here: wait a while for more
                ready = self._wait(fd, deadline)
                if ready is None:
                    pollable = False
                elif not ready:
                    if deadline is not None and time.monotonic() >= deadline:
                        yield "", False  # hand over what is buffered
                    continue
            try:
                data = os.read(fd, READ_BYTES)
            except OSError as e:
                raise InputError(f"cannot read input: {e.strerror}") from None
            if not data:
                yield decoder.decode(b"", final=True), True
                return
            last_data = time.monotonic()
            self.bytes += len(data)
            yield decoder.decode(data), True

    @staticmethod
    def _wait(fd, deadline):
        """True when fd has input (or its end) waiting, False when none came
        before the deadline or within POLL seconds (so the caller can check
        `stopped`), None when fd cannot be polled."""
        timeout = POLL if deadline is None else min(POLL, max(0.0, deadline - time.monotonic()))
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
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
