"""Training progress: what a run reports (Progress), and showing it on
stderr (Display: a tqdm bar on a terminal, a plain status line now and then
otherwise, nothing with -q), the callback Model.train reports to."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


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
    best_bits: float | None = None  # keep-best: the best held-out score so far, the model's own at its last measurement
    # with kind "end": (held-out bits, seconds into the run or None for an earlier run, iteration) of the best
    # model measured, when the run ends with it rather than with the last one it trained (keep-best)
    kept: tuple | None = None
    began: int | None = None  # with kind "end": the updates of the model the run trained on from

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


def si(n):
    """1234567 -> '1.23M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def clock(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def losses(p):
    """'loss 1.92 bits/char, held-out 2.01 bits/char' for a Progress."""
    text = f"loss {p.smooth_bits:.3f} bits/char"
    if p.valid_bits is not None:
        text += f", held-out {p.valid_bits:.3f} bits/char"
        if p.best_bits is not None and p.best_bits < p.valid_bits:
            text += f" (best {p.best_bits:.3f})"
    return text


def status(p):
    """One line describing a Progress, for logs. The share done and the ETA
    count toward whichever limit ends the run first: its characters or its
    time limit."""
    parts = [f"iteration {p.iteration}"]
    if p.epoch > 1:
        parts.append(f"pass {p.epoch}")
    parts += [f"{si(p.chars)} chars", f"{si(p.chars_per_sec)} chars/s", losses(p)]
    if p.done is not None and p.eta is not None:
        parts.append(f"{p.done:.0%} done, ETA {clock(p.eta)}")
    return ", ".join(parts)


class Display:
    """Callback for Model.train that shows progress as the command line does:
    `Display(sys.stderr)`. `tty`: draw a bar (default: when err is a
    terminal); otherwise print a status line every `interval` seconds. Each
    Progress carries the run's limits, so the display needs no total."""

    def __init__(self, err, *, quiet=False, tty=None, interval=5.0):
        if tty is None:
            tty = isatty(err)
        self.err, self.quiet, self.tty, self.interval = err, quiet, tty, interval
        self.bar = None
        self.last_line = time.monotonic()

    @property
    def report_every(self):
        """How often Model.train should call back, in seconds."""
        return 0.5 if self.tty else 1.0

    def write(self, text):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.err)
        else:
            print(text, file=self.err, flush=True)

    def _open_bar(self, p):
        from tqdm import tqdm

        # a run with a limit (its characters, or its time) is a bar in percent
        # of that limit; one without (stdin) counts characters
        limited = p.done is not None
        self.bar = tqdm(
            total=100 if limited else None,
            unit="%" if limited else "char",
            unit_scale=not limited,
            bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}" if limited else None,
            file=self.err,
            dynamic_ncols=True,
            leave=False,
            mininterval=0.25,
            smoothing=0.1,
        )

    def __call__(self, p):
        if self.quiet:
            return
        if p.kind == "sample":
            self.write(f"----- sample at iteration {p.iteration}\n{p.sample}\n-----")
            return
        if p.kind == "note":
            self.write(f"rnnpipe: {p.note}")
            return
        if self.tty:
            if self.bar is None:
                self._open_bar(p)
            post = f", {si(p.chars_per_sec)} chars/s"
            if math.isfinite(p.smooth_nats):
                post += f", {losses(p)}"
            self.bar.set_postfix_str(f"it {p.iteration}{post}", refresh=False)
            n = p.chars if self.bar.total is None else round(100 * p.done, 1)
            self.bar.update(max(n - self.bar.n, 0))  # redraws at most every mininterval
            if p.kind == "end":
                self.bar.refresh()
        elif p.kind != "end" and time.monotonic() - self.last_line >= self.interval:
            self.last_line = time.monotonic()
            self.write(f"rnnpipe: {status(p)}")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def isatty(stream):
    """Whether stream is a terminal (False for streams that cannot say)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
