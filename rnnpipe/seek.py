"""Where a run is in its text (train.Position, after every update), and
continuing an interrupted pass: finding, in the text a run is given, the
place where the last run stopped, and checking on the way that it is the
text that run read.

A file is read again from its start and what was trained on is skipped. A
pipe cannot be asked for its text again, so the text piped now is compared
with the last run's fingerprints of its pass as it arrives (Position.head:
the first HEAD characters; Position.digest: up to the end of the block the
run stopped in), and kept aside (a temporary file) until it has matched: if
it does not, the run starts a new pass on all of it, nothing lost."""

from __future__ import annotations

import hashlib
import itertools
import tempfile
import time

from . import schedule
from .plan import Position, sha

HEAD = 1024  # characters of a piped pass whose fingerprint is checked first, before skipping any


class Seek:
    """What train.Run does to record where it is and to continue the
    interrupted run's pass (a part of Run, kept here: its offset, held-out
    text and fingerprints are Run's)."""

    def position(self, chunk, state):
        """Where the run is after an update (model.resume): what the next run seeks."""
        cfg = self.model.config
        b = self.budget
        seconds = b.seconds + time.monotonic() - self.start if b.max_time else 0.0  # no clock in a file that needs none
        # by hand, as Budget.to_dict is: this runs after every update (dataclasses.replace costs 3x)
        spent = schedule.Budget(b.kind, b.total, b.max_time, b.chars + self.trained, seconds, b.start)
        pipe = self.hash is not None
        return Position(self.inputs, self.epoch, self.epochs, self.offset, chunk, state, cfg.batch_size,
                        cfg.seq_length, self.held.fraction, self.pass_chars, spent.to_dict(), self.block_chars,
                        self.head_digest if pipe else None, self.digest if pipe else None,
                        best=None if self.held.best is None else self.held.best.bits)  # fmt: skip

    def seek(self, pieces, N):
        """Continue the interrupted run's pass: skip the text it trained on
        before its block, then train that block, cut to the same length, from
        the chunk it stopped at. A pipe is checked on the way to be the text
        the run read (Position.head and digest): if it is not, a new pass
        starts on everything read. Returns the pieces left and the
        characters read."""
        r = self.resume
        pipe = not self.rereadable
        end = r.offset + (r.block or N + 1)
        head = min(HEAD, end)
        spool = tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogatepass") if pipe else None
        pending, read, checked, last = "", 0, not pipe or r.head is None, False
        for piece in pieces:
            if piece is None:
                self.poll()
                continue
            pending += piece
            read += len(piece)
            if not checked and len(pending) >= head:
                if sha(pending[:head]) != r.head:
                    return self.mismatch(spool, pending, pieces)
                checked = True
            if not pipe:
                self.tell()
            while checked and self.offset < r.offset and len(pending) > min(N, r.offset - self.offset):
                n = min(N, r.offset - self.offset)
                self.skip(pending[: n + 1], n, spool)
                pending = pending[n:]
            # a full block is cut as soon as it is there; a shorter one ended its pass, unless more text follows
            if self.offset >= r.offset and len(pending) - (end - r.offset) >= (0 if end - r.offset > N else 1):
                break
        else:
            last = True  # the block ended its pass: what is left after it goes unused, as it did
        if pipe:
            if self.offset < r.offset or len(pending) < end - r.offset or not checked:
                return self.mismatch(spool, pending, pieces)  # the text ended sooner than the run's did
            self.fingerprint(pending[: end - r.offset])
            if self.hash.hexdigest() != r.digest:
                return self.mismatch(spool, pending, pieces)
            self.tell()
        used = self.block(pending[: end - r.offset])
        if last:
            return iter(()), read
        return itertools.chain([pending[used:]], pieces), read - len(pending) + used

    def skip(self, text, used, spool):
        """Pass over a block the interrupted run trained on (text, used up
        to its last character): its held-out tail is held out again."""
        self.held.cut(text)
        if spool is not None:
            self.fingerprint(text)
            spool.write(text[:used])
        self.offset += used
        self.skipped += used

    def mismatch(self, spool, pending, pieces):
        """The pipe brings other text than the interrupted run read: a new
        pass on all of it, what was skipped included."""
        self.note = "the input is not the text the interrupted run read: starting a new pass"
        self.tell()
        self.resume, self.offset, self.skipped, self.carry = None, 0, 0, None
        self.held.text = ""
        self.held.begin()
        self.hash, self.hashed, self.head = hashlib.sha256(), 0, ""
        spool.seek(0)
        replay = iter(lambda: spool.read(1 << 20), "")
        return itertools.chain(replay, [pending], pieces), 0

    def fingerprint(self, text):
        """Add a pipe's block (text, from self.offset) to the pass's fingerprints."""
        new = text[self.hashed - self.offset :]
        if len(self.head) < HEAD:
            self.head += new[: HEAD - len(self.head)]
        self.hash.update(new.encode("utf-8", "surrogatepass"))
        self.hashed = self.offset + len(text)
