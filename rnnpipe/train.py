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

Two exceptions, both documented for users: when the input pauses (the caller
passes None among the blocks, as the reader does after IDLE seconds without
input, `tail -f`), what has arrived is trained on at once as a shorter block;
and the last block of a pass is whatever is left, with fewer streams if it is
short (up to batch_size - 1 characters at its very end go unused).

Where a run stops early (a time limit, Ctrl-C) it leaves its position in
model.resume, which the model file keeps, so the next run on the same input
continues exactly where this one stopped."""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

import numpy as np

from . import net, schedule
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
MAX_VOCAB = 20_000  # distinct characters a model may grow to, unless the caller allows more


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


class Stop(Exception):
    """A callback raises this to end training cleanly after the iteration."""


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

    @property
    def fraction(self):
        """How far into the current pass, when its length is known: the
        streams of a block advance together, a chunk of characters each."""
        if not self.chars:
            return None
        done = self.offset + self.chunk * self.seq_length * len(self.state[0][0])
        return min(done / self.chars, 1.0)

    def fits(self, config, valid_fraction):
        return (self.batch_size, self.seq_length, self.valid_fraction) == (
            config.batch_size,
            config.seq_length,
            valid_fraction,
        )


class Run:
    """One call of Model.train: the loop and its bookkeeping."""

    def __init__(
        self,
        model,
        callback=None,
        stop=None,
        max_time=None,
        report_every=1.0,
        sample_every=0,
        sample_length=200,
        valid_fraction=0.0,
        valid_every=10.0,
        total=None,
        inputs=(),
        rereadable=True,
        resume=None,
        max_vocab=MAX_VOCAB,
        budget=None,
        keep_best=False,
    ):
        self.model, self.callback, self.stop, self.max_time = model, callback, stop, max_time
        self.report_every, self.sample_every, self.sample_length = report_every, sample_every, sample_length
        self.valid_fraction, self.valid_every, self.total = valid_fraction, valid_every, total
        self.inputs, self.rereadable, self.max_vocab = list(inputs), rereadable, max_vocab
        self.resume = resume  # a Position to continue from, or None
        self.budget = budget or schedule.Budget("none", None, None)  # the learning-rate schedule's
        self.trained = 0  # characters trained on in this run (what the schedule counts)
        self.lr = None  # the latest update's learning rate
        self.start = self.last_report = self.last_valid = time.monotonic()
        self.started = False  # the clock restarts when the first block arrives
        self.chars = 0  # characters read and trained on (or held out) in this run
        self.skipped = 0  # characters of this pass that a continued run had trained on before
        self.valid = ""  # held-out text: the tail of each block
        self.valid_bits = None
        self.keep_best = keep_best
        self.best = None  # (held-out bits, the model's bytes, iteration): the best measurement on today's held-out text
        self.epoch = self.first_epoch = 1
        self.epochs = None
        self.offset = 0  # characters of this pass before the current block
        self.carry = None  # the last stream's state at the end of the last block: the next block's first
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
        """Train on text blocks; returns why it stopped. `passes()` gives a
        fresh iterable of blocks for each pass (None among them: the input
        paused); epochs=None means pass after pass until the time limit (or
        stop) ends the run."""
        self.epochs = epochs
        r = self.resume
        if r is not None:
            self.epoch = self.first_epoch = r.epoch
            if not self.rereadable:  # what arrives now is taken to continue what came before
                self.offset, self.carry, self.resume = r.offset, _last_stream(r.state), None
        self.take_snapshot()
        N = block_length(self.model.config)
        try:
            while epochs is None or self.epoch <= epochs:
                before, resumed = self.model.iterations, self.resume is not None
                pending, read, self.skipped, chars = "", 0, 0, self.chars
                for piece in passes():
                    if piece is None:  # the input paused: learn from what has arrived
                        if len(pending) > self.model.config.seq_length:
                            pending = pending[self.block(pending) :]
                        continue
                    pending += piece
                    read += len(piece)
                    while len(pending) > N:
                        pending = pending[self.block(pending[: N + 1]) :]
                if len(pending) > 1:
                    self.block(pending)
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
            return str(e) or "stopped"

    def block(self, text):
        """Train on one block (text, from the block's first input to its
        last target); returns how many of its characters it used up, the
        one after them being the next block's first input."""
        if not self.started:
            self.started = True
            self.start = self.last_report = self.last_valid = time.monotonic()
        m, cfg = self.model, self.model.config
        r = self.resume
        skipping = r is not None and self.offset < r.offset  # continuing: this block was trained before
        if not skipping:
            new = m.vocab.missing(text)
            if len(m.vocab) + len(new) > self.max_vocab:
                raise VocabularyFull(
                    f"the text has more than {self.max_vocab} distinct characters; raise the limit to train on it "
                    "(--max-vocab)"
                )
            m.grow(text)
        trained = text
        if self.valid_fraction > 0:
            cut = len(text) - int(len(text) * self.valid_fraction)
            if self.epoch == self.first_epoch:  # later passes hold out the same text again
                self.valid = (self.valid + text[cut:])[-VALID_CAP:]
                self.best = None  # measured on other held-out text: not comparable
            trained = text[:cut]
        B, L = layout(len(trained), cfg.seq_length, cfg.batch_size)
        used = len(text) - 1 if self.valid_fraction > 0 else B * L  # held-out text is used up whole
        if skipping:
            self.offset += used
            self.skipped += used
            return used
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
        spent = schedule.Budget(b.kind, b.total, b.max_time, b.chars + self.trained, seconds)
        return Position(self.inputs, self.epoch, self.epochs, self.offset, chunk, state, cfg.batch_size,
                        cfg.seq_length, self.valid_fraction, self.pass_chars, spent.to_dict())  # fmt: skip

    pass_chars = None  # characters in one pass, when the caller knows (set by Model.train)

    # -- one update, guarded -----------------------------------------------------

    def step(self, X, Y, state):
        m = self.model
        done = self.budget.done(self.trained, time.monotonic() - self.start)
        self.lr = m.config.lr * schedule.factor(self.budget.kind, done)
        self.trained += X.size
        try:
            new = m.step(X, Y, state, self.lr)
            loss = m.last_loss
        except FloatingPointError:  # a NaN or infinite loss or gradient: the update was not applied
            return self.roll_back(X.shape[1], math.inf)
        self.steps += 1
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
