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
continues exactly where this one stopped. For a pipe the position also
holds a fingerprint of the text read up to there, so that the same text
piped again is recognised and what was trained on is skipped."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import math
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import net, schedule
from .config import INT64, MAX_VOCAB
from .errors import SettingError, Stop
from .evaluate import loss_sum
from .sample import generate

VALID_CAP = 256 * 1024  # held-out characters kept (the most recent)
BLOCK_CHARS = 1 << 20  # about this many characters make one block of streams
SNAPSHOT_CHARS = 200_000  # characters trained on between snapshots a divergence rolls back to
FAST = 0.1  # weight of the newest chunk in the fast-moving loss the divergence guard watches
WARMUP = 10  # iterations of a run before the guard judges
PATIENCE = 20  # iterations the loss must stay up before the guard looks closer
SNAPSHOT_SLACK = 0.1  # nats per character a new snapshot may be worse than the last on the same text
WINDOW = 2048  # characters of the latest text the guard compares weights on
MARGIN, MARGIN_SHARE = 1.0, 0.5  # nats per character above the smooth loss (or this share of it): suspicious
ROLLBACKS = 4  # divergences a run survives (each divides the learning rate by LR_CUT)
LR_CUT = 4.0
LATENCY = 2.0  # seconds a pipe's text waits, at most, before it is trained on as a shorter block
HEAD = 1024  # characters of a piped pass whose fingerprint is checked first, before skipping any


