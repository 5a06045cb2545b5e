"""``%%charrnn_show``: a text coloured by the model's surprise (or one
unit's activation), inline, as `rnnpipe show` draws it."""

from __future__ import annotations

import os
import sys

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from rnnpipe import options

from . import parsing, store
from .common import ModelMagics


@magics_class
class ShowMagics(ModelMagics):
    """%charrnn_show and %%charrnn_show."""

    def __init__(self, shell, models):
        super().__init__(shell, models)
        self.shown = 0  # pages shown: two pages in one notebook need two ids

    @magic_arguments(name="%charrnn_show")
    @parsing.model_option("model file to read the text with")
    @parsing.name_option
    @argument("--text", metavar="VAR", help="show the string in the notebook variable VAR instead of the cell body")
    @parsing.group("colour", options.SHOW)
    @line_cell_magic
    def charrnn_show(self, line, cell=None):
        """Show a text coloured by how surprised the model was at each
        character (or, with --neuron K, by unit K's activation), inline, as
        `rnnpipe show` draws it: hover over a character (or Tab to the text
        and use the arrow keys) for its probability and the model's top five
        guesses. As a cell magic, %%charrnn_show shows the cell's text; as a
        line magic, the string named by --text.
        """
        from IPython.display import HTML

        from rnnpipe.errors import SettingError
        from rnnpipe.pages import show
        from rnnpipe.pages.trace import check_unit, trace

        args = parsing.parse(self.charrnn_show, line)
        text = self.text(args, cell, "charrnn_show")
        if not text:
            raise UsageError("nothing to show: the text is empty")
        entry = store.find(self.models, args, create=False)
        model = entry.model
        neuron = args.neuron is not None
        try:
            check_unit(model.config, args.layer, args.neuron)
        except SettingError as e:
            raise UsageError(e.flag(options.FLAGS)) from None
        note = None
        if len(text) > show.MAX_CHARS:
            note = (
                f"The text is longer than {show.MAX_CHARS:,} characters: this page shows its first {show.MAX_CHARS:,}."
            )
            print(note, file=sys.stderr)
            text = text[: show.MAX_CHARS]
        try:
            tr = trace(model.config, model.vocab, model.params, text, layers=[args.layer] if neuron else [])
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.shown += 1
        page = show.fragment(tr, model.vocab, model_label=show.model_label(model, entry.label),
                             layer=args.layer if neuron else None, unit=args.neuron, note=note,
                             uid=f"{os.getpid()}-{self.shown}")  # fmt: skip
        display(HTML(page))
