"""How a training run shows in a notebook: one status line updated in
place, samples as they come, the summary line and a loss curve at the end;
and TrainResult, what `%%charrnn_train -o VAR` stores."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from IPython.display import Image, Pretty, display

UPDATES_PER_SEC = 4  # most in-place updates of the progress line per second


@dataclass(repr=False)
class TrainResult:
    """What `%%charrnn_train -o VAR` stores: one run of training.

    model: the rnnpipe.Model, trained (the same object later cells go on with)
    final: the last rnnpipe.Progress (kind "end"; .stopped says why)
    history: every rnnpipe.Progress of the run, samples and held-out scores included
    saved: the model file written, or None for a model kept in memory
    """

    model: object
    final: object
    history: list
    saved: str | None = None

    @property
    def bits_per_char(self):
        """The smoothed training loss at the end, in bits per character."""
        return self.final.smooth_bits

    @property
    def heldout_bits(self):
        """Bits per character of the model on the held-out text (held out by default when the run reads
        its text more than once; --valid-fraction), else None."""
        return self.final.valid_bits

    @property
    def iterations(self):
        return self.final.iteration

    @property
    def stopped(self):
        return self.final.stopped

    def __repr__(self):
        f = self.final
        held = "" if f.valid_bits is None else f", held out {f.valid_bits:.3f}"
        where = f"saved to {self.saved}" if self.saved else "in memory"
        return (
            f"<TrainResult: {f.stopped} at iteration {f.iteration:,}; {self.bits_per_char:.3f} bits/char{held};"
            f" {f.chars:,} chars in {f.elapsed:.1f} s; {len(self.history)} reports; {where}>"
        )


def _status(p):
    """One line about a training run, from an rnnpipe.Progress."""
    parts = [f"iteration {p.iteration:,}"]
    parts.append(f"{p.chars:,} of {p.total:,} chars" if p.total else f"{p.chars:,} chars")
    if p.epoch > 1:
        parts.append(f"pass {p.epoch}")
    if p.done is not None:  # toward whichever of the text's end and --max-time comes first
        parts.append(f"{100 * p.done:.0f}%")
    parts.append(f"{p.chars_per_sec:,.0f} chars/s")
    if not math.isnan(p.loss_bits):  # NaN before the first update
        parts.append(f"loss {p.loss_bits:.3f} bits/char (smooth {p.smooth_bits:.3f})")
    if p.valid_bits is not None:
        best = "" if p.best_bits is None or p.best_bits >= p.valid_bits else f" (best {p.best_bits:.3f})"
        parts.append(f"held out {p.valid_bits:.3f}{best}")
    parts.append(f"{p.elapsed:.1f} of {p.max_time:g} s" if p.max_time else f"{p.elapsed:.1f} s")
    return " · ".join(parts)


def _sparkline(values, width=48):
    if not values:
        return ""
    if len(values) > width:
        values = [values[i * len(values) // width] for i in range(width - 1)] + [values[-1]]
    lo, hi = min(values), max(values)
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[0 if hi == lo else round((v - lo) / (hi - lo) * (len(bars) - 1))] for v in values)


def _plot(entry):
    """The loss curve as PNG bytes, or None without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (an optional extra: pip install 'rnnpipe[plot]')
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    import io

    fig = Figure(figsize=(6.4, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    it = [c[0] for c in entry.curve]
    ax.plot(it, [c[1] for c in entry.curve], label="training (smoothed)")
    held = [(c[0], c[2]) for c in entry.curve if c[2] is not None]
    if held:
        ax.plot([h[0] for h in held], [h[1] for h in held], "o-", ms=3, label="held out")
    ax.set_xlabel("iteration")
    ax.set_ylabel("bits per character")
    ax.set_title(entry.label)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class View:
    """Shows a run in the notebook: one line updated in place (throttled),
    samples as they arrive. Keeps every report for the curve and for -o."""

    def __init__(self, entry):
        self.entry = entry
        self.reports = []
        self.handle = None
        self.last_update = 0.0

    def __call__(self, p):
        self.reports.append(p)
        if p.kind == "note":  # something to tell: a continued run, a rollback
            print(p.note)
            return
        if p.kind != "sample":
            held_out = p.valid_bits if p.kind in ("valid", "end") else None  # fresh measurements only
            self.entry.curve.append((p.iteration, p.smooth_bits, held_out))
        now = time.monotonic()
        if self.handle is None:
            self.handle = display(Pretty(_status(p)), display_id=True)
            self.last_update = now
        elif p.kind in ("valid", "end") or now - self.last_update >= 1 / UPDATES_PER_SEC:
            self.handle.update(Pretty(_status(p)))
            self.last_update = now
        if p.kind == "sample":
            head = f"iteration {p.iteration:,}, smooth loss {p.smooth_bits:.3f} bits/char"
            display(Pretty(f"{head}\n----\n{p.sample}\n----"))

    def finish(self, outcome):
        """The run's last line, the one the command line prints, and its loss curve."""
        if self.handle is None:
            print(outcome.summary)
            return
        self.handle.update(Pretty(outcome.summary))
        png = _plot(self.entry)
        if png is not None:
            display(Image(data=png, format="png"))
        else:
            bits = [c[1] for c in self.entry.curve]
            first, last = self.entry.curve[0][0], self.entry.curve[-1][0]
            display(
                Pretty(
                    f"smooth loss, iterations {first:,} to {last:,}: {bits[0]:.3f} {_sparkline(bits)} {bits[-1]:.3f}"
                    " bits/char (pip install matplotlib for a plot)"
                )
            )


def describe(model):
    c = model.config
    return (
        f"{c.cell} cell, {c.layers} × {c.hidden} hidden, {model.num_params:,} parameters, {c.optimizer} lr {c.lr:g},"
        f" {c.batch_size} × {c.seq_length} characters per iteration"
    )