@dataclass(frozen=True)
class Options:
    """How one run trains: the same for Model.train, the command line and
    the magics (which fill it from their options). Invalid values raise
    errors.SettingError naming the field."""

    epochs: int | None = None  # passes over the text; None: one, or with max_time, passes until the time is up
    max_time: float | None = None  # seconds this run trains at most (the clock starts when text arrives)
    schedule: str = "cosine"  # the learning rate over a run whose end is known: cosine, linear or none (schedule.py)
    valid_fraction: float = 0.0  # the tail of each block held out and scored, not trained on
    keep_best: bool = False  # end with the model that scored best on the held-out text, not the last one
    restart: bool = False  # a new pass and a fresh schedule, not where the last run stopped
    max_vocab: int = MAX_VOCAB  # the most distinct characters the model may grow to (VocabularyFull beyond)
    sample_every: int = 0  # report a sample every this many updates (0: never)
    save_every: float | None = None  # seconds between saves during the run (a session on a file: training.py)
    threads: int = 1  # BLAS threads: on 2 cores a second one was slower beside any other busy program

    def __post_init__(self):
        def whole(name, low, rule):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SettingError(name, v, "{name} must be " + rule + ", not {value}")
            if v > INT64:  # saved with an interrupted run: beyond this the save itself would overflow
                raise SettingError(name, v, "{name} must be at most 2**63-1, not {value}")

        if self.epochs is not None:
            whole("epochs", 1, "at least 1")
        # `not 0 < x < inf` refuses NaN and infinity too
        for name in ("max_time", "save_every"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise SettingError(name, v, "{name} must be a positive number of seconds, not {value}")
        if self.schedule not in schedule.KINDS:
            raise SettingError("schedule", self.schedule, "{name} must be one of " + ", ".join(schedule.KINDS)
                               + ", not {value}")  # fmt: skip
        vf = self.valid_fraction
        if not (isinstance(vf, (int, float)) and 0 <= vf < 1):
            raise SettingError("valid_fraction", vf, "{name} must be at least 0 and below 1, not {value}")
        object.__setattr__(self, "valid_fraction", float(vf))  # the model file keeps a float
        if self.keep_best and not vf > 0:
            raise SettingError("keep_best", True, "{name} needs held-out text to judge by: give a valid fraction too")
        whole("max_vocab", 1, "at least 1")
        whole("sample_every", 0, "0 (never) or more")
        whole("threads", 1, "at least 1")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def passes(self, rereadable):
        """The passes a run makes over text that can (or cannot) be read
        again: epochs, or None for passes until max_time (text read again
        only), else one."""
        if self.epochs is None and not (self.max_time is not None and rereadable):
            return 1
        return self.epochs

    def spool(self, rereadable):
        """Whether text that cannot be read again must be kept for later passes."""
        passes = self.passes(rereadable)
        return not rereadable and passes is not None and passes > 1


@dataclass
class Progress:
    """What the loop reports; `kind` says why it reports now. Losses are
    cross-entropies per character, in nats (the seed's unit) and, through
    the *_bits properties, in bits (what every display shows)."""

    kind: str  # "progress", "sample", "valid", "note" (with `note`) or "end"
    iteration: int  # updates made to this model, over all runs
    chars: int  # characters of input consumed in this run
    total: int | None  # characters this run will train on, when known
    elapsed: float  # seconds since this run started
    loss_nats: float  # nats per character of the latest chunk (NaN before the first)
    smooth_nats: float  # the seed's smooth loss, in nats per character
    valid_bits: float | None = None  # held-out bits per character, when measured
    sample: str | None = None  # with kind "sample"
    stopped: str | None = None  # with kind "end": why training ended
    max_time: float | None = None  # the run's time limit in seconds, if it has one
    epoch: int = 1  # the pass over the text this run is in (1 = the first)
    first_epoch: int = 1  # the pass it began in (more than 1 when it continued an interrupted run)
    note: str | None = None  # with kind "note": something the user should be told, one line
    lr: float | None = None  # the learning rate of the latest update (the schedule's)

    @property
    def chars_per_sec(self):
        return self.chars / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def loss_bits(self):
        return self.loss_nats / math.log(2)

    @property
    def smooth_bits(self):
        return self.smooth_nats / math.log(2)

    @property
    def done(self):
        """The fraction of the run done, counted toward whichever limit (the
        characters to train on, or the time limit) ends it first; None when
        the run has neither."""
        parts = []
        if self.total:
            parts.append(self.chars / self.total)
        if self.max_time:
            parts.append(self.elapsed / self.max_time)
        return min(max(parts), 1.0) if parts else None

    @property
    def eta(self):
        """Seconds left by the same rule, or None when unknown."""
        left = []
        if self.total and self.chars_per_sec > 0:
            left.append(max(self.total - self.chars, 0) / self.chars_per_sec)
        if self.max_time:
            left.append(max(self.max_time - self.elapsed, 0.0))
        return min(left) if left else None


class Diverged(FloatingPointError):
    """Training diverged and rolling back did not cure it; the model holds
    its state from before the run's last good snapshot."""


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


@dataclass
class Position:
    """Where a run that stopped early was: the model keeps it (model.resume)
    so that the next run on the same input continues from there exactly."""

    inputs: list  # what was read: [{"name", "size", "fingerprint"}], as the caller described it
    epoch: int  # the pass it was in, from 1
    epochs: int | None  # passes the run was to make (None: until its time limit)
    offset: int  # characters of the pass before the current block
    chunk: int  # chunks of the current block already trained
    state: list  # per layer, a tuple of (streams, hidden) arrays: the state to go on from
    batch_size: int  # the layout it was cut with: a run with another one starts a new pass
    seq_length: int
    valid_fraction: float
    chars: int | None = None  # characters in one pass, when known (for "at 41%")
    schedule: dict | None = None  # the learning-rate schedule's schedule.Budget, as a dict
    block: int | None = None  # characters of the current block: the next run cuts the same one, however it arrives
    head: str | None = None  # a pipe's pass: SHA-256 of its first HEAD characters (compared before skipping any)
    digest: str | None = None  # a pipe's pass: SHA-256 of its text to the end of the current block
    interrupted: bool = True  # False: the run finished (its time was up) and this is only where the text goes on

    @property
    def fraction(self):
        """How far into the current pass, when its length is known: the
        streams of a block advance together, a chunk of characters each."""
        if not self.chars:
            return None
        done = self.offset + self.chunk * self.seq_length * len(self.state[0][0])
        return min(done / self.chars, 1.0)

    @property
    def trained(self):
        """Characters of the pass read up to where the run stopped."""
        return self.offset + self.chunk * self.seq_length * len(self.state[0][0])

    def fits(self, config, valid_fraction):
        return (self.batch_size, self.seq_length, self.valid_fraction) == (
            config.batch_size,
            config.seq_length,
            valid_fraction,
        )


class Run:
    """One call of Model.train: the loop and its bookkeeping.

    options: train.Options; budget: the learning-rate schedule's;
    resume: the Position to continue from (None: a new pass); note: what to
    tell the user about it, once text arrives; inputs: what the text is;
    rereadable: whether it can be read again (a file, a str); pass_chars:
    characters in one pass, when known; total: characters this run will
    train on, when known (for progress)."""

    def __init__(self, model, options, *, budget=None, resume=None, note=None, inputs=(), rereadable=True,
                 pass_chars=None, total=None, callback=None, stop=None, max_time=None, report_every=1.0,
                 sample_length=200, valid_every=10.0):  # fmt: skip
        self.model, self.options, self.callback, self.stop = model, options, callback, stop
        self.max_time = max_time  # this invocation's time limit (what is left of it, for a continued run)
        self.report_every, self.sample_every, self.sample_length = report_every, options.sample_every, sample_length
        self.valid_fraction, self.valid_every, self.total = options.valid_fraction, valid_every, total
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
        self.valid = ""  # held-out text: the tail of each block
        self.valid_bits = None
        self.keep_best = options.keep_best
        self.best = None  # (held-out bits, the model's bytes, iteration): the best measurement on today's held-out text
        self.epoch = self.first_epoch = 1
        self.epochs = None
        self.offset = 0  # characters of this pass before the current block
        self.carry = None  # the last stream's state at the end of the last block: the next block's first
        # a pipe's pass, fingerprinted as it is read, for the position (see Position.digest)
        self.hash, self.hashed, self.head = None, 0, ""
        self.digest = self.head_digest = None  # of the pass to the end of the current block
        self.block_chars = None  # characters of the block being trained
        # the divergence guard
        self.fast = None  # a fast-moving average of chunk losses (nats per character)
        self.recent = collections.deque()  # the last chunks trained on, about WINDOW characters
        self.recent_chars = 0
        self.since_snapshot = 0  # characters trained on since the last snapshot
        self.steps = 0  # updates in this run
        self.climbing = 0  # consecutive updates with the loss suspiciously high
        self.rollbacks = 0
        self.snapshot = None

    def report(self, kind, **extra):
        m = self.model
        p = Progress(
            kind,
            m.iterations,
            self.chars,
            self.total,
            time.monotonic() - self.start,
            m.last_loss if m.last_loss is not None else math.nan,
            m.smooth_loss,
            valid_bits=self.valid_bits,
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
        self.last_valid = time.monotonic()
        self.model.sync()
        ix = self.model.vocab.encode(self.valid)
        nats, n = loss_sum(self.model.config, self.model.params, ix[ix >= 0])
        if n:
            self.valid_bits = nats / n / math.log(2)
            if self.keep_best and (self.best is None or self.valid_bits < self.best[0]):
                self.best = (self.valid_bits, self.model.to_bytes(), self.model.iterations)

    def restore_best(self):
        """--keep-best at the end: go back to the best measured model if the
        final one does worse on the same held-out text."""
        if not (self.keep_best and self.best and self.valid_bits is not None and self.valid_bits > self.best[0]):
            return
        bits, data, iteration = self.best
        resume = self.model.resume  # where this run really ended: a continued run goes on from there
        self.model.become(data)
        self.model.resume = resume
        self.report("note", note=f"kept the model of iteration {iteration}, the best on the held-out text "
                                 f"({bits:.4f} bits/char, against {self.valid_bits:.4f} at the end)")  # fmt: skip
        self.valid_bits = bits

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
        self.take_snapshot()
        try:
            while epochs is None or self.epoch <= epochs:
                before, resumed, chars = self.model.iterations, self.resume is not None, self.chars
                read = self.train_pass(iter(passes()))
                # the pass has read it all, held-out text and the last few characters too
                self.chars = chars + read - self.skipped
                if self.model.iterations == before and not resumed:
                    break  # a pass that trains nothing would be repeated forever
                if epochs is not None and self.epoch >= epochs:
                    break
                if self.valid:  # the end of a pass is a moment worth judging (and --keep-best's, whatever the clock)
                    self.measure()
                    self.report("valid")
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
                if _sha(pending[:head]) != r.head:
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
        self.hold_out(text)
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
        self.resume, self.offset, self.skipped, self.valid, self.carry = None, 0, 0, "", None
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

    def hold_out(self, text):
        """The tail of a block that --valid-fraction keeps out of training;
        returns the part to train on."""
        if self.valid_fraction == 0:
            return text
        cut = len(text) - int(len(text) * self.valid_fraction)
        if self.epoch == self.first_epoch:  # later passes hold out the same text again
            self.valid = (self.valid + text[cut:])[-VALID_CAP:]
            self.best = None  # measured on other held-out text: not comparable
        return text[:cut]

    def block(self, text):
        """Train on one block (text, from the block's first input to its
        last target); returns how many of its characters it used up, the
        one after them being the next block's first input."""
        if not self.started:
            self.started = True
            self.start = self.last_report = self.last_valid = time.monotonic()
        m, cfg = self.model, self.model.config
        new = m.vocab.missing(text)
        if len(m.vocab) + len(new) > self.max_vocab:
            raise VocabularyFull(
                f"the text has more than {self.max_vocab} distinct characters; raise the limit to train on it "
                "(--max-vocab)"
            )
        m.grow(text)
        if self.hash is not None:
            self.fingerprint(text)
            self.digest, self.head_digest = self.hash.hexdigest(), _sha(self.head)
        self.block_chars = len(text)
        trained = self.hold_out(text)
        B, L = layout(len(trained), cfg.seq_length, cfg.batch_size)
        used = len(text) - 1 if self.valid_fraction > 0 else B * L  # held-out text is used up whole
        r = self.resume
        if r is not None:  # the block the last run stopped in
            first, state, self.resume = r.chunk, [tuple(s.copy() for s in layer) for layer in r.state], None
            self.skipped += min(first * cfg.seq_length, L) * B  # what its chunks so far read
        else:
            first, state = 0, net.zero_state(cfg, B)
            if self.carry is not None and self.valid_fraction == 0:
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
        self.carry = _last_stream(state)
        self.offset += used
        return used

    def position(self, chunk, state):
        cfg = self.model.config
        b = self.budget
        seconds = b.seconds + time.monotonic() - self.start if b.max_time else 0.0  # no clock in a file that needs none
        spent = dataclasses.replace(b, chars=b.chars + self.trained, seconds=seconds)
        pipe = self.hash is not None
        return Position(self.inputs, self.epoch, self.epochs, self.offset, chunk, state, cfg.batch_size,
                        cfg.seq_length, self.valid_fraction, self.pass_chars, spent.to_dict(), self.block_chars,
                        self.head_digest if pipe else None, self.digest if pipe else None)  # fmt: skip

    # -- one update, guarded -----------------------------------------------------

    def step(self, X, Y, state):
        m = self.model
        rate = self.budget.factor(self.trained, time.monotonic() - self.start)
        self.lr = m.config.lr * rate
        self.trained += X.size
        try:
            new = m.step(X, Y, state, self.lr)
            loss = m.last_loss
        except FloatingPointError:  # a NaN or infinite loss or gradient: the update was not applied
            return self.roll_back(X.shape[1], math.inf)
        self.steps += 1
        m.rate = rate  # where the next run on this model starts (schedule.factor)
        self.recent.append((X, Y))
        self.recent_chars += X.size
        while self.recent_chars - self.recent[0][0].size >= WINDOW:
            self.recent_chars -= self.recent.popleft()[0].size
        self.since_snapshot += X.size
        self.fast = loss if self.fast is None else (1 - FAST) * self.fast + FAST * loss
        # "where it was" is the seed's smooth loss, which a sudden climb leaves far behind
        margin = max(MARGIN, MARGIN_SHARE * m.smooth_loss)
        suspicious = self.fast > m.smooth_loss + margin or self.fast > math.log(len(m.vocab)) + MARGIN
        self.climbing = self.climbing + 1 if self.steps > WARMUP and suspicious else 0
        if self.climbing >= PATIENCE:
            # the loss has stayed up: new kinds of text do that too, so ask whether
            # the last good weights do better on the latest text than these do
            if self.worse_than_snapshot() > margin:
                return self.roll_back(X.shape[1], self.fast)
            self.climbing = 0  # harder text, not divergence
        elif (
            self.since_snapshot >= SNAPSHOT_CHARS
            and not suspicious
            # a slow drift must not become the next good state
            and self.worse_than_snapshot() <= SNAPSHOT_SLACK
        ):
            self.take_snapshot()
        return new

    def worse_than_snapshot(self):
        """How much worse, in nats per character, the weights now predict the
        latest text (the last WINDOW or so characters trained on) than the
        snapshot's do."""
        if not self.recent:
            return 0.0
        self.model.sync()
        cfg, snapshot = self.model.config, self.snapshot_params()
        by_length = collections.defaultdict(list)  # chunks side by side: one forward pass per length
        for X, Y in self.recent:
            by_length[X.shape[0]].append((X, Y))
        now = then = chars = 0.0
        for chunks in by_length.values():
            X = np.concatenate([x for x, _ in chunks], axis=1)
            Y = np.concatenate([y for _, y in chunks], axis=1)
            now += _chunk_loss(self.model.params, cfg, X, Y) * X.size
            then += _chunk_loss(snapshot, cfg, X, Y) * X.size
            chars += X.size
        worse = (now - then) / chars
        world = self.model.world  # ranks training together decide together, on all their chunks
        return worse if world is None else world.mean(worse)

    def snapshot_params(self):
        params = {}
        for name, saved in self.snapshot[0].items():
            params[name] = self.model.params[name].copy()
            _restore(params[name], saved)
        return params

    def take_snapshot(self):
        m = self.model
        m.sync()
        self.since_snapshot = 0
        self.snapshot = (
            {k: v.copy() for k, v in m.params.items()},
            {k: v.copy() for k, v in m.opt_state.items()},
            m.rng.bit_generator.state,
            (m.iterations, m.chars_seen, m.smooth_loss, m.last_loss),
        )

    def roll_back(self, streams, loss):
        """Back to the last good snapshot with a lower learning rate, or give
        up (Diverged) after ROLLBACKS tries."""
        m = self.model
        params, opt_state, rng, counters = self.snapshot
        for name, saved in params.items():
            _restore(m.params[name], saved)
        for name, saved in opt_state.items():
            _restore(m.opt_state[name], saved)
        m.touched()  # an engine with its own copy of the weights takes these
        m.rng.bit_generator.state = rng
        at = m.iterations + 1
        m.iterations, m.chars_seen, m.smooth_loss, m.last_loss = counters
        self.rollbacks += 1
        bits = "NaN or infinite" if not math.isfinite(loss) else f"{loss / math.log(2):.3g} bits/char"
        if self.rollbacks > ROLLBACKS:
            raise Diverged(f"the loss was {bits} at iteration {at} after {ROLLBACKS} rollbacks; try a lower --lr")
        lr = m.config.lr / LR_CUT
        m.config = m.config.replace(lr=lr)
        self.report(
            "note",
            note=f"training diverged at iteration {at} (loss {bits}): rolled back to iteration {m.iterations}"
            f" and lowered the learning rate to {lr:g} (saved with the model)",
        )
        self.fast, self.steps, self.climbing = None, 0, 0
        self.recent.clear()
        self.recent_chars = 0
        # the streams' states were computed by the weights just thrown away
        return net.zero_state(m.config, streams)

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
        if self.valid and now - self.last_valid >= self.valid_every:
            self.measure()
            self.last_report = now
            self.report("valid")
        elif now - self.last_report >= self.report_every:
            self.last_report = now
            self.report("progress")
        timed = self.max_time is not None and now - self.start >= self.max_time
        asked = not timed and self.stop is not None and self.stop()
        # ranks training together (ddp.py) stop after the same chunk
        timed, asked = self.model.agree(timed, asked)
        if timed:
            raise Stop("time limit")
        if asked:
            raise Stop("stopped")

    def finish(self, stopped):
        # the last updates before the end had no time to show a climb: judge
        # them now, and lower the rate as any rollback does, for the next run
        if self.steps and self.worse_than_snapshot() > max(MARGIN, MARGIN_SHARE * self.model.smooth_loss):
            self.roll_back(1, self.model.last_loss)
        if self.valid:
            self.measure()
            self.restore_best()
        return self.report("end", stopped=stopped)


def _sha(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _chunk_loss(params, config, X, Y):
    """Nats per character of predicting Y from X with params, from a zero state."""
    hs, _, _ = net.forward(params, config, X, net.zero_state(config, X.shape[1]))
    logp = net.log_softmax(net.logits(params, hs))
    with np.errstate(all="ignore"):
        loss = -float(logp[np.arange(logp.shape[0]), Y.reshape(-1)].mean())
    return loss if math.isfinite(loss) else math.inf


def _last_stream(state):
    return [tuple(s[-1:].copy() for s in layer) for layer in state]


def _restore(array, saved):
    """Copy saved back into array in place (other views of it stay valid); a
    vocabulary grown since the snapshot keeps its new rows or columns."""
    if array.shape == saved.shape:
        array[...] = saved
    else:
        array[tuple(slice(0, n) for n in saved.shape)] = saved
