"""``%charrnn_score`` and ``%%charrnn_score``: each line's bits per character
under a model, as `rnnpipe score` gives them, returned as a list of
(bits, line) that shows itself as a table of the most surprising lines.

It finds models where every rnnpipe magic does (common.ModelMagics), so a
model trained in the notebook with --name is scored by the same name.
"""

from __future__ import annotations

import html
import math

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from rnnpipe import options
from rnnpipe.pages.show import NOT_SCORED, luminance, surprise_colour

from . import parsing, store
from .common import ModelMagics

TOP = 10  # rows the table shows by default


class Scores(list):
    """A list of (bits per character, line) in the text's order, the line
    without its newline; bits is NaN for a line with nothing scored. Shown
    in a notebook as a table of its `top` most surprising lines, each
    character coloured by its surprise as `rnnpipe show` colours it."""

    def __init__(self, pairs, shown, top):
        super().__init__(pairs)
        self.shown = shown  # the top lines, most surprising first: score.Line with per character surprise
        self.top = top

    def _ranked(self):
        return f"the {len(self.shown)} most surprising of {len(self)} line(s)"

    def __repr__(self):
        rows = [f"{line.bits_per_char:8.3f}  {line.number:>6}  {_visible(line.text)}" for line in self.shown]
        return "\n".join([f"Scores: {self._ranked()} (a list of (bits, line))", "bits/char    line  text", *rows])

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td style='text-align:right'>{line.bits_per_char:.3f}</td>"
            f"<td style='text-align:right'>{line.number}</td>"
            f"<td style='text-align:left;font-family:monospace;white-space:pre'>{_coloured(line)}</td></tr>"
            for line in self.shown
        )
        return (
            f"<div class='rnnpipe-score'><p>{html.escape(self._ranked())}</p><table>"
            "<thead><tr><th>bits/char</th><th>line</th><th style='text-align:left'>text</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


def _visible(text):
    return text[:-1] if text.endswith("\n") else text


def _coloured(line):
    """The line's characters, each on the background `rnnpipe show` gives its surprise."""
    out = []
    for c, bits in zip(_visible(line.text), line.surprise, strict=False):
        background = NOT_SCORED if math.isnan(bits) else surprise_colour(bits)
        ink = "#ffffff" if luminance(background) < 0.18 else "#000000"  # readable on the darkest reds
        title = "not scored" if math.isnan(bits) else f"{bits:.2f} bits"
        out.append(f"<span style='background:{background};color:{ink}' title='{title}'>{html.escape(c)}</span>")
    return "".join(out)


@magics_class
class ScoreMagics(ModelMagics):
    """%charrnn_score and %%charrnn_score."""

    @magic_arguments(name="%charrnn_score")
    @argument(*options.MODEL[0], **{**options.MODEL[1], "help": "model file to score with"})
    @argument("--name", metavar="NAME", help="a model kept in memory under NAME (%%charrnn_train --name)")
    @argument("--text", metavar="VAR", help="score the string in the notebook variable VAR instead of the cell body")
    @argument("--over", type=float, metavar="X", help="keep only the lines above X bits per character")
    @argument("--top", type=int, default=TOP, metavar="N", help=f"lines the table shows (default {TOP})")
    @line_cell_magic
    def charrnn_score(self, line, cell=None):
        """Score each line of a text with a model, as `rnnpipe score` does:
        its bits per character, its newline included, read as one stream
        (each character predicted from all the text before it), so the
        lines' bits add up to eval's total. Returns a list of (bits, line),
        in the text's order, which shows itself as a table of the --top most
        surprising lines coloured by surprise; --over X keeps only the lines
        above X. As a cell magic, %%charrnn_score scores the cell's text; as
        a line magic, the string named by --text.
        """
        from rnnpipe.score import LineScorer

        args = parsing.parse(self.charrnn_score, line)
        if args.top < 0:
            raise UsageError(f"--top must be 0 or more, not {args.top}")
        if args.over is not None and math.isnan(args.over):
            raise UsageError("--over needs a number of bits per character, not nan")
        text = self.text(args, cell, "charrnn_score")
        model = store.find(self.models, args, create=False).model
        scorer = LineScorer(model, keep_surprise=True)
        lines = scorer.feed(text)
        last = scorer.finish()
        if last is not None:
            lines.append(last)
        if args.over is not None:
            lines = [x for x in lines if x.bits_per_char > args.over]
        ranked = sorted((x for x in lines if not math.isnan(x.bits_per_char)), key=lambda x: -x.bits_per_char)
        return Scores([(x.bits_per_char, _visible(x.text)) for x in lines], ranked[: args.top], args.top)
