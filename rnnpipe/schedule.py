"""The learning rate over a run whose length is known in advance.

A run bounded by a time limit, a number of passes or the size of its files
knows how far through it is. Adam at a constant rate stalls at the noise
floor its step size allows; decaying the rate towards the end lets the last
part of the run settle into a lower loss (docs/benchmarks.md measures it).
The rate rises over the first WARMUP of the run (fresh Adam moments make the
first steps the largest), then falls to FLOOR times --lr by the end. A run of
unknown length (a pipe with no --max-time) trains at UNKNOWN_END times --lr
throughout: a constant rate has to be lower than a schedule's peak to do as
well (docs/benchmarks.md: the default GRU after 60 s, 2.36 bits/char at a
constant 5e-3 against 2.49 at a constant 1e-2, and 2.27 with the schedule
peaking at 1e-2). `--schedule none` keeps exactly --lr, the seed's way.

A new run on a model that has been trained does not warm up again: it
starts at the rate the model's last run ended at (saved with the model as
Model.rate) and follows the schedule's curve from there down to FLOOR, so
that no moment of it, Ctrl-C anywhere, leaves the model worse than before
the run. Measured (docs/benchmarks.md, "A second run"): warming up to --lr
again, or restarting the cosine at half of it, made held-out text worse by
up to 0.12 and 0.05 bits/char in the first part of a second pass, while the
rate the first run ended at never made it worse and kept improving it, if
slowly. `--restart` asks for a fresh schedule, warm-up and all: it learns
more from a second run left to finish.

The budget travels with an interrupted run's position in the model file, so
the run that continues it follows the same curve to the same end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("cosine", "linear", "none")
WARMUP = 0.02  # share of the run over which the rate rises (from WARMUP_START of --lr) to --lr
WARMUP_START = 0.1
FLOOR = 0.05  # the rate at the end of the run, as a share of --lr
UNKNOWN_END = 0.5  # the rate of a run whose end is unknown, as a share of --lr


def factor(kind, done, start=None):
    """The multiple of --lr to use when `done` (0 to 1) of the run is done;
    done None means the run's length is unknown. start: the multiple the
    run starts at, for a model trained before (no warm-up, and never above
    it); None for a new model, which warms up to 1."""
    if kind == "none":
        return 1.0
    if kind not in KINDS:
        raise ValueError(f"schedule must be one of {', '.join(KINDS)}, not {kind!r}")
    if done is None:
        return UNKNOWN_END if start is None else min(UNKNOWN_END, start)
    done = min(max(done, 0.0), 1.0)
    if start is None:
        if done < WARMUP:
            return WARMUP_START + (1 - WARMUP_START) * done / WARMUP
        top, t = 1.0, (done - WARMUP) / (1 - WARMUP)
    else:
        top, t = min(start, 1.0), done
    if top <= FLOOR:  # already at the floor: stay there
        return top
    shape = 0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else 1 - t
    return FLOOR + (top - FLOOR) * shape


@dataclass
class Budget:
    """How long a scheduled run is and how much of it is spent. The counts
    are integers and the clock the run's own, so that a run continued from
    its saved position computes exactly the rates the uninterrupted run would
    have (bit-identical models for a run bounded by passes)."""

    kind: str  # one of KINDS
    total: int | None  # characters the run trains on, when known
    max_time: float | None  # seconds the run trains for, when bounded by time
    chars: int = 0  # characters trained on so far
    seconds: float = 0.0  # seconds trained so far, in earlier (interrupted) runs
    start: float | None = None  # the factor a run on a trained model starts at (see factor); None: warm up

    def done(self, chars, seconds):
        """The share of the run done after `chars` more characters and
        `seconds` more seconds than this budget's counts: whichever limit
        ends the run first, or None when it has neither."""
        parts = []
        if self.total:
            parts.append((self.chars + chars) / self.total)
        if self.max_time:
            parts.append((self.seconds + seconds) / self.max_time)
        return min(max(parts), 1.0) if parts else None

    def to_dict(self):
        # by hand: dataclasses.asdict deep-copies field by field, and a
        # training run asks for this after every update (train.Run.position)
        return {"kind": self.kind, "total": self.total, "max_time": self.max_time, "chars": self.chars,
                "seconds": self.seconds, "start": self.start}  # fmt: skip

    def factor(self, chars, seconds):
        """The multiple of --lr after `chars` more characters and `seconds` more seconds."""
        return factor(self.kind, self.done(chars, seconds), self.start)

    @property
    def spent(self):
        """Whether the time limit is used up: the run was cut by it."""
        return self.max_time is not None and self.seconds >= self.max_time
