"""The training loop: truncated BPTT over parallel streams, reporting
through a callback so the CLI and the notebook each show progress their own
way.

How text becomes streams does not depend on how it is delivered. A pass over
the text is cut into blocks by character position alone: each block is
`block_length(config)` characters (about a million), cut into batch_size
contiguous streams of equal length, plus one character of overlap so the
transition from one block to the next is learned too. The last stream of a
block continues into the first stream of the next, so that stream alone
carries its hidden state across; every other stream starts from zero, as it
starts in the middle of text it has not seen. A pipe's reads therefore
cannot change what is learned: a file, `cat file |` and a writer sending it
in pieces train the same model, bit for bit.

Two exceptions, both documented for users: text that cannot be read again
(a pipe) is trained on as a shorter block once its oldest character not yet
trained on has waited LATENCY seconds, so `tail -f log | rnnpipe train`
learns from lines soon after they come (delivery can change the model only
for a pipe slower than a block per LATENCY seconds); and the last block of a
pass is whatever is left, with fewer streams if it is short (up to
batch_size - 1 characters at its very end go unused).

Where a run stops early (a time limit, Ctrl-C) it leaves its position in
model.resume, which the model file keeps, so the next run on the same input
continues exactly where this one stopped (seek.py: the same text piped
again is recognised by its fingerprint, and what was trained on skipped)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time

import numpy as np

from . import schedule
from .cells import net
from .errors import Stop
from .guard import Diverged, Guard  # noqa: F401  (Diverged: raised through Model.train, by this name too)
from .holdout import Holdout
from .plan import Options, Position, sha  # noqa: F401  (Options, Position: by these names too)
from .progress import Progress
from .reader import InputError, lone_surrogate
from .sample import generate
from .seek import Seek

BLOCK_CHARS = 1 << 20  # about this many characters make one block of streams
LATENCY = 2.0  # seconds a pipe's text waits, at most, before it is trained on as a shorter block


class VocabularyFull(ValueError):
    """The text has more distinct characters than the run allows."""


def block_length(config):
    """Characters in a full block: a whole number of chunks for every stream."""
    per_chunk = config.batch_size * config.seq_length
    return per_chunk * max(1, -(-BLOCK_CHARS // per_chunk))


def batches(ix, seq_length, batch_size):
    """Cut a block of indices into contiguous streams and yield (X, Y) chunks,
    each (time, streams). A block too short for batch_size streams of
    seq_length gets fewer streams; the last chunk may be shorter."""
    B, L = layout(len(ix), seq_length, batch_size)
    starts = np.arange(B) * L
    for p in range(0, L, seq_length):
        pos = starts[None, :] + np.arange(p, min(p + seq_length, L))[:, None]
        yield ix[pos], ix[pos + 1]


def layout(n_chars, seq_length, batch_size):
    """(streams, characters each) that batches cuts n_chars characters into:
    the streams predict characters 1 to B*L, so B*L + 1 are used."""
    n = n_chars - 1
    B = max(1, min(batch_size, n // seq_length))
    return B, n // B


class Run(Seek):
    """One call of Model.train: the loop and its bookkeeping.

    options: train.Options; budget: the learning-rate schedule's;
    resume: the Position to continue from (None: a new pass); note: what to
    tell the user about it, once text arrives; inputs: what the text is;
    rereadable: whether it can be read again (a file, a str); pass_chars:
    characters in one pass, when known; total: characters this run will
    train on, when known (for progress); best: the best model an earlier
    run measured, which this one continues (holdout.go_on)."""

    def __init__(self, model, options, *, budget=None, resume=None, note=None, inputs=(), rereadable=True,
                 pass_chars=None, total=None, callback=None, stop=None, max_time=None, report_every=1.0,
                 sample_length=200, valid_every=10.0, best=None):  # fmt: skip
        self.model, self.options, self.callback, self.stop = model, options, callback, stop
        self.max_time = max_time  # this invocation's time limit (what is left of it, for a continued run)
        self.report_every, self.sample_every, self.sample_length = report_every, options.sample_every, sample_length
        self.valid_every, self.total = valid_every, total
        self.inputs, self.rereadable, self.max_vocab = list(inputs), rereadable, options.max_vocab
        self.pass_chars = pass_chars
        self.resume, self.note = resume, note
        self.budget = budget or schedule.Budget("none", None, None)  # the learning-rate schedule's
        self.trained = 0  # characters trained on in this run (what the schedule counts)
        self.lr = None  # the latest update's learning rate
        self.start = self.last_report = self.last_valid = time.monotonic()
        self.started = False  # the clock restarts when the first block arrives
        self.chars = 0  # characters read and trained on (or held out) in this run
        self.skipped = 0  # characters of this pass that a continued run had trained on before
        cfg = model.config
        # options come settled (Options.settle): a fraction (None: the first block decides), keep-best on or off
        chunk = cfg.batch_size * cfg.seq_length
        self.held = Holdout(options.valid_fraction, options.keep_best, block_length(cfg), chunk, best)
        self.valid_bits = None  # the latest held-out score
        self.began = model.iterations  # the model this run trains on from
        self.epoch = self.first_epoch = 1
        self.epochs = None
        self.offset = 0  # characters of this pass before the current block
        self.carry = None  # the last stream's state at the end of the last block: the next block's first
        # a pipe's pass, fingerprinted as it is read, for the position (see Position.digest)
        self.hash, self.hashed, self.head = None, 0, ""
        self.digest = self.head_digest = None  # of the pass to the end of the current block
        self.block_chars = None  # characters of the block being trained
        # rolls a run whose loss climbs away back to its last good state (guard.py)
        self.guard = Guard(model, lambda note: self.report("note", note=note))

    def report(self, kind, **extra):
        m = self.model
        p = Progress(
            kind,
            extra.pop("iteration", m.iterations),
            self.chars,
            self.total,
            time.monotonic() - self.start,
            m.last_loss if m.last_loss is not None else math.nan,
            m.smooth_loss,
            valid_bits=self.valid_bits,
            best_bits=None if self.held.best is None else self.held.best.bits,
            max_time=self.max_time,
            epoch=self.epoch,
            first_epoch=self.first_epoch,
            lr=self.lr,
            **extra,
        )
        if self.callback is not None:
            self.callback(p)
        return p

    def measure(self):
        """Score the held-out text, for the progress line (keep-best judges at checkpoints)."""
        self.last_valid = time.monotonic()
        bits = self.held.score(self.model)
        if bits is not None:
            self.valid_bits = bits
            self.report("valid")

    def checkpoint(self):
        """A keep-best measurement point (holdout.py): the model scored, and
        a copy kept when it is the best so far."""
        self.last_valid = time.monotonic()
        bits = self.held.score(self.model)
        if bits is None:
            return
        self.valid_bits = bits
        self.held.judge(self.model, bits, time.monotonic() - self.start if self.started else 0.0)
        if self.model.resume is not None:  # where the run is, with the best score a save writes beside it
            self.model.resume.best = self.held.best.bits
        self.report("valid")

    # -- the passes ------------------------------------------------------------

    def fit(self, passes, epochs=1):
        """Train on text; returns why it stopped. `passes()` gives a fresh
        iterable of str pieces for each pass (None among them: nothing new
        yet, as a reader says while it waits on a pipe); epochs=None means
        pass after pass until the time limit (or stop) ends the run."""
        self.epochs = epochs
        r = self.resume
        if r is not None:
            self.epoch = self.first_epoch = r.epoch
            if not self.rereadable and r.digest is None:
                # a file from before pipes were fingerprinted: what arrives now is taken to continue what came before
                self.offset, self.carry, self.resume = r.offset, _last_stream(r.state), None
            elif r.epoch > 1 and self.rereadable and self.held.fraction != 0:
                # the first pass set the held-out text aside whole: read it again, before going on
                self.held.gather(passes())
                if self.held.ready() and self.held.best is None:
                    self.tell()
                    self.checkpoint()  # a file that kept no best score (version 6): the model it goes on from
        self.guard.take_snapshot()
        try:
            while epochs is None or self.epoch <= epochs:
                before, resumed, chars = self.model.iterations, self.resume is not None, self.chars
                read = self.train_pass(iter(passes()))
                # the pass has read it all, held-out text and the last few characters too
                self.chars = chars + read - self.skipped
                if self.model.iterations == before and not resumed:
                    break  # a pass that trains nothing would be repeated forever
                first = not self.held.whole
                if first:
                    self.held.complete()  # read whole: later passes hold out the same text again
                if epochs is not None and self.epoch >= epochs:
                    break
                if self.held.ready():
                    if first:
                        self.checkpoint()  # the first measurement point
                elif self.held.text:  # the end of a pass is a moment worth scoring
                    self.measure()
                self.epoch += 1
                self.offset, self.carry, self.resume = 0, None, None
            self.model.resume = None  # finished: nothing pending
            return "end of input"
        except Stop as e:
            why = str(e) or "stopped"
            if why == "time limit" and self.options.epochs is None and self.model.resume is not None:
                # bounded by time alone, the run is done; the next one goes on where the text does
                self.model.resume = dataclasses.replace(self.model.resume, interrupted=False)
            return why

    def train_pass(self, pieces):
        """Cut one pass's pieces into blocks and train on them; returns the
        characters read."""
        cfg = self.model.config
        N = block_length(cfg)
        read, self.skipped = 0, 0
        self.held.begin()
        self.hash = hashlib.sha256() if not self.rereadable else None
        self.hashed, self.head = 0, ""
        if self.resume is not None:
            pieces, read = self.seek(pieces, N)
        pending, waited = "", None  # waited: since when the oldest character not trained on has waited
        for piece in pieces:
            if piece:
                self.tell()
                if not pending:
                    waited = time.monotonic()
                pending += piece
                read += len(piece)
                while len(pending) > N:
                    pending = pending[self.block(pending[: N + 1]) :]
                    waited = time.monotonic()
            # a pipe's text is not kept waiting long for a full block (tail -f)
            if not self.rereadable and len(pending) > cfg.seq_length and time.monotonic() - waited >= LATENCY:
                pending = pending[self.block(pending) :]
                waited = time.monotonic()
            if piece is None:
                self.poll()
        if len(pending) > 1:
            self.block(pending)
        return read

    def tell(self):
        """Say, once text has come, what this run continues (or why it does not)."""
        if self.note:
            self.report("note", note=self.note)
            self.note = None

    def poll(self):
        """Between pieces while a pipe is silent: stop for a signal or the
        time limit now, not when the next text comes."""
        now = time.monotonic()
        if self.started and self.max_time is not None and now - self.start >= self.max_time:
            raise Stop("time limit")
        if self.stop is not None and self.stop():
            raise Stop("stopped")

    def block(self, text):
        """Train on one block (text, from the block's first input to its
        last target); returns how many of its characters it used up, the
        one after them being the next block's first input."""
        if not self.started:
            self.started = True
            self.start = self.last_report = self.last_valid = time.monotonic()
        m, cfg = self.model, self.model.config
        bad = lone_surrogate(text)  # every face's text passes here; a model holding one could not be saved
        if bad is not None:
            raise InputError(bad)
        new = m.vocab.missing(text)
        if len(m.vocab) + len(new) > self.max_vocab:
            raise VocabularyFull(
                f"the text has more than {self.max_vocab} distinct characters; raise the limit to train on it "
                "(--max-vocab)"
            )
        m.grow(text)
        if self.hash is not None:
            self.fingerprint(text)
            self.digest, self.head_digest = self.hash.hexdigest(), sha(self.head)
        self.block_chars = len(text)
        trained = self.held.cut(text)
        B, L = layout(len(trained), cfg.seq_length, cfg.batch_size)
        held = len(trained) < len(text)
        used = len(text) - 1 if held else B * L  # held-out text is used up whole
        r = self.resume
        if r is not None:  # the block the last run stopped in
            first, state, self.resume = r.chunk, [tuple(s.copy() for s in layer) for layer in r.state], None
            self.skipped += min(first * cfg.seq_length, L) * B  # what its chunks so far read
        else:
            first, state = 0, net.zero_state(cfg, B)
            if self.carry is not None:
                # the last stream of the last block ended where this block's first begins
                state = [tuple(np.concatenate([c, s[1:]]) for c, s in zip(cl, sl, strict=True))
                         for cl, sl in zip(self.carry, state, strict=True)]  # fmt: skip
        ix = m.vocab.encode(trained[: B * L + 1])
        for i, (X, Y) in enumerate(batches(ix, cfg.seq_length, cfg.batch_size)):
            if i < first:
                continue
            state = self.step(X, Y, state)
            self.chars += X.size
            m.resume = self.position(i + 1, state)
            self.after_step(Y[-1, 0], state)
        self.carry = None if held else _last_stream(state)  # a held-out tail parts this block from the next
        self.offset += used
        return used

    # -- one update, guarded -----------------------------------------------------

    def step(self, X, Y, state):
        m = self.model
        rate = self.budget.factor(self.trained, time.monotonic() - self.start)
        self.lr = m.config.lr * rate
        self.trained += X.size
        self.held.moved(m)
        try:
            new = m.step(X, Y, state, self.lr)
        except FloatingPointError:  # a NaN or infinite loss or gradient: the update was not applied
            return self.guard.roll_back(X.shape[1], math.inf)
        m.rate = rate  # where the next run on this model starts (schedule.factor)
        bad = self.guard.judge(X, Y, m.last_loss)
        return new if bad is None else self.guard.roll_back(X.shape[1], bad)

    # -- reporting ---------------------------------------------------------------

    def after_step(self, next_ix, state):
        m, now = self.model, time.monotonic()
        if self.sample_every and m.iterations % self.sample_every == 0:
            # like the seed, sample from where the first stream has got to
            first = [tuple(s[:1] for s in layer) for layer in state]
            m.sync()
            text = generate(m.config, m.vocab, m.params, self.sample_length, seed=m.iterations, state=first,
                            prime=m.vocab.chars[next_ix])  # fmt: skip
            self.report("sample", sample="".join(text))
        if self.held.due(m.iterations):
            self.checkpoint()
            self.last_report = now
        elif self.held.text and not self.held.ready() and now - self.last_valid >= self.valid_every:
            self.measure()
            self.last_report = now
        elif now - self.last_report >= self.report_every:
            self.last_report = now
            self.report("progress")
        timed = self.max_time is not None and now - self.start >= self.max_time
        asked = not timed and self.stop is not None and self.stop()
        # ranks training together (ddp.py) stop after the same chunk
        timed, asked = self.model.agree(timed, asked)
        if timed and m.resume is not None and m.resume.schedule is not None and self.budget.max_time:
            # the position was taken a moment before the clock said the time is up: it records the time used
            # up, so that a run continuing this one gets a new limit, not the sliver left of this one
            spent = self.budget.seconds + now - self.start
            m.resume.schedule["seconds"] = max(m.resume.schedule["seconds"], spent)
        if timed or asked:
            raise Stop("time limit" if timed else "stopped")

    def finish(self, stopped):
        """The run's end: the model is the best one measured (keep-best),
        and the last Progress reported."""
        # the last updates before the end had no time to show a climb: judge
        # them now, and lower the rate as any rollback does, for the next run
        self.guard.finish()
        held, m = self.held, self.model
        last = m.iterations
        if held.ready():
            # the end of a run is a measurement point; an interrupted one's is not: the same command goes on,
            # and an uninterrupted run would not have measured there
            if not held.fresh and (m.resume is None or not m.resume.interrupted):
                self.checkpoint()
        elif held.text:
            self.measure()
        kept = None
        if held.rest(m):  # the best model is an earlier one than the last trained: the run ends with it; say so
            kept = held.best[:3]
            self.valid_bits = held.best.bits  # the model's own
        return self.report("end", stopped=stopped, kept=kept, iteration=last, began=self.began)

    def abandon(self):
        """A run that raised: the model is left as a finished run leaves it (the best one, the later one kept)."""
        self.held.rest(self.model)


def _last_stream(state):
    return [tuple(s[-1:].copy() for s in layer) for layer in state]
