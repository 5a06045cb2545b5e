"""Options shared by the command line and the IPython magics, as plain data.

Each entry is (flags, keyword arguments) for argparse's add_argument, which
IPython's magic_arguments.argument takes too, so `rnnpipe train --hidden 128`
and `%%charrnn_train --hidden 128` mean the same. Defaults are None ("not
given"): a new model fills them from Config, an existing one keeps its own.
"""

import argparse

from .config import ADAM_WEIGHT_DECAY, CELLS, DTYPES, MAX_VOCAB, OPTIMIZERS, Config
from .engines import ENGINES, blas_threads  # noqa: F401  (the faces' one name for it)
from .sampling import DEFAULT_N, MAX_CHARS, SampleOptions

D = Config()


UNITS = {"s": 1, "m": 60, "h": 3600}  # the suffixes a duration may carry: --max-time 10m, --save-every 1h


def seconds(text):
    """A duration as argparse's type: seconds, or a number followed by s, m or h
    ("90", "1.5m", "2h"). Its range (positive, finite) is train.Options' to
    check, so that Model.train(max_time=...) is refused in the same words."""
    number, unit = (text[:-1], UNITS[text[-1]]) if text[-1:] in UNITS else (text, 1)
    try:
        return float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds, or a number followed by s, m or h (10m)"
        ) from None


MODEL = (("-m", "--model"), dict(metavar="MODEL", help="model file (msgpack)"))

# architecture: fixed once a model exists
ARCHITECTURE = [
    (
        ("--cell",),
        dict(choices=CELLS, help=f"recurrent cell: rnn (the seed's vanilla RNN), lstm or gru (default {D.cell})"),
    ),
    (("--hidden",), dict(type=int, metavar="N", help=f"units per recurrent layer (default {D.hidden})")),
    (("--layers",), dict(type=int, metavar="N", help=f"stacked recurrent layers (default {D.layers})")),
    (
        ("--optimizer",),
        dict(
            choices=OPTIMIZERS,
            help=f"adagrad (the seed's, clips each entry) or adam (clips the global norm) (default {D.optimizer})",
        ),
    ),
    (("--dtype",), dict(choices=DTYPES, help=f"floating point type of weights and arithmetic (default {D.dtype})")),
]

# training hyperparameters: may change from run to run of the same model
HYPER = [
    (
        ("--dropout",),
        dict(
            type=float,
            metavar="P",
            help=f"dropout between stacked layers (so --layers 2 or more), 0 to turn off (default {D.dropout:g})",
        ),
    ),
    (
        ("--seq-length",),
        dict(type=int, metavar="N", help=f"characters per truncated backpropagation (default {D.seq_length})"),
    ),
    (
        ("--batch-size",),
        dict(type=int, metavar="N", help=f"parallel streams the text is cut into (default {D.batch_size})"),
    ),
    (("--lr",), dict(type=float, metavar="X", help=f"learning rate (default {D.lr:g}; the seed's Adagrad used 0.1)")),
    (
        ("--clip",),
        dict(
            type=float,
            metavar="X",
            help="gradient clipping: adagrad clips each gradient entry to [-X, X] (the seed's); adam scales the "
            f"per-character gradient down when its global norm is above X (default {D.clip:g})",
        ),
    ),
    (
        ("--weight-decay",),
        dict(
            type=float,
            metavar="X",
            help="shrink every weight by lr * X at each update, apart from the gradient (AdamW's decoupled "
            f"decay), so that long runs overfit less; 0 to turn off (default {ADAM_WEIGHT_DECAY:g} with adam, "
            "0 with adagrad)",
        ),
    ),
    (
        ("--seed",),
        dict(type=int, metavar="N", help=f"seeds a new model's weight initialisation and dropout (default {D.seed})"),
    ),
]

THREADS = (
    ("--threads",),
    dict(
        type=int,
        default=1,
        metavar="N",
        help="threads numpy's BLAS, or torch on a CPU, may use (default 1: on a 2-core machine a second "
        "thread trained the default GRU 0.96 to 1.22 times as fast when the machine was quiet, and 2.4 to 70 "
        "times slower beside another busy program or a second trainer; docs/benchmarks.md)",
    ),
)

