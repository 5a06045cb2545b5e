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
one pass) judges the model at measurement points that depend on its updates
alone, never on the clock, so that a run gives the same model however fast
it runs: from the end of the first pass (or the start of a run that
continues a later one) every `every` updates, and at the end of the run. A
model that scores no better than the best so far goes back to the best one
(weights, optimiser state, random state, counters) and trains on from there
with the text that follows; so at every measurement point the model is the
best one measured, and a run ends with the best model it saw. The period is
set so that scoring costs about a tenth of the training (COST: scoring a
character costs about as much as training on two).

That makes an interrupted run exact without the file keeping a second model:
a run asked to stop (Ctrl-C, SIGTERM, the stop function) between
measurement points goes on to the next one (at most `every` updates, a few
seconds) and stops there, periodic saves are made only there, and a
callback's Stop, which cannot wait, goes back to the last one. The same
command run again scores that model once more and goes on, bit for bit as
the run that was never stopped."""

from __future__ import annotations

import math

from .evaluate import loss_sum

CAP = 256 * 1024  # held-out characters at most
DEFAULT_FRACTION = 0.05  # the share of a text read more than once held out by default
DEFAULT_CAP = 10_000  # ... at most this many characters: a stop waits for a measurement point (a few seconds)
COST = 20  # updates' characters between measurement points, per held-out character (docs/benchmarks.md)


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
    characters one update trains on."""

    def __init__(self, fraction, keep_best, n, chunk_chars):
        self.fraction, self.keep = fraction, keep_best
        self.n, self.chunk_chars = n, chunk_chars
        self.text = ""
        self.held = 0  # characters held out so far in this pass
        self.whole = False  # the first pass is over: later passes hold out the same text again, and add none
        self.every = None  # updates between measurement points, once whole
        self.bits = None  # the latest score
        self.best = None  # (bits, seconds into the run, iteration) of the best model measured, once whole
        self.mark = None  # the model at the last measurement point (its bytes): the best one, where the run was
        self.went_back = 0  # measurement points that sent the model back to the best one
        self.base = None  # the iteration of the first measurement point: the others are `every` updates apart
        self.at_mark = False  # no update since the last measurement point: the model is the mark
        self.earlier = False  # the model is the best one measured before the last updates, not the last one

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

    def judging(self):
        """Whether the run is keeping the best model: a first one measured."""
        return self.mark is not None

    def due(self, iterations):
        """Whether the model is at a measurement point: every `every` updates from the first one."""
        return self.judging() and (iterations - self.base) % self.every == 0

    def left(self, iterations):
        """Updates from here to the next measurement point."""
        return self.every - (iterations - self.base) % self.every

    def score(self, model):
        """Bits per character of the held-out text under the model (None when none of it can be scored)."""
        model.sync()
        ix = model.vocab.encode(self.text)
        nats, n = loss_sum(model.config, model.params, ix[ix >= 0])
        if n:
            self.bits = nats / n / math.log(2)
        return self.bits if n else None

    def judge(self, model, bits, seconds):
        """At a measurement point, with the model's score: keep the model if
        it is the best so far, else put the best one back where the run is
        now (the text, and the schedule, go on from here). Returns whether
        it went back."""
        if self.base is None:
            self.base = model.iterations
        self.earlier = self.best is not None and bits >= self.best[0]
        if self.earlier:
            self.went_back += 1
            where, rate = model.resume, model.rate  # the text goes on from here, and the schedule with it
            model.restore(self.mark)
            model.resume, model.rate = where, rate
        else:
            self.best = (bits, seconds, model.iterations)
        self.mark, self.at_mark = model.to_bytes(), True
        return self.earlier

    def moved(self):
        """After an update: the model is no longer the one measured."""
        self.at_mark = False

    def back(self, model):
        """A run stopped between measurement points: back to the last one,
        which an uninterrupted run passed through the same way. Returns
        whether the model changed."""
        if self.mark is None or self.at_mark:
            return False
        model.restore(self.mark)
        self.at_mark = self.earlier = True
        return True
