"""`rnnpipe sample`: write what rnnpipe.sampling generates, as it comes."""

from __future__ import annotations

import contextlib

from .. import options
from .common import Failure, UsageError, load_model, use_engine


def cmd_sample(args, io):
    from ..errors import SettingError
    from ..sampling import pieces

    try:
        sample = options.sample_options(args)  # before the model is read
        options.check_engine(args)
    except SettingError as e:
        raise UsageError(e.flag(options.FLAGS)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = use_engine(load_model(args.model), args)

    def skipped(chars):
        io.note("warning: left out of the prime, never seen by the model: " + " ".join(repr(c) for c in chars))

    try:
        text = pieces(model, sample, stdin=io.stdin, skipped=skipped)
    except SettingError as e:  # the prime file
        raise Failure(e.flag(options.FLAGS)) from None
    except ValueError as e:  # the prime, or a model that has seen no text
        raise Failure(str(e)) from None
    out = io.stdout
    try:
        for piece in text:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        _end_line(out)
        return 130
    _end_line(out)
    return 0


def _end_line(out):
    """On a terminal, end the text with a newline so the prompt starts a line
    of its own; into a pipe or file the bytes stay exactly the sample's."""
    from ..progress import isatty

    if isatty(out):
        with contextlib.suppress(OSError, ValueError):
            out.write("\n")
            out.flush()