# which engine computes; engine.py (the torch one is the optional extra)
ENGINE = [
    (
        ("--engine",),
        dict(
            choices=ENGINES,
            default="numpy",
            help="numpy (the default, nothing to install) or torch (PyTorch's fused RNN modules with the same maths "
            "and the same model file, on --device; needs pip install 'rnnpipe[torch]')",
        ),
    ),
    (
        ("--device",),
        dict(
            metavar="DEV",
            help="with --engine torch: cpu, cuda, cuda:N or mps (default: cuda when available, else cpu; under "
            "torchrun, GPU LOCAL_RANK of cuda)",
        ),
    ),
]

RUN = [
    THREADS,
    (
        ("--epochs",),
        dict(
            type=int,
            metavar="N",
            help="passes over the text (default: one pass, or as many as --max-time allows; see --max-time)",
        ),
    ),
    (
        ("--max-time",),
        dict(
            type=seconds,
            metavar="TIME",
            help="stop cleanly after this long (seconds, or with s, m or h: 90, 10m, 1.5h) and save; without "
            "--epochs, pass over the text again and again "
            "until then (text read from stdin is read once), and the run is finished: the same command trains as "
            "long again, going on where the text does; with --epochs, the run is interrupted (keeping the best "
            "held-out model: at its next held-out measurement) and the same command trains up to this long again "
            "toward the passes left",
        ),
    ),
    (
        ("--schedule",),
        dict(
            choices=("cosine", "linear", "none"),
            default="cosine",
            help="the learning rate over a run whose end is known from --max-time or --epochs: cosine (the default) "
            "or linear rise over the first 2%% of the run and fall to 5%% of --lr by its end; none keeps --lr "
            "throughout, the seed's way. A run given neither option, or reading a pipe without --max-time, trains "
            "at half --lr throughout (cosine or linear) or at --lr (none). A run on a trained model starts at the "
            "rate its last run ended at, never above (--restart: a fresh schedule); one that continues an "
            "interrupted run with the same --schedule and --max-time follows its schedule to the same end",
        ),
    ),
    (
        ("--keep-best",),
        dict(
            action="store_true",
            default=None,
            help="end with the model that scored best on the held-out text, not the last one (the default with "
            "held-out text and more than one pass; it needs held-out text, after the first pass)",
        ),
    ),
    (
        ("--restart",),
        dict(
            action="store_true",
            help="start a new pass over the text and a fresh learning-rate schedule, warm-up and peak included, "
            "even if the last run stopped early (by default it continues where that run stopped, at the rate it "
            "ended at)",
        ),
    ),
    (
        ("--max-vocab",),
        dict(
            type=int,
            default=MAX_VOCAB,
            metavar="N",
            help=f"refuse text with more distinct characters than this: the output layer grows with each "
            f"(default {MAX_VOCAB:,})",
        ),
    ),
    (
        ("--sample-every",),
        dict(
            type=int,
            default=0,
            metavar="N",
            help="show a 200-character sample every N iterations, as the seed does (default 0: never)",
        ),
    ),
    (
        ("--valid-fraction",),
        dict(
            type=float,
            metavar="F",
            help="hold out this fraction of the text (its tail; of a longer text than about a million characters, "
            "the tail of its first million) and report held-out bits per character (default: 5%% of a text read "
            "more than once, at most 10,000 characters; 0 of one read once)",
        ),
    ),
    (
        ("--save-every",),
        dict(
            type=seconds,
            metavar="TIME",
            help="also save the model this often while training (seconds, or with s, m or h: 10m) "
            "(default: only at the end and on interruption)",
        ),
    ),
]

