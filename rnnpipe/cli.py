"""The command line: `rnnpipe train | sample | eval | info | show | neurons | export | import`.

A thin layer over rnnpipe.Model that behaves like a Unix filter: data on
stdout, everything else on stderr, one-line errors (exit 2 for usage, 1 for
runtime problems), quiet when a pipe closes. numpy is imported only inside
the commands, so `rnnpipe --help` starts fast.

main() takes its arguments and streams as parameters so tests can drive it
in-process; the console script calls it with none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import stat
import sys

from . import __version__, options, session

EXIT_USAGE, EXIT_FAILURE = 2, 1


class UsageError(Exception):
    """The command line is wrong: exit 2."""


class Failure(Exception):
    """The command could not do its job: exit 1."""


class _Exit(Exception):
    def __init__(self, status):
        self.status = status


class Streams:
    def __init__(self, stdin, stdout, stderr, process=False):
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.process = process  # main() runs as the process (the console script), not called in-process

    def note(self, text):
        """A message for the user on stderr."""
        print(f"rnnpipe: {text}", file=self.stderr, flush=True)


# -- argument parsing ------------------------------------------------------


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


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


DESCRIPTION = """\
A character-level recurrent network (RNN, LSTM or GRU) in pure numpy, as a
Unix filter: train a model on any text you can pipe, then generate text from
it, score text with it, describe it, or see what it sees (an HTML page of a
text coloured by its surprise or by one unit). The model is one file
(msgpack). With pip install 'rnnpipe[torch]', --engine torch trains, scores
and samples the same model file with PyTorch, on a GPU and under torchrun
too, and export/import move its weights to and from a PyTorch file.

Run `rnnpipe COMMAND --help` for a command's options.
Exit status: 0 success, 1 runtime error, 2 usage error, 130/143 when
training was interrupted by SIGINT/SIGTERM (after saving the model)."""

EPILOG = """\
example:
  cat *.txt | rnnpipe train -m shakespeare.msgpack
  rnnpipe sample -m shakespeare.msgpack -n 500 --temperature 0.8 | less
  rnnpipe show -m shakespeare.msgpack act1.txt -o act1.html"""

TRAIN_DESCRIPTION = """\
Train MODEL on the text of the FILEs, or of stdin when there are none or a
FILE is "-". MODEL is created when it does not exist (architecture options
choose its shape); otherwise it is loaded and training continues where it
stopped, with characters it has not seen before added to its vocabulary. A
run that stopped early (Ctrl-C, --max-time) is continued exactly, from the
same place in the same pass, when run again on the same unchanged input
(`rnnpipe info` shows what is pending; --restart starts a new pass instead).
Text piped again after an interrupted run is recognised by a fingerprint,
and what the run trained on is skipped. A run bounded by --max-time alone is
finished when its time is up: the same command trains as long again, going
on where the text does. A run on a trained model starts at the learning rate
its last run ended at and never rises above it (README.md, "Running it
again").

Input is read as UTF-8 (invalid bytes become U+FFFD and are counted) and
streamed, so memory does not grow with the input. It is cut into blocks of
about a million characters by position; a pipe's text that has waited 2
seconds is trained on at once as a shorter block, so `tail -f LOG | rnnpipe
train -m MODEL` learns each line within seconds. How a pipe delivers the
text changes nothing as long as each million characters comes within 2
seconds.

How long it trains: one pass over the text by default; --epochs N passes;
with --max-time and no --epochs, pass after pass over the FILEs until the
time is up (whichever of --epochs and --max-time ends first, with both).
FILEs are read again from disk for each pass. Stdin can be read only once:
without --epochs it is one pass, and --epochs above 1 spools it to a
temporary file. Input that is evidently binary (NUL bytes, or over a tenth of its
first 64 KiB invalid UTF-8) is refused, as grep would; --binary trains on it.

The model is saved atomically at the end, every --save-every seconds, and
on Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143): the file is always a
whole, loadable model, even if the process is killed outright. Empty input
leaves an existing model byte for byte as it was, a pending run included. If the loss climbs far above where it
was or becomes NaN, training rolls back to its last good state and divides
--lr by 4, saying so; after four tries it stops with an error and the file
is as it was before the run. A failed save (a full disk) stops training with
an error and the file keeps its last saved state.

--engine torch trains with PyTorch (the same maths, the same model file) on
--device. Under torchrun (torchrun --nproc_per_node N -m rnnpipe train
--engine torch -m MODEL FILE...) the ranks train their shares of the
--batch-size streams of the FILEs with DDP; rank 0 alone holds the lock,
saves and shows progress.

