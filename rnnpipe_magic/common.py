"""What every rnnpipe magic shares: the models held between cells (one
dict for all of them, given when load_ipython_extension makes them), the
text a cell magic works on, and the -o variable it may store into."""

from __future__ import annotations

import builtins
import keyword

from IPython.core.error import UsageError
from IPython.core.magic import Magics

from rnnpipe.errors import Unavailable
from rnnpipe.reader import lone_surrogate


class ModelMagics(Magics):
    """A magics class over the notebook's models: models maps ("file",
    absolute path) or ("name", name) to a store.Entry, shared by every
    rnnpipe magic in the shell."""

    def __init__(self, shell, models):
        super().__init__(shell)
        self.models = models

    def text(self, args, cell, magic):
        """The text a cell magic works on: the cell's body, or for the line
        magic the str variable --text names."""
        if args.text is not None:
            if cell and cell.strip():
                raise UsageError("give the text in the cell body or with --text, not both")
            if args.text not in self.shell.user_ns:
                raise UsageError(f"--text: no variable {args.text!r} in the notebook")
            text = self.shell.user_ns[args.text]
            if not isinstance(text, str):
                raise UsageError(f"--text: {args.text} is a {type(text).__name__}, not a str")
        elif cell is None:
            raise UsageError(f"%{magic} needs --text VAR; or put the text in the body of a %%{magic} cell")
        else:
            text = cell
        bad = lone_surrogate(text)
        if bad is not None:
            raise UsageError(bad)
        return text

    def check_output(self, var):
        if var is None:
            return
        if not var.isidentifier() or keyword.iskeyword(var):  # None, True and False are keywords too
            raise UsageError(f"-o needs a variable name, not {var!r}")
        # storing over one of these breaks the notebook itself: get_ipython, In, Out, exit, print, __name__
        ipython = set(getattr(self.shell, "user_ns_hidden", ()))
        if var.startswith("__") and var.endswith("__") or var in ipython or hasattr(builtins, var):
            raise UsageError(f"-o {var} would replace a name the notebook or Python needs; choose another name")


def use_engine(model, args):
    """The model with --engine and --device applied (UsageError without torch, as the command line's one line)."""
    try:
        return model.use(args.engine, args.device)
    except Unavailable as e:
        raise UsageError(str(e)) from None
