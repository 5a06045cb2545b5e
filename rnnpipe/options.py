"""Options shared by the command line and the IPython magics, as plain data.

Each entry is (flags, keyword arguments) for argparse's add_argument, which
IPython's magic_arguments.argument takes too, so `rnnpipe train --hidden 128`
and `%%charrnn_train --hidden 128` mean the same. Defaults are None ("not
given"): a new model fills them from Config, an existing one keeps its own.
"""

import argparse

from .config import ADAM_WEIGHT_DECAY, CELLS, DTYPES, MAX_VOCAB, OPTIMIZERS, Config
from .engines import ENGINES, blas_threads  # noqa: F401  (the faces' one name for it)
from .sampling import DEFAULT_N, SampleOptions
from .sampling import MOST as SAMPLE_MOST

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

# Each help says what the option is and its default in a line or two of `rnnpipe COMMAND --help`
# (about 90 characters at most); what takes longer is in docs/cli.md, under the command.

# architecture: fixed once a model exists
ARCHITECTURE = [
    (("--cell",), dict(choices=CELLS, help=f"rnn (the seed's), lstm or gru (default {D.cell})")),
    (("--hidden",), dict(type=int, metavar="N", help=f"units per recurrent layer (default {D.hidden})")),
    (("--layers",), dict(type=int, metavar="N", help=f"stacked recurrent layers (default {D.layers})")),
    (("--optimizer",), dict(choices=OPTIMIZERS, help=f"adagrad (the seed's) or adam (default {D.optimizer})")),
    (("--dtype",), dict(choices=DTYPES, help=f"type of weights and arithmetic (default {D.dtype})")),
]

# training hyperparameters: may change from run to run of the same model
HYPER = [
    (("--dropout",), dict(type=float, metavar="P", help=f"between stacked layers, 0 for none (default {D.dropout:g})")),
    (
        ("--seq-length",),
        dict(type=int, metavar="N", help=f"characters per truncated backprop (default {D.seq_length})"),
    ),
    (
        ("--batch-size",),
        dict(type=int, metavar="N", help=f"streams the text is cut into (default {D.batch_size})"),
    ),
    (("--lr",), dict(type=float, metavar="X", help=f"learning rate (default {D.lr:g}; the seed's 0.1)")),
    (
        ("--clip",),
        dict(
            type=float,
            metavar="X",
            help=f"clip gradients at X: adagrad each entry, adam the global norm (default {D.clip:g})",
        ),
    ),
    (
        ("--weight-decay",),
        dict(
            type=float,
            metavar="X",
            help=f"AdamW's decoupled decay, 0 for none (default {ADAM_WEIGHT_DECAY:g} with adam, 0 with adagrad)",
        ),
    ),
    (
        ("--seed",),
        dict(type=int, metavar="N", help=f"seeds a new model's weights, dropout (default {D.seed})"),
    ),
]

THREADS = (("--threads",), dict(type=int, default=1, metavar="N", help="threads BLAS or torch may use (default 1)"))

WORKERS = (
    ("--workers",),
    dict(type=int, metavar="N", help="processes sharing each update's streams (default: every core this may use)"),
)

# which engine computes; engine.py (the torch one is the optional extra)
ENGINE = [
    (
        ("--engine",),
        dict(
            choices=ENGINES,
            default="numpy",
            help="numpy (the default) or torch, same maths and model file (pip install 'rnnpipe[torch]')",
        ),
    ),
    (
        ("--device",),
        dict(metavar="DEV", help="with --engine torch: cpu, cuda, cuda:N or mps (default: cuda if there is one)"),
    ),
]

RUN = [
    THREADS,
    WORKERS,
    (("--epochs",), dict(type=int, metavar="N", help="passes, one by default (see --max-time)")),
    (
        ("--max-time",),
        dict(
            type=seconds,
            metavar="TIME",
            help="stop and save after TIME (90, 10m, 1.5h); without --epochs, pass after pass until then",
        ),
    ),
    (
        ("--schedule",),
        dict(
            choices=("cosine", "linear", "none"),
            default="cosine",
            help="the learning rate over the run (default cosine)",
        ),
    ),
    (
        ("--keep-best",),
        dict(action="store_true", default=None, help="end with the best held-out model (default: on)"),
    ),
    (("--restart",), dict(action="store_true", help="start a new pass with a fresh schedule")),
    (
        ("--max-vocab",),
        dict(type=int, default=MAX_VOCAB, metavar="N", help=f"refuse more distinct characters (default {MAX_VOCAB:,})"),
    ),
    (
        ("--sample-every",),
        dict(type=int, default=0, metavar="N", help="sample every N iterations (default 0: never)"),
    ),
    (
        ("--valid-fraction",),
        dict(type=float, metavar="F", help="hold out this share (default: 5%%, at most 10,000 chars, if read twice+)"),
    ),
    (
        ("--save-every",),
        dict(type=seconds, metavar="TIME", help="also save this often (default: only at the end)"),
    ),
]

SAMPLE = [
    (
        ("-n",),
        dict(
            type=int,
            metavar="N",
            help=f"characters to write, 0 for no end (default {DEFAULT_N}, or as many as --lines or --until take)",
        ),
    ),
    (
        ("--temperature",),
        dict(type=float, default=1.0, metavar="T", help="below 1 is safer, above 1 wilder (default 1)"),
    ),
    (("--top-k",), dict(type=int, metavar="K", help="sample only among the K likeliest characters")),
    (("--prime",), dict(default="", metavar="TEXT", help="text that conditions the model before sampling")),
    (
        ("--skip-unknown",),
        dict(
            action="store_true",
            help="leave characters the model never saw out of the prime (default: refuse the prime)",
        ),
    ),
    (("--no-echo-prime",), dict(action="store_true", help="do not write the --prime text before the sample")),
    (("--seed",), dict(type=int, metavar="N", help="random seed: the same seed and model give the same text anywhere")),
    (
        ("--prime-file",),
        dict(metavar="PATH", help="the prime from a UTF-8 file of at most 1 MiB, taken exactly; - reads stdin"),
    ),
    (
        ("--beam",),
        dict(
            type=int,
            metavar="K",
            help=f"write the likeliest text a beam search of K finds, instead of sampling (K at most "
            f"{SAMPLE_MOST['beam'][0]:,})",
        ),
    ),
    (("--lines",), dict(type=int, metavar="N", help="stop after N complete lines")),
    (("--until",), dict(metavar="TEXT", help="stop right after TEXT is generated")),
]

# what `rnnpipe show` and %charrnn_show colour by
SHOW = [
    (
        ("--neuron",),
        dict(type=int, metavar="K", help="colour by unit K's activation (from 0), blue -1 to red +1, not by surprise"),
    ),
    (
        ("--layer",),
        dict(type=int, default=0, metavar="L", help="the layer of --neuron's unit, from 0 (default 0)"),
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
                       threads=args.threads, workers=args.workers)  # fmt: skip
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
