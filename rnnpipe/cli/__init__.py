"""The command line: `rnnpipe train | sample | eval | score | info | show | neurons | export | import`.

A thin face over rnnpipe's core that behaves like a Unix filter: data on
stdout, everything else on stderr, one-line errors (exit 2 for usage, 1 for
runtime problems; 2 for both under `score --over`, as grep), quiet when a
pipe closes. Each command is a module here that parses nothing itself:
argparse (below) parses, the command calls the core (train:
rnnpipe.training.Session; sample: rnnpipe.sampling) and prints. Their
help texts are in helptext.py, what they share in common.py.
numpy is imported only inside the commands, so `rnnpipe --help` starts fast.

main() takes its arguments and streams as parameters so tests can drive it
in-process; the console script calls it with none.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .. import __version__, options, session
from . import helptext
from .common import EXIT_FAILURE, EXIT_USAGE, Failure, Streams, UsageError
from .evaluate import cmd_eval
from .info import cmd_info
from .pages import cmd_neurons, cmd_show
from .sample import cmd_sample
from .score import add_arguments as score_arguments
from .score import cmd_score
from .torchfile import cmd_export, cmd_import
from .train import cmd_train

__all__ = ["main", "build_parser", "parse", "Failure", "UsageError"]


class _Exit(Exception):
    def __init__(self, status):
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and writes to given streams."""

    streams: Streams | None = None

    def error(self, message):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f"rnnpipe {command} --help" if command else "rnnpipe --help"
        raise UsageError(f"{message} (see {hint})")

    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise _Exit(status)

    def _print_message(self, message, file=None):
        if self.streams is not None:
            file = self.streams.stderr if file is sys.stderr else self.streams.stdout
        if message and file is not None:
            file.write(message)
            file.flush()


def _model_option(parser, help):
    flags, kwargs = options.MODEL
    parser.add_argument(*flags, required=True, **{**kwargs, "help": help})


def build_parser(streams=None):
    parser = Parser(
        prog="rnnpipe",
        description=helptext.SUMMARY["rnnpipe"],
        epilog=helptext.epilog("rnnpipe"),
        formatter_class=helptext.Formatter,
    )
    parser.streams = streams
    parser.add_argument("--version", action="version", version=f"rnnpipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(name, func, help):
        # its summary and examples are helptext's; its usage is one line, made once its options are added (below)
        p = sub.add_parser(name, help=help, description=helptext.SUMMARY[name], epilog=helptext.epilog(name),
                           formatter_class=helptext.Formatter)  # fmt: skip
        p.streams = streams
        p.set_defaults(func=func)
        return p

    t = command("train", cmd_train, "learn from FILEs or stdin: create MODEL or train it more")
    _model_option(t, "model file: created, or loaded and trained more")
    t.add_argument("files", nargs="*", metavar="FILE", help="text to train on; stdin when none or -")
    options.add(
        t.add_argument_group("architecture (chosen when the model is created; fixed after)"), options.ARCHITECTURE
    )
    options.add(t.add_argument_group("training (may change from run to run; saved with the model)"), options.HYPER)
    run = t.add_argument_group("this run")
    options.add(run, options.RUN)  # --save-every among them, as in the notebook
    run.add_argument("--binary", action="store_true", help="train on input that looks like binary data, too")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    options.add(run, options.ENGINE)

    s = command("sample", cmd_sample, "write generated text to stdout")
    _model_option(s, "model file to sample from")
    options.add(s, options.SAMPLE)
    options.add(s, options.ENGINE)

    w = command("show", cmd_show, "a text as an HTML page, coloured by the model's surprise")
    _model_option(w, "model file to read the text with")
    w.add_argument("file", nargs="?", default="-", metavar="FILE", help="text to show; stdin when none or -")
    w.add_argument("-o", "--output", metavar="PAGE", help="write the page to this file (default: stdout)")
    options.add(w, options.SHOW)

    u = command("neurons", cmd_neurons, "units that track quotes, brackets, the line's length...")
    _model_option(u, "model file whose units to rank")
    u.add_argument("file", nargs="?", default="-", metavar="FILE", help="text to read; stdin when none or -")
    u.add_argument("--top", type=int, default=3, metavar="N", help="units listed per feature (default 3)")
    u.add_argument("--html", metavar="DIR", help="also write each listed unit's --neuron page into DIR")

    e = command("eval", cmd_eval, "bits per character (and perplexity) of a text under MODEL")
    _model_option(e, "model file to score with")
    e.add_argument("files", nargs="*", metavar="FILE", help="text to score; stdin when none or -")
    options.add(e, [options.THREADS])
    options.add(e, options.ENGINE)
    e.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    score_arguments(command("score", cmd_score, "each line's bits per character: which lines are unlike the rest"))

    i = command("info", cmd_info, "architecture, vocabulary and training state of MODEL")
    _model_option(i, "model file to describe")
    i.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    x = command("export", cmd_export, "write MODEL's weights as a PyTorch file")
    _model_option(x, "model file to export")
    x.add_argument("--torch", required=True, metavar="FILE", help="the PyTorch file to write (a .pt)")

    m = command("import", cmd_import, "make MODEL from a PyTorch file's weights")
    _model_option(m, "model file to create (it must not exist)")
    m.add_argument("--torch", required=True, metavar="FILE", help="the PyTorch file to read, in export's layout")
    for name, p in sub.choices.items():
        p.usage = helptext.usage(p, name)
    parser.commands = sub.choices
    return parser


def parse(parser, argv):
    """parse_args, but options a command does not know are reported by that
    command's parser, so the hint names `rnnpipe COMMAND --help`."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _quiet_broken_pipe(stdout):
    """After the reader of stdout went away: point stdout at /dev/null so the
    interpreter's final flush does not complain."""
    try:
        fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv=None, stdin=None, stdout=None, stderr=None):
    real = stdout is None
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    if real:
        # data is UTF-8 whatever the locale says, as input is read as UTF-8
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stdout.reconfigure(encoding="utf-8")
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stderr.reconfigure(encoding="utf-8", errors="backslashreplace")
    io = Streams(stdin, stdout, stderr, process=real)
    args = None

    def failed():
        # `score --over` fails with grep's 2, not 1
        return getattr(args, "failure_status", EXIT_FAILURE)

    def error(message, status):
        # one line, whatever a path or a file's names hold: control characters (a newline, ESC) escaped
        message = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
        with contextlib.suppress(OSError, ValueError):
            print(f"rnnpipe: error: {message}", file=stderr, flush=True)
        return status

    try:
        parser = build_parser(io)
        args = parse(parser, argv)
        return args.func(args, io)
    except _Exit as e:
        return e.status
    except UsageError as e:
        return error(str(e), EXIT_USAGE)
    except Failure as e:
        return error(str(e), failed())
    except KeyboardInterrupt:
        if real:
            session.ignore_signals()  # exiting with 130: a second Ctrl-C must not cut that short
        return 130
    except BrokenPipeError:
        if real:
            _quiet_broken_pipe(stdout)
        return 0
    except MemoryError:
        return error("out of memory", failed())
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return error(f"{where}{e.strerror or e}", failed())
    except Exception as e:
        if os.environ.get("RNNPIPE_DEBUG"):
            raise
        return error(f"internal error: {type(e).__name__}: {e} (set RNNPIPE_DEBUG=1 for a traceback)", failed())