SAMPLE = [
    (
        ("-n",),
        dict(
            type=int,
            metavar="N",
            help=f"characters to generate; 0 means until stopped (default {DEFAULT_N}; with --lines or --until, "
            f"as many as they take, at most {MAX_CHARS:,})",
        ),
    ),
    (
        ("--temperature",),
        dict(
            type=float,
            default=1.0,
            metavar="T",
            help="below 1 is safer, above 1 wilder; 0 always takes the likeliest character (default 1)",
        ),
    ),
    (("--top-k",), dict(type=int, metavar="K", help="sample only among the K likeliest characters")),
    (("--prime",), dict(default="", metavar="TEXT", help="text that conditions the model before sampling")),
    (
        ("--skip-unknown",),
        dict(
            action="store_true",
            help="leave out of the prime the characters the model has never seen, with a warning naming them "
            "(default: refuse such a prime)",
        ),
    ),
    (("--no-echo-prime",), dict(action="store_true", help="do not write the --prime text before the sample")),
    (("--seed",), dict(type=int, metavar="N", help="random seed: the same seed and model give the same text anywhere")),
    (
        ("--prime-file",),
        dict(
            metavar="PATH",
            help="take the prime from a UTF-8 file of at most 1 MiB, taken exactly (newlines included); - reads it "
            "from stdin; instead of --prime",
        ),
    ),
    (
        ("--beam",),
        dict(
            type=int,
            metavar="K",
            help="beam search: keep the K likeliest texts at each character and write the likeliest, instead of "
            "sampling; more conservative than sampling, like a lower --temperature (no --temperature or --top-k)",
        ),
    ),
    (
        ("--lines",),
        dict(
            type=int,
            metavar="N",
            help=f"stop after N complete lines: right after the Nth newline generated, or after -n characters if "
            f"sooner (without -n, at most {MAX_CHARS:,})",
        ),
    ),
    (
        ("--until",),
        dict(
            metavar="TEXT",
            help=f"stop right after TEXT first appears in the generated text (the prime is not searched), or after -n "
            f"characters if sooner (without -n, at most {MAX_CHARS:,})",
        ),
    ),
]

# what `rnnpipe show` and %charrnn_show colour by
SHOW = [
    (
        ("--neuron",),
        dict(
            type=int,
            metavar="K",
            help="colour each character by unit K's activation after reading it, blue (-1) through white to red "
            "(+1), instead of by surprise; units count from 0 (LSTM: tanh of the cell state; GRU, RNN: the hidden "
            "state)",
        ),
    ),
    (
        ("--layer",),
        dict(type=int, default=0, metavar="L", help="the layer of --neuron's unit, from 0 (default 0, the first)"),
    ),
]


def add(parser, options):
    for flags, kwargs in options:
        parser.add_argument(*flags, **kwargs)


def config_changes(args):
    """The Config fields given on a command line (argparse namespace)."""
    names = [flags[-1].lstrip("-").replace("-", "_") for flags, _ in ARCHITECTURE + HYPER]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def train_options(args):
    """train.Options from the options of `rnnpipe train` or %%charrnn_train;
    ValueError, in the command line's words, for values they refuse (both
    faces show it as a usage error)."""
    from .errors import SettingError
    from .train import Options

    try:
        return Options(epochs=args.epochs, max_time=args.max_time, schedule=args.schedule,
                       valid_fraction=args.valid_fraction, keep_best=args.keep_best, restart=args.restart,
                       max_vocab=args.max_vocab, sample_every=args.sample_every, save_every=args.save_every,
                       threads=args.threads)  # fmt: skip
    except SettingError as e:
        raise ValueError(e.flag(FLAGS)) from None


def check_engine(args):
    """Raise ValueError for a --device without --engine torch."""
    if getattr(args, "device", None) and args.engine != "torch":
        raise ValueError(f"--device {args.device} is for --engine torch (the numpy engine runs on the CPU)")


# the command line's flags for settings the core names otherwise (errors.SettingError.flag)
FLAGS = {"n": "-n", "unit": "--neuron"}


def sample_options(args):
    """The sampling options of a command line (argparse namespace), checked
    (errors.SettingError, which a face words with e.flag(FLAGS))."""
    return SampleOptions(n=args.n, temperature=args.temperature, top_k=args.top_k, seed=args.seed, prime=args.prime,
                         skip_unknown=args.skip_unknown, echo_prime=not args.no_echo_prime, beam=args.beam,
                         lines=args.lines, until=args.until, prime_file=args.prime_file)  # fmt: skip
