"""Held-out text, and keeping the best model on it.

The held-out text is the tail of each block of a pass (Options.valid_fraction
of its characters, at most CAP in all, the most recent kept), set aside in
the first pass and held out again in every later one. A run that reads its
text more than once holds out a slice of it by default (plan.settle):
DEFAULT_FRACTION of the text, at most DEFAULT_CAP characters.

Keep-best (Options.keep_best, on by default with held-out text and more than
one pass) judges the model at measurement points that depend on its updates
alone, never on the clock, so that a run gives the same model however fast
it runs: when the held-out text is whole (at the end of the first pass, or
at the start of a run that continues a later one) and every `every` updates
after that, and at the end of the run. A model that scores no better than
the best so far goes back to the best one (weights, optimiser state, random
state, counters) and trains on from there with the text that follows; so at
every measurement point the model is the best one measured, and a run ends
with the best model it saw. The period is set so that scoring costs about a
tenth of the training (COST: scoring a character costs about as much as
training on two).

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

CAP = 256 * 1024  # held-out characters kept (the most recent)
DEFAULT_FRACTION = 0.05  # the share of a text read more than once held out by default
DEFAULT_CAP = 10_000  # ... at most this many characters: a stop waits for a measurement point (a few seconds)
COST = 20  # updates' characters between measurement points, per held-out character (docs/benchmarks.md)


def default_fraction(size):
    """The share held out of a text of `size` characters (None: not known)
    that is read more than once: DEFAULT_FRACTION, at most DEFAULT_CAP
    characters of it."""
    if not size:
        return DEFAULT_FRACTION
    return min(DEFAULT_FRACTION, DEFAULT_CAP / size)


def tail(text, fraction):
    """Where a block's held-out tail begins."""
    return len(text) - int(len(text) * fraction)


class Holdout:
    """The held-out text of one run, its scores and (keep_best) the best
    model measured. chunk_chars: the characters one update trains on."""

    def __init__(self, fraction, keep_best, chunk_chars):
        self.fraction, self.keep = fraction, keep_best
        self.chunk_chars = chunk_chars
        self.text = ""
        self.whole = False  # all of it read: later passes hold out the same text again, and add none
        self.every = None  # updates between measurement points, once whole
        self.bits = None  # the latest score
        self.best = None  # (bits, seconds into the run, iteration) of the best model measured, once whole
        self.mark = None  # the model at the last measurement point (its bytes): the best one, where the run was
        self.went_back = 0  # measurement points that sent the model back to the best one
        self.base = None  # the iteration of the first measurement point: the others are `every` updates apart
        self.at_mark = False  # no update since the last measurement point: the model is the mark
        self.earlier = False  # the model is the best one measured before the last updates, not the last one

    def cut(self, text):
        """The part of a block to train on; before the held-out text is
        whole, the block's tail joins it."""
        if self.fraction == 0:
            return text
        at = tail(text, self.fraction)
        if not self.whole:
            self.text = (self.text + text[at:])[-CAP:]
        return text[:at]

    def gather(self, pieces, n):
        """Read a pass's text (pieces) and set aside each block's tail, as the
        first pass does: blocks of n + 1 characters, n apart, the last one
        what is left (train.Run cuts the text that can be read again so)."""
        self.text, pending = "", ""
        for piece in pieces:
            if piece:
                pending += piece
                while len(pending) > n:
                    self.cut(pending[: n + 1])
                    pending = pending[n:]
        if len(pending) > 1:
            self.cut(pending)
        self.complete()

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
