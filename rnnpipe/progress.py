"""Showing training progress on stderr: a tqdm bar on a terminal, a plain
status line now and then otherwise, nothing with -q. A Display is the
callback Model.train reports to (see train.Progress)."""

from __future__ import annotations

import math
import time


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
    return text


def status(p):
    """One line describing a Progress, for logs."""
    parts = [f"iteration {p.iteration}", f"{si(p.chars)} chars", f"{si(p.chars_per_sec)} chars/s", losses(p)]
    if p.total and p.chars_per_sec > 0:
        done = min(p.chars / p.total, 1.0)
        left = max(p.total - p.chars, 0) / p.chars_per_sec
        parts.append(f"{done:.0%} done, ETA {clock(left)}")
    return ", ".join(parts)


class Display:
    """Callback for Model.train. `total`: characters expected (None when the
    input's size is unknown). `tty`: draw a bar; otherwise print a status line
    every `interval` seconds."""

    def __init__(self, err, *, quiet=False, tty=False, total=None, interval=5.0):
        self.err, self.quiet, self.tty, self.total, self.interval = err, quiet, tty, total, interval
        self.bar = None
        self.last_line = time.monotonic()
        if tty and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit="char",
                unit_scale=True,
                file=err,
                dynamic_ncols=True,
                leave=False,
                mininterval=0.25,
                smoothing=0.1,
            )

    @property
    def report_every(self):
        """How often Model.train should call back, in seconds."""
        return 0.5 if self.bar is not None else 1.0

    def write(self, text):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.err)
        else:
            print(text, file=self.err, flush=True)

    def __call__(self, p):
        if self.quiet:
            return
        if p.kind == "sample":
            self.write(f"----- sample at iteration {p.iteration}\n{p.sample}\n-----")
            return
        if self.bar is not None:
            post = losses(p) if math.isfinite(p.smooth_loss) else ""
            self.bar.set_postfix_str(f"it {p.iteration}, {post}", refresh=False)
            self.bar.update(max(p.chars - self.bar.n, 0))  # redraws at most every mininterval
        elif p.kind != "end" and time.monotonic() - self.last_line >= self.interval:
            self.last_line = time.monotonic()
            self.write(f"rnnpipe: {status(p)}")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
