"""The training loop: truncated BPTT over parallel streams, reporting
through a callback so the CLI and the notebook each show progress their own
way."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import net
from .evaluate import loss_sum
from .sample import generate

VALID_CAP = 256 * 1024  # held-out characters kept (the most recent)


@dataclass
class Progress:
    """What the loop reports; `kind` says why it reports now. Losses are
    cross-entropies per character, in nats (the seed's unit) and, through
    the *_bits properties, in bits (what every display shows)."""

    kind: str  # "progress", "sample", "valid" or "end"
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


def batches(ix, seq_length, batch_size):
    """Cut a block of indices into contiguous streams and yield (X, Y) chunks,
    each (time, streams). A block too short for batch_size streams of
    seq_length gets fewer streams; the last chunk may be shorter."""
    n = len(ix) - 1
    B = max(1, min(batch_size, n // seq_length))
    L = n // B
    starts = np.arange(B) * L
    for p in range(0, L, seq_length):
        pos = starts[None, :] + np.arange(p, min(p + seq_length, L))[:, None]
        yield ix[pos], ix[pos + 1]


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
    ):
        self.model, self.callback, self.stop, self.max_time = model, callback, stop, max_time
        self.report_every, self.sample_every, self.sample_length = report_every, sample_every, sample_length
        self.valid_fraction, self.valid_every, self.total = valid_fraction, valid_every, total
        self.start = self.last_report = self.last_valid = time.monotonic()
        self.chars = 0
        self.valid = ""  # held-out text: the tail of each block
        self.valid_bits = None
        self.state = None
        self.epoch = 1

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
            **extra,
        )
        if self.callback is not None:
            self.callback(p)
        return p

    def measure(self):
        self.last_valid = time.monotonic()
        ix = self.model.vocab.encode(self.valid)
        nats, n = loss_sum(self.model.config, self.model.params, ix[ix >= 0])
        if n:
            self.valid_bits = nats / n / math.log(2)

    def fit(self, passes, epochs=1):
        """Train on text blocks; returns why it stopped. `passes()` gives a
        fresh iterable of blocks for each pass; epochs=None means pass after
        pass until the time limit (or stop) ends the run."""
        T = self.model.config.seq_length
        try:
            while epochs is None or self.epoch <= epochs:
                self.state, pending = None, ""
                before = self.model.iterations
                for block in passes():
                    pending += block
                    # one iteration needs seq_length + 1 characters: hold
                    # short pieces until more arrive or the input ends
                    if len(pending) > T:
                        self.block(pending)
                        pending = ""
                if len(pending) > 1:
                    self.block(pending)
                if self.model.iterations == before:
                    break  # a pass that trains nothing would be repeated forever
                if epochs is not None and self.epoch == epochs:
                    break
                self.epoch += 1
            return "end of input"
        except Stop as e:
            return str(e) or "stopped"

    def block(self, text):
        m, done = self.model, self.chars + len(text)
        m.grow(text)
        if self.valid_fraction > 0:
            cut = len(text) - int(len(text) * self.valid_fraction)
            if self.epoch == 1:  # later passes hold out the same text again
                self.valid = (self.valid + text[cut:])[-VALID_CAP:]
            text = text[:cut]
        cfg = m.config
        for X, Y in batches(m.vocab.encode(text), cfg.seq_length, cfg.batch_size):
            B = X.shape[1]
            if self.state is None or self.state[0][0].shape[0] < B:
                self.state = net.zero_state(cfg, B)
            elif self.state[0][0].shape[0] > B:  # fewer streams at the end
                self.state = [tuple(s[:B] for s in layer) for layer in self.state]
            self.state = m.step(X, Y, self.state)
            self.chars += X.size
            self.after_step(Y[-1, 0])
        self.chars = done  # held-out text and the few characters past the last full stream count as read

    def after_step(self, next_ix):
        m, now = self.model, time.monotonic()
        if self.sample_every and m.iterations % self.sample_every == 0:
            # like the seed, sample from where the first stream has got to
            state = [tuple(s[:1] for s in layer) for layer in self.state]
            text = generate(m.config, m.vocab, m.params, self.sample_length, seed=m.iterations, state=state,
                            prime=m.vocab.chars[next_ix])  # fmt: skip
            self.report("sample", sample="".join(text))
        if self.valid and now - self.last_valid >= self.valid_every:
            self.measure()
            self.last_report = now
            self.report("valid")
        elif now - self.last_report >= self.report_every:
            self.last_report = now
            self.report("progress")
        if self.max_time is not None and now - self.start >= self.max_time:
            raise Stop("time limit")
        if self.stop is not None and self.stop():
            raise Stop("stopped")

    def finish(self, stopped):
        if self.valid:
            self.measure()
        return self.report("end", stopped=stopped)