One trainer at a time per model, `rnnpipe train` or a notebook's
%%charrnn_train: a run holds a lock on MODEL.lock beside the model (removed
at the end) while it trains, and a second run on the same model fails at
once, naming the first one's process id. Temporary files .MODEL.*.tmp that
a killed run left behind are removed by the next run.

Progress goes to stderr: a bar on a terminal, a status line every few seconds
otherwise, nothing with -q; the share done and the ETA count toward whichever
limit ends the run first. While text is typed on the terminal no progress is
shown, so none mixes with the typing: only the summary at the end. Losses are
smoothed bits per character of the training text; held-out bits per character
are measured with --valid-fraction."""

TRAIN_EPILOG = """\
examples:
  rnnpipe train -m kafka.msgpack kafka.txt              # a new model (a GRU, the defaults): one pass
  rnnpipe train -m kafka.msgpack --max-time 60 kafka.txt   # train it more: a minute of passes
  rnnpipe train -m kafka.msgpack --epochs 5 kafka.txt   # five more passes
  cat *.txt | rnnpipe train -m big.msgpack --hidden 512 --layers 2 --dropout 0.2 --max-time 3600
  tail -f app.log | rnnpipe train -m log.msgpack --save-every 60 -q
  rnnpipe train -m seed.msgpack --cell rnn --hidden 100 --seq-length 25 \\
      --batch-size 1 --optimizer adagrad --lr 0.1 input.txt   # the original min-char-rnn"""

SAMPLE_DESCRIPTION = """\
Write N characters generated by MODEL to stdout, as they are generated, or
fewer where --lines or --until stops sooner. --prime conditions the model on a
text first (and is written out first unless --no-echo-prime). The same --seed
with the same model gives the same text on any machine. Stops quietly when the
reader of the pipe goes away. On a terminal the text ends with a newline; into
a pipe or file it is exactly the prime and the generated characters.

A --temperature below 1e-30 counts as 0 (the likeliest character); a huge one
samples almost uniformly from the vocabulary, and inf exactly uniformly. A
--top-k of the vocabulary's size or more samples from all of it, as without
--top-k. A prime with characters the model has never seen is refused, unless
--skip-unknown."""

SAMPLE_EPILOG = """\
examples:
  rnnpipe sample -m kafka.msgpack -n 1000
  rnnpipe sample -m kafka.msgpack -n 0 --temperature 0.7 | less     # until you quit less
  rnnpipe sample -m kafka.msgpack --prime 'Gregor ' --seed 1 -n 200
  rnnpipe sample -m kafka.msgpack --beam 8 --lines 3 --prime 'Gregor '   # the likeliest 3 lines
  rnnpipe sample -m kafka.msgpack -n 2000 --until '.'                 # one sentence, at most 2000 characters
  rnnpipe sample -m kafka.msgpack --prime-file opening.txt -n 500   # a long, multi-line prime
  head -c 400 story.txt | rnnpipe sample -m kafka.msgpack --prime-file - --no-echo-prime"""

SHOW_DESCRIPTION = f"""\
Write one self-contained HTML page (CSS and JS inline, nothing loaded from the
network: it opens from disk) showing the text of FILE (or stdin) with each
character coloured by how surprised MODEL was to see it: -log2 of the
probability it gave the character, in bits, white (0) through yellow and
orange to dark red (8 bits or more). The header gives the text's bits per
character and the model; hovering over a character, or focusing it (Tab to
the text, then the arrow keys), shows the probability and the model's top
five guesses for it. With --neuron K the colour is unit K's activation
instead (see --neuron).

The text is read as `rnnpipe eval` reads it, as one continuous stream, so the
header's bits per character are eval's for the same text. Characters the
model has never seen are shown grey and skipped (neither predicted nor
context); the first character has nothing before it and is not predicted.
Input is UTF-8 (invalid bytes become U+FFFD, with a warning). At most the
first {20_000:,} characters are shown: a longer text is cut there, with a note
on the page and on stderr.

The page goes to stdout unless -o names a file."""

SHOW_EPILOG = """\
examples:
  rnnpipe show -m kafka.msgpack chapter.txt -o surprise.html
  tail -n 40 notes.txt | rnnpipe show -m notes.msgpack -o notes.html
  rnnpipe show -m kafka.msgpack chapter.txt | gzip > surprise.html.gz      # the page on stdout
  rnnpipe show -m kafka.msgpack --neuron 17 chapter.txt -o unit17.html   # what unit 17 tracks"""

