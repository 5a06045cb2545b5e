"""Held-out text, and keeping the best model on it.

The held-out text is set aside in the first pass and held out again in every
later one: the tail of each block (Options.valid_fraction of its characters)
until the fraction of one whole block (block_length, about a million
characters) is held out, at most CAP characters. So a text of up to a block
holds out its last fraction, a longer one the tail of its first block, and a
pipe's shorter blocks their tails until that much has come; the rest of the
text is trained on. A run that reads its text more than once holds out
DEFAULT_FRACTION by default, at most DEFAULT_CAP characters
(default_fraction, decided by its first block, as it arrives, so that a file
and the same text piped in hold out the same).

Keep-best (Options.keep_best, on by default with held-out text and more than
one pass) scores the model at measurement points that depend on its updates
alone, never on the clock, so that a run gives the same model however fast
it runs: at the end of the first pass, every `every` updates after (the
iterations that are multiples of it), and at the end of the run. The run
trains on from whatever it measured, and keeps a copy of the best model
measured (a Best); it ends with that one. The period is set so that scoring
costs about a twentieth of the training (COST: scoring a character costs
about as much as training on two).

A model file holds the best model, which sampling and scoring use; where the
run trained past it, the file keeps the later model too (resume.current,
model.kept while it trains), and the next run goes on training from that one
(go_on). So a run stopped anywhere (Ctrl-C, SIGTERM, a periodic save before
a SIGKILL) and run again ends as the run that was never stopped, bit for
bit."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

from .evaluate import loss_sum

CAP = 256 * 1024  # held-out characters at most
DEFAULT_FRACTION = 0.05  # the share of a text read more than once held out by default
DEFAULT_CAP = 10_000  # ... at most this many characters: measurement points come every few seconds
COST = 20  # updates' characters between measurement points, per held-out character (docs/benchmarks.md)


class Best(NamedTuple):
    """The best model a run has measured on its held-out text."""

    bits: float  # its held-out bits per character
    seconds: float | None  # into the run when it was measured; None: by an earlier run
    iteration: int  # its updates
    data: bytes  # the model (Model.snapshot)


def go_on(model, resume, keep):
    """Before a run continues at `resume` (a Position, or None): train on the
    later model the file keeps (resume.current), with the file's model as
    the best one so far when the run keeps the best. Returns (the position,
    without the later model; the Best, or None)."""
    if resume is None or resume.best is None:
        return resume, None
    best = Best(resume.best, None, model.iterations, model.snapshot()) if keep else None
    if resume.current is not None:
        config = model.config  # as this run configured it (a new learning rate, say)
        model.restore(resume.current)
        model.config = config
        model.kept = best
    model.resume = resume = dataclasses.replace(resume, current=None)
    return resume, best


def share(fraction, size, n):
    """The share of a pass of `size` characters held out, blocks n apart."""
    return min(int(fraction * min(size, n + 1)), int(fraction * (n + 1)), CAP) / size if size else fraction


def default_fraction(first):
    """The share held out by default of a text read more than once whose
    first block has `first` characters: DEFAULT_FRACTION, at most
    DEFAULT_CAP characters."""
    return min(DEFAULT_FRACTION, DEFAULT_CAP / first) if first else DEFAULT_FRACTION


class Holdout:
    """The held-out text of one run, its scores and (keep_best) the best
    model measured. fraction: Options.valid_fraction, or None for
    default_fraction of the first block; n: block_length; chunk_chars: the
    characters one update trains on; best: the Best of an earlier run this
    one continues (go_on)."""

    def __init__(self, fraction, keep_best, n, chunk_chars, best=None):
        self.fraction, self.keep = fraction, keep_best
        self.n, self.chunk_chars = n, chunk_chars
        self.text = ""
        self.held = 0  # characters held out so far in this pass
        self.whole = False  # the first pass is over: later passes hold out the same text again, and add none
        self.every = None  # updates between measurement points, once whole
        self.bits = None  # the latest score
        self.best = best  # the best model measured, a Best (keep-best)
        self.fresh = False  # the model is the one last measured: no update since

    def begin(self):
        """A new pass: its blocks hold out their tails again, from the first."""
        self.held = 0

    def cut(self, text):
        """The part of a block to train on (text itself when none is held
        out); in the first pass the tail held out joins the held-out text."""
        if self.fraction is None:
            self.fraction = default_fraction(len(text))  # the first block decides
        take = min(int(len(text) * self.fraction), self.limit() - self.held)
        if take <= 0:
            return text
        self.held += take
        if not self.whole:
            self.text += text[-take:]
        return text[:-take]

    def gather(self, pieces):
        """Read a pass's text (pieces) as far as it holds out, and set the
        tails aside as the first pass did: blocks of n + 1 characters, n
        apart (how train.Run cuts text that can be read again)."""
        self.text, pending, self.held = "", "", 0
        for piece in pieces:
            if piece:
                pending += piece
                while len(pending) > self.n and not self.full():
                    self.cut(pending[: self.n + 1])
                    pending = pending[self.n :]
            if self.full():
                break
        else:
            if len(pending) > 1:
                self.cut(pending)
        self.held = 0
        self.complete()

    def limit(self):
        """Characters a pass holds out at most."""
        return min(int(self.fraction * (self.n + 1)), CAP)

    def full(self):
        return self.fraction is not None and self.held >= self.limit()

    def complete(self):
        self.whole = True
        if self.text:
            self.every = max(1, math.ceil(COST * len(self.text) / self.chunk_chars))

    def ready(self):
        """Whether this run keeps the best model from now on: keep-best, the held-out text whole and not empty."""
        return self.keep and self.whole and bool(self.text)

    def due(self, iterations):
        """Whether the model is at a measurement point: a first one measured, and a multiple of `every` updates."""
        return self.best is not None and self.ready() and iterations % self.every == 0

    def score(self, model):
        """Bits per character of the held-out text under the model (None when none of it can be scored)."""
        model.sync()
        ix = model.vocab.encode(self.text)
        nats, n = loss_sum(model.config, model.params, ix[ix >= 0])
        if n:
            self.bits = nats / n / math.log(2)
        return self.bits if n else None

    def judge(self, model, bits, seconds):
        """At a measurement point, with the model's score: a copy of it kept
        if it is the best so far. Returns whether it is."""
        self.fresh = True
        if self.best is not None and bits >= self.best.bits:
            return False
        self.best = Best(float(bits), seconds, model.iterations, model.snapshot())
        model.kept = None  # the model is the best one
        return True

    def moved(self, model):
        """After an update: the model is a later one than the best (if one is kept)."""
        self.fresh = False
        if self.best is not None:
            model.kept = self.best

    def rest(self, model):
        """A run that ends: the model is the best one measured, and the
        later one it trained, when the run may go on, in its resume.current.
        Returns whether the model changed."""
        if model.kept is None:
            return False
        where, config = model.resume, model.config
        current = None if where is None else model.snapshot()
        model.restore(model.kept.data)
        model.config = config  # as the run left it (the guard may have lowered the rate)
        model.resume = None if where is None else dataclasses.replace(where, current=current)
        return True
