"""The magics' options: rnnpipe.options' tables as IPython's magic
arguments, and their line split as a POSIX shell splits it."""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, argument_group

from rnnpipe import options

from .store import DEFAULT_NAME


def group(title, table):
    """Decorators adding a group of options from rnnpipe.options to a magic."""
    decorators = [argument_group(title)] + [argument(*flags, **kwargs) for flags, kwargs in table]

    def apply(func):
        for deco in reversed(decorators):
            func = deco(func)
        return func

    return apply


def parse(magic, line):
    """The magic's options from its line, split as a POSIX shell splits it.

    IPython's parse_argstring keeps quotes in values ('--prime "KING HENRY:"'
    would prime with the quotes), so a path or a prime with a space could not
    be written at all."""
    try:
        argv = shlex.split(line)
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise UsageError(f"{str(e).lower()} in the options: {line.strip()}") from None
    return magic.parser.parse_args(argv)  # MagicArgumentParser turns errors into UsageError


def model_option(help):
    flags, kwargs = options.MODEL
    return argument(*flags, **{**kwargs, "help": help})


def name_option(func):
    return argument(
        "--name",
        metavar="NAME",
        help=f"keep the model in this session's memory under NAME, without a file (default {DEFAULT_NAME!r})",
    )(func)


def output_option(help):
    """-o VAR: where the magic stores its result in the notebook (common.ModelMagics.check_output)."""
    return argument("-o", dest="output", metavar="VAR", help=help)