NEURONS_DESCRIPTION = f"""\
Find units of MODEL that track simple features of the text of FILE (or stdin):
inside double quotes, inside parentheses or brackets, the position in the
line, the first character of a word, just after a newline. Each feature is
computed from the text; each unit's activation after each character (LSTM:
tanh of the cell state; GRU and RNN: the hidden state) is correlated with it
(Pearson, over the characters the model knows), and the units with the
largest |correlation| for each feature are printed as a table: unit, layer,
feature, correlation. A feature the text does not vary (no quotes in it, say)
is named on stderr and left out. At most the first {50_000:,} characters are
read. --html DIR writes the `rnnpipe show --neuron` page of each unit listed."""

NEURONS_EPILOG = """\
examples:
  rnnpipe neurons -m kafka.msgpack kafka.txt
  rnnpipe neurons -m kafka.msgpack --top 1 --html pages kafka.txt   # the best unit per feature, and its page"""

EVAL_DESCRIPTION = """\
Score the text of the FILEs (or stdin) under MODEL without training it:
cross-entropy in bits and nats per character, and perplexity. The FILEs are
one text, read as one continuous stream: each character is predicted from
all the text before it, so the score does not depend on how the input is
split, piped or paced. Characters the model has never seen cannot be scored:
they are skipped (neither predicted nor context, as if they were not there)
and counted as unknown. Use text the model was not trained on to measure how
well it generalises."""

EVAL_EPILOG = """\
examples:
  rnnpipe eval -m kafka.msgpack held-out.txt
  tail -n 100 notes.txt | rnnpipe eval -m notes.msgpack --json | jq .bits_per_char"""

INFO_DESCRIPTION = """\
Describe MODEL: architecture, parameter count, vocabulary (escaped), training
hyperparameters, training state (iterations, characters seen, last loss) and
file format version."""

INFO_EPILOG = """\
examples:
  rnnpipe info -m kafka.msgpack
  rnnpipe info -m kafka.msgpack --json | jq .vocabulary_size"""


EXPORT_DESCRIPTION = """\
Write MODEL's weights to a PyTorch file: a dict with "state_dict" (the
weights by the names torch.nn.RNN, LSTM or GRU(V, H, L) gives them, under
"rnn.", and torch.nn.Linear(H, V)'s under "head."; input is one-hot over the
vocabulary), "vocab" (the characters, in index order) and "config" (the
model file's). torch.load(FILE, weights_only=True) reads it; README.md shows
the lines that load it into plain torch modules. Needs pip install
'rnnpipe[torch]'. Only the weights travel, not the optimiser state."""

EXPORT_EPILOG = """\
example:
  rnnpipe export -m kafka.msgpack --torch kafka.pt"""

IMPORT_DESCRIPTION = """\
Make a new MODEL from a PyTorch file in export's layout: a dict with
"state_dict", "vocab" and "config" (without "config", the cell, size, layers
and dtype are read from the weights' shapes). torch's two biases per gate add
up into rnnpipe's one. The model starts with fresh optimiser state; the
weights are exactly the file's. MODEL must not exist. Needs pip install
'rnnpipe[torch]'."""

IMPORT_EPILOG = """\
example:
  rnnpipe import --torch kafka.pt -m kafka2.msgpack"""


def _model_option(parser, help):
    flags, kwargs = options.MODEL
    parser.add_argument(*flags, required=True, **{**kwargs, "help": help})


def build_parser(streams=None):
    parser = Parser(
        prog="rnnpipe",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    parser.streams = streams
    parser.add_argument("--version", action="version", version=f"rnnpipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(name, func, help, description, epilog):
        p = sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=Formatter)
        p.streams = streams
        p.set_defaults(func=func)
        return p

    t = command("train", cmd_train, "learn from FILEs or stdin: create MODEL or train it more", TRAIN_DESCRIPTION,
                TRAIN_EPILOG)  # fmt: skip
    _model_option(t, "model file to create, or to load and keep training")
    t.add_argument("files", nargs="*", metavar="FILE", help="text to train on; stdin when none or -")
    options.add(
        t.add_argument_group("architecture (chosen when the model is created; fixed after)"), options.ARCHITECTURE
    )
    options.add(t.add_argument_group("training (may change from run to run; saved with the model)"), options.HYPER)
    run = t.add_argument_group("this run")
    options.add(run, options.RUN)  # --save-every among them, as in the notebook
    run.add_argument(
        "--binary", action="store_true", help="train on input even when it looks like binary data, not text"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    options.add(t.add_argument_group("engine"), options.ENGINE)

    s = command("sample", cmd_sample, "write generated text to stdout", SAMPLE_DESCRIPTION, SAMPLE_EPILOG)
    _model_option(s, "model file to sample from")
    options.add(s, options.SAMPLE)
    options.add(s, options.ENGINE)

    w = command("show", cmd_show, "an HTML page of a text coloured by the model's surprise (or a unit)",
                SHOW_DESCRIPTION, SHOW_EPILOG)  # fmt: skip
    _model_option(w, "model file to read the text with")
    w.add_argument("file", nargs="?", default="-", metavar="FILE", help="text to show; stdin when none or -")
    w.add_argument("-o", "--output", metavar="PAGE", help="write the page to this file (default: stdout)")
    options.add(w, options.SHOW)

    u = command("neurons", cmd_neurons, "units that track quotes, brackets, the line's length...",
                NEURONS_DESCRIPTION, NEURONS_EPILOG)  # fmt: skip
    _model_option(u, "model file whose units to rank")
    u.add_argument("file", nargs="?", default="-", metavar="FILE", help="text to read; stdin when none or -")
    u.add_argument("--top", type=int, default=3, metavar="N", help="units listed per feature (default 3)")
    u.add_argument(
        "--html",
        metavar="DIR",
        help="also write the --neuron page of each unit listed into DIR (created if need be), named "
        "FEATURE-layerL-unitK.html",
    )

    e = command("eval", cmd_eval, "bits per character (and perplexity) of a text under MODEL", EVAL_DESCRIPTION,
                EVAL_EPILOG)  # fmt: skip
    _model_option(e, "model file to score with")
    e.add_argument("files", nargs="*", metavar="FILE", help="text to score; stdin when none or -")
    options.add(e, [options.THREADS])
    options.add(e, options.ENGINE)
    e.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text: bits_per_char, nats_per_char, perplexity, chars (scored), "
        "unknown (skipped), invalid_bytes",
    )

    i = command("info", cmd_info, "architecture, vocabulary and training state of MODEL", INFO_DESCRIPTION,
                INFO_EPILOG)  # fmt: skip
    _model_option(i, "model file to describe")
    i.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text (resume: null, or the pending run's epoch, epochs and fraction)",
    )
    x = command("export", cmd_export, "write MODEL's weights as a PyTorch file", EXPORT_DESCRIPTION, EXPORT_EPILOG)
    _model_option(x, "model file to export")
    x.add_argument("--torch", required=True, metavar="FILE", help="the PyTorch file to write (a .pt)")

    m = command("import", cmd_import, "make MODEL from a PyTorch file's weights", IMPORT_DESCRIPTION, IMPORT_EPILOG)
    _model_option(m, "model file to create (it must not exist)")
    m.add_argument("--torch", required=True, metavar="FILE", help="the PyTorch file to read, in export's layout")
    parser.commands = sub.choices
    return parser


def parse(parser, argv):
    """parse_args, but options a command does not know are reported by that
    command's parser, so the hint names `rnnpipe COMMAND --help`."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# -- shared helpers ----------------------------------------------------------


def load_model(path):
    """Load a model or fail with a message naming the file."""
    return read_model(path)[0]


def read_model(path):
    """(the model, the file's bytes), read once (a pipe can be read only
    once), or fail with a message naming the file."""
    from .model import Model
    from .modelfile import ModelFormatError

    if not os.path.exists(path):
        holder = session.TrainLock(path).holder()
        if holder is not None:
            raise Failure(
                f"{path}: no model file yet: {holder} is creating it and saves it when it ends "
                "(or every --save-every seconds)"
            )
        raise Failure(f"{path}: no such model file (create one with: rnnpipe train -m {path} FILE)")
    if os.path.isdir(path):
        raise Failure(f"{path}: is a directory, not a model file")
    # a device such as /dev/zero would be read until memory runs out; a pipe
    # (-m <(...)) is fine: it ends
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise Failure(f"{path}: is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read()
        return Model.from_bytes(data), data
    except OSError as e:
        raise Failure(f"{path}: cannot read model: {e.strerror}") from None
    except ModelFormatError as e:
        raise Failure(f"{path}: {e}") from None


def use_engine(model, args):
    """The model with the engine and device args ask for (Failure without torch)."""
    return _use(model, args)


def check_writable(path):
    """Fail before any work if a file could not be saved at path."""
    from .training import check_writable

    try:
        check_writable(path)
    except session.SessionError as e:
        raise Failure(str(e)) from None


def open_inputs(files, stdin):
    from .reader import InputError, open_inputs

    try:
        return open_inputs(files, stdin)
    except InputError as e:
        raise Failure(str(e)) from None


def escape(chars):
    """A vocabulary as one printable line: newline as \\n, other control or
    invisible characters as \\t, \\xNN, \\uNNNN; backslash doubled."""
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
    out = []
    for c in chars:
        if c in named:
            out.append(named[c])
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def reading_terminal(sources):
    """Whether one of the inputs is stdin on a terminal: text being typed."""
    return any(s.fd is not None and s.name == "<stdin>" and os.isatty(s.fd) for s in sources)


# -- commands ----------------------------------------------------------------


def cmd_train(args, io):
    try:
        opts = options.train_options(args)
        options.check_engine(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    world = _world(args)
    try:
        return _train(args, io, opts, world)
    finally:
        if world is not None:
            from . import ddp

            ddp.stop()


def _world(args):
    """The ddp.World when torchrun started this process, else None."""
    from .engine import launched

    if not launched():
        return None
    if args.engine != "torch":
        raise UsageError("under torchrun, train with --engine torch (the numpy engine trains in one process)")
    if not args.files or "-" in args.files:
        raise UsageError("under torchrun, give the text as FILEs, which every rank reads (not stdin)")
    try:
        from .engine import torchnet

        torchnet()
    except RuntimeError as e:
        raise Failure(str(e)) from None
    from . import ddp

    return ddp.start(args.device)


def _train(args, io, opts, world):
    """Train through a training.Session: this face only reads the text and shows progress."""
    from . import training

    lead = world is None or world.rank == 0  # rank 0 alone holds the lock, saves and shows progress
    quiet = args.quiet or not lead
    # opened before signals are only recorded: opening a FIFO waits for a
    # writer, and Ctrl-C must still end that wait
    sources = open_inputs(args.files, io.stdin)
    try:
        # signals are only recorded from here to the end, lock release
        # included: a burst of Ctrl-C cannot cut short a save or the cleanup
        with session.Interrupt(hold=io.process) as interrupt:
            note = (lambda text: None) if quiet else io.note
            with training.Session(args.model, session.CLI, note=note, interrupt=interrupt, lead=lead) as s:
                _open(args, s, sources, world)
                try:
                    return _run(args, io, s, sources, opts if lead else opts.replace(sample_every=0), world, quiet)
                finally:
                    # the torch engine's DDP module must go before its process group (ddp.stop)
                    s.model.engine = None
    except session.SessionError as e:  # the lock is held, a save failed, training gave up: one line, exit 1
        raise Failure(str(e)) from None
    except RuntimeError as e:
        if world is None or lead:
            raise
        import torch.distributed as dist

        # a rank that failed (rank 0's folder or lock, say) closes its connections: say so
        # in one line; the failed rank's own message says why
        if isinstance(e, (dist.DistBackendError, dist.DistNetworkError)) or "by peer" in str(e):
            raise Failure(f"rank {world.rank}: another rank ended, so this one stops too") from None
        raise
    finally:
        for src in sources:
            src.close()


def _open(args, s, sources, world):
    """Open the session's model: the file's (or a new one) with the command
    line's changes; under torchrun, rank 0's, sent to every rank."""
    from .model import Model

    changes = options.config_changes(args)
    if world is not None:
        inputs = world.gather([src.describe() for src in sources])
        if any(i != inputs[0] for i in inputs):
            raise Failure("under torchrun every rank must read the same text: the FILEs differ between ranks")
        if world.rank != 0:
            data = world.broadcast(None)
            if data is None:
                raise Failure(f"rank {world.rank}: rank 0 could not start training (its message says why)")
            s.open({}, Model.from_bytes(data))
            return _use(s.model, args, world)
    try:
        model = load_model(args.model) if os.path.exists(args.model) else None
        try:
            s.open(changes, model)
        except ValueError as e:
            raise UsageError(f"{args.model}: {e}" if model is not None else str(e)) from None
    except BaseException:
        if world is not None:
            world.broadcast(None)  # the other ranks stop too
        raise
    if world is not None:
        world.broadcast(s.model.to_bytes())
    return _use(s.model, args, world)


def _use(model, args, world=None):
    from .engine import Unavailable

    try:
        return model.use(args.engine, args.device, world)
    except Unavailable as e:  # no torch, or no such device
        raise Failure(str(e)) from None


def _run(args, io, s, sources, opts, world, quiet):
    from .progress import Display, isatty
    from .reader import TextReader

    rereadable = all(src.rereadable for src in sources)
    spool = opts.spool(rereadable)  # stdin read once, kept in a temporary file for more passes
    # ranks must read the same blocks: their reader never stops early, and
    # training stops them all after the same chunk (train.Run.after_step)
    reader = TextReader(sources, stopped=s.interrupt if world is None else None, binary_ok=args.binary, spool=spool)
    text = reader.again if rereadable or spool else reader.blocks()
    typed = reading_terminal(sources)
    if typed and not quiet:
        io.note("reading text to train on from the terminal; end it with Ctrl-D (no progress is shown while you type)")
    # a bar or status lines would land in the middle of what is being typed
    display = Display(io.stderr, quiet=quiet, tty=isatty(io.stderr) and not typed, interval=math.inf if typed else 5.0)
    size = sum(src.chars() for src in sources) if rereadable else None
    try:
        outcome = s.train(text, opts, callback=display, read=lambda: reader.chars,
                          inputs=[src.describe() for src in sources], size=size, report_every=display.report_every,
                          valid_every=10.0 if world is None or world.rank == 0 else math.inf)  # fmt: skip
    finally:
        display.close()
    if reader.replaced and not quiet:
        io.note(f"warning: {reader.replaced} invalid UTF-8 byte(s) in the input were replaced by U+FFFD")
    if not quiet:
        io.note(outcome.summary)
    return outcome.exit_status


def cmd_sample(args, io):
    from .errors import SettingError
    from .sampling import pieces

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
    from .progress import isatty

    if isatty(out):
        with contextlib.suppress(OSError, ValueError):
            out.write("\n")
            out.flush()


def read_text(path, stdin, limit, io):
    """The text of one input (stdin for -), its first `limit` characters at
    most; (text, whether it was cut). Stops reading at the limit, so an
    endless pipe ends too. Invalid UTF-8 becomes U+FFFD, with a warning."""
    from .reader import TextReader

    sources = open_inputs([path], stdin)
    try:
        if reading_terminal(sources):
            io.note("reading the text from the terminal; end it with Ctrl-D")
        reader = TextReader(sources)
        pieces, have = [], 0
        for piece in reader.blocks():
            if piece:
                pieces.append(piece)
                have += len(piece)
                if have > limit:
                    break
    finally:
        for s in sources:
            s.close()
    if reader.replaced:
        io.note(f"warning: {reader.replaced} invalid UTF-8 byte(s) in the input were replaced by U+FFFD")
    text = "".join(pieces)
    if not text:
        raise Failure("empty input: nothing to show")
    return text[:limit], len(text) > limit


def _trace(model, text, layers, threads):
    from .trace import trace

    with options.blas_threads(threads):
        try:
            return trace(model.config, model.vocab, model.params, text, layers=layers)
        except ValueError as e:  # a model that has seen no text
            raise Failure(str(e)) from None


def _check_unit(model, args):
    from .errors import SettingError
    from .trace import check_unit

    try:
        check_unit(model.config, args.layer, args.neuron)
    except SettingError as e:
        raise UsageError(e.flag(options.FLAGS)) from None


def _write_page(path, page):
    """Write a page whole or not at all: a reader never sees half of one."""
    from .modelfile import save_bytes

    try:
        save_bytes(path, page.encode("utf-8"))
    except OSError as e:
        raise Failure(f"{path}: cannot write the page: {e.strerror}") from None


def cmd_show(args, io):
    from . import show

    model = load_model(args.model)
    if args.neuron is not None or args.layer != 0:
        _check_unit(model, args)
    text, cut = read_text(args.file, io.stdin, show.MAX_CHARS, io)
    note = None
    if cut:
        note = f"The text is longer than {show.MAX_CHARS:,} characters: this page shows its first {show.MAX_CHARS:,}."
        io.note(f"note: {note[0].lower()}{note[1:]}")
    neuron = args.neuron is not None
    tr = _trace(model, text, [args.layer] if neuron else [], 1)
    label = show.model_label(model, os.path.basename(args.model))
    page = show.page(tr, model.vocab, model_label=label, layer=args.layer if neuron else None, unit=args.neuron,
                     note=note)  # fmt: skip
    if args.output is None:
        io.stdout.write(page)
        io.stdout.flush()
        return 0
    _write_page(args.output, page)
    bpc = f"{tr.bits_per_char:.3f} bits/char" if tr.chars else "nothing predicted"
    io.note(f"wrote {args.output}: {len(text):,} characters, {bpc}")
    return 0


def cmd_neurons(args, io):
    from . import features, show

    if args.top < 1:
        raise UsageError(f"--top must be at least 1, not {args.top}")
    model = load_model(args.model)
    text, cut = read_text(args.file, io.stdin, features.MAX_CHARS, io)
    if cut:
        io.note(f"note: the text is longer than {features.MAX_CHARS:,} characters: ranking on its first "
                f"{features.MAX_CHARS:,}")  # fmt: skip
    tr = _trace(model, text, list(range(model.config.layers)), 1)
    rows, flat = features.rank(tr, args.top)
    for name in flat:
        io.note(f"feature {name} left out: {features.FEATURES[name]} does not vary in this text")
    if not rows:
        raise Failure("no feature varies in this text: nothing to rank (it needs at least two known characters)")
    lines = [f"{'unit':>6}  {'layer':>5}  {'feature':<11}  {'correlation':>11}  meaning"]
    for name, layer, unit, r in rows:
        lines.append(f"{unit:>6}  {layer:>5}  {name:<11}  {r:>+11.3f}  {features.FEATURES[name]}")
    io.stdout.write("\n".join(lines) + "\n")
    io.stdout.flush()
    if args.html:
        try:
            os.makedirs(args.html, exist_ok=True)
        except OSError as e:
            raise Failure(f"{args.html}: cannot make the folder: {e.strerror}") from None
        label = show.model_label(model, os.path.basename(args.model))
        for name, layer, unit, r in rows:
            note = f"Ranked by rnnpipe neurons: correlation {r:+.3f} with {name}, {features.FEATURES[name]}."
            path = os.path.join(args.html, f"{name}-layer{layer}-unit{unit}.html")
            _write_page(path, show.page(_cut_trace(tr, show.MAX_CHARS), model.vocab, model_label=label, layer=layer,
                                        unit=unit, note=note))  # fmt: skip
        io.note(f"wrote {len(rows)} page(s) into {args.html}")
    return 0


def _cut_trace(tr, limit):
    """The first `limit` characters of a trace: a page shows at most show.MAX_CHARS."""
    from .trace import Trace

    if len(tr.text) <= limit:
        return tr
    return Trace(tr.text[:limit], tr.known[:limit], tr.scored[:limit], tr.prob[:limit], tr.bits[:limit],
                 tr.top[:limit], tr.top_prob[:limit], {k: v[:limit] for k, v in tr.units.items()})  # fmt: skip


def cmd_eval(args, io):
    try:
        options.check_engine(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = use_engine(load_model(args.model), args)
    sources = open_inputs(args.files, io.stdin)
    try:
        return _eval(args, io, model, sources)
    finally:
        for s in sources:
            s.close()


def _eval(args, io, model, sources):
    from .reader import TextReader

    if reading_terminal(sources):
        io.note("reading text to score from the terminal; end it with Ctrl-D")
    reader = TextReader(sources)
    # the inputs are one text, scored as one stream whatever sizes the reads
    # come in: the scorer cuts it by character position (see evaluate.py)
    scorer = model.scorer()  # evaluate.TextScorer, or the torch engine's
    with options.blas_threads(args.threads):
        for piece in reader.blocks():
            if piece:
                scorer.feed(piece)
    try:
        ev = scorer.result()
    except ValueError:  # fewer than two known characters
        if reader.chars == 0:
            raise Failure("empty input: nothing to score") from None
        raise Failure(
            f"nothing to score: {reader.chars} character(s), {scorer.unknown} unknown to the model; "
            "scoring needs at least two characters the model knows"
        ) from None
    scored, unknown = ev.chars, ev.unknown
    result = {
        "model": args.model,
        "bits_per_char": ev.bits_per_char,
        "nats_per_char": ev.nats_per_char,
        "perplexity": ev.perplexity,
        "chars": scored,
        "unknown": unknown,
        "invalid_bytes": reader.replaced,
    }
    if args.json:
        print(json.dumps(result), file=io.stdout)
    else:
        lines = [
            f"bits/char     {result['bits_per_char']:.4f}",
            f"nats/char     {result['nats_per_char']:.4f}",
            f"perplexity    {result['perplexity']:.4f}",
            f"scored        {scored} characters",
            f"unknown       {unknown} characters (not in the model's vocabulary: skipped, as if not there)",
        ]
        if reader.replaced:
            lines.append(f"invalid UTF-8 {reader.replaced} bytes (replaced by U+FFFD)")
        print("\n".join(lines), file=io.stdout)
    io.stdout.flush()
    return 0


def _export_module():
    from .engine import Unavailable, torchnet

    try:
        torchnet()
    except Unavailable as e:
        raise Failure(str(e).replace("--engine torch", "export and import")) from None
    from . import export

    return export


def cmd_export(args, io):
    export = _export_module()
    model = load_model(args.model)
    from .modelfile import save_bytes

    save_bytes(args.torch, export.to_bytes(model))
    return 0


def cmd_import(args, io):
    export = _export_module()
    path = args.model
    check_writable(path)
    if not os.path.isfile(args.torch):
        raise Failure(f"{args.torch}: no such file")
    try:
        model = export.from_file(args.torch)
    except export.FormatError as e:
        raise Failure(f"{args.torch}: {e}") from None
    except Exception as e:  # torch.load's own refusals: not a torch file, pickled code
        raise Failure(f"{args.torch}: cannot load: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        with session.TrainLock(path, session.CLI):
            if os.path.exists(path):
                raise Failure(f"{path}: exists; import makes a new model (remove it first, or give another name)")
            session.Saver(model, path).save()
    except session.SessionError as e:
        raise Failure(str(e)) from None
    return 0


def cmd_info(args, io):
    import msgpack

    from .modelfile import FORMAT

    model, raw = read_model(args.model)
    version = msgpack.unpackb(raw, raw=False)["version"]  # checked by the load: the version the file has
    r = model.resume
    resume = None
    if r is not None:
        resume = {
            "epoch": r.epoch,
            "epochs": r.epochs,
            "fraction": r.fraction,
            "inputs": [i["name"] for i in r.inputs],
            "offset": r.offset,
            "chunk": r.chunk,
            "interrupted": r.interrupted,  # false: the run finished, and this is where its text goes on
        }
    cfg = model.config
    log2 = math.log(2)
    last = None if model.last_loss is None else model.last_loss / log2
    smooth = model.smooth_loss / log2
    data = {
        "model": args.model,
        "format": FORMAT,
        "version": version,
        "file_bytes": len(raw),
        "config": cfg.to_dict(),
        "parameters": int(model.num_params),
        "vocabulary_size": len(model.vocab),
        "vocabulary": "".join(model.vocab.chars),
        "iterations": model.iterations,
        "chars_seen": model.chars_seen,
        "last_loss_bits": last,
        "smooth_loss_bits": smooth,
        "resume": resume,
    }
    if args.json:
        print(json.dumps(data), file=io.stdout)
    else:
        arch = f"{cfg.cell}, {cfg.layers} layer(s) of {cfg.hidden} units, {cfg.optimizer} optimizer, {cfg.dtype}"
        training = (
            f"seq-length {cfg.seq_length}, batch-size {cfg.batch_size}, lr {cfg.lr:g}, "
            f"dropout {cfg.dropout:g}, clip {cfg.clip:g}, weight-decay {cfg.weight_decay:g}, seed {cfg.seed}"
        )
        loss = "none yet" if last is None else f"{last:.4f} bits/char (smoothed {smooth:.4f})"
        lines = [
            f"model         {args.model} ({data['file_bytes']} bytes)",
            f"format        {FORMAT} version {version}",
            f"architecture  {arch}",
            f"parameters    {data['parameters']}",
            f"training      {training}",
            f"vocabulary    {len(model.vocab)} characters: {escape(model.vocab.chars)}",
            f"iterations    {model.iterations}",
            f"chars seen    {model.chars_seen}",
            f"last loss     {loss}",
            f"pending       {_pending(r)}",
        ]
        print("\n".join(lines), file=io.stdout)
    io.stdout.flush()
    return 0


def _pending(r):
    """What an interrupted run left to do, in words."""
    if r is None:
        return "nothing (the last run finished)"
    of = "" if r.epochs is None else f" of {r.epochs}"
    at = "" if r.fraction is None else f" at {r.fraction:.0%}"
    names = ", ".join(i["name"] for i in r.inputs) or "its text"
    if not r.interrupted:
        where = f"pass {r.epoch}{at} of {names}"
        return f"nothing (the last run finished; a timed or piped run on the same text goes on from {where})"
    return f"epoch {r.epoch}{of}{at} of {names}: rnnpipe train on the same input finishes it (--restart starts anew)"


# -- entry point -------------------------------------------------------------


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

    def error(message, status):
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
        return error(str(e), EXIT_FAILURE)
    except KeyboardInterrupt:
        if real:
            session.ignore_signals()  # exiting with 130: a second Ctrl-C must not cut that short
        return 130
    except BrokenPipeError:
        if real:
            _quiet_broken_pipe(stdout)
        return 0
    except MemoryError:
        return error("out of memory", EXIT_FAILURE)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return error(f"{where}{e.strerror or e}", EXIT_FAILURE)
    except Exception as e:
        if os.environ.get("RNNPIPE_DEBUG"):
            raise
        return error(f"internal error: {type(e).__name__}: {e} (set RNNPIPE_DEBUG=1 for a traceback)", EXIT_FAILURE)
