"""What a run is to do, before it starts: its options (Options, the same
for Model.train, the command line and the magics), where it starts (the
interrupted run's place, the last run's place in the text, or a new pass)
and its learning-rate budget. Model.train asks; train.Run does."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

from . import holdout, schedule
from .config import INT64, MAX_VOCAB
from .errors import SettingError
from .schedule import FLOOR, Budget

NEEDS_HELD_OUT = "{name} needs held-out text to judge by: give a valid fraction too"

# A new model for a small text its run reads many times (choose): the default one-layer GRU learns it by heart,
# and two layers of 128 with dropout between them ended 0.12 bits/char better on the README's first command
# (100,000 characters, 60 s) and 0.21 better on 300,000 characters in 180 s; on a million characters read 13
# or 45 times the default did better (docs/benchmarks.md, "The model for the text and the time")
RATE = 100_000  # characters a second the default model trained on both cores of the machine that measured it
MANY = 30  # passes over the text from which a new model is the regularised one ...
SMALL = 500_000  # ... for a text of at most this many characters: between the sizes measured, not measured itself
MANY_PASSES = {"layers": 2, "hidden": 128, "dropout": 0.4}
CHOSEN_BY = ("cell", "hidden", "layers", "dropout")  # a run given any of these gets what it asked for


@dataclass(frozen=True)
class Options:
    """How one run trains: the same for Model.train, the command line and
    the magics (which fill it from their options). Invalid values raise
    errors.SettingError naming the field."""

    epochs: int | None = None  # passes over the text; None: one, or with max_time, passes until the time is up
    max_time: float | None = None  # seconds this run trains at most (the clock starts when text arrives)
    schedule: str = "cosine"  # the learning rate over a run whose end is known: cosine, linear or none (schedule.py)
    # the tail of each block held out and scored, not trained on; None: a small share of a text read more
    # than once (holdout.default_fraction), none of one read once (settle)
    valid_fraction: float | None = None
    # end with the best model on the held-out text, not the last one (holdout.py); None: with held-out text
    # and more than one pass
    keep_best: bool | None = None
    restart: bool = False  # a new pass and a fresh schedule, not where the last run stopped
    max_vocab: int = MAX_VOCAB  # the most distinct characters the model may grow to (VocabularyFull beyond)
    sample_every: int = 0  # report a sample every this many updates (0: never)
    save_every: float | None = None  # seconds between saves during the run (a session on a file: training.py)
    threads: int = 1  # BLAS threads: on 2 cores a second one was slower beside any other busy program
    workers: int | None = None  # processes sharing each update's streams; None: every core (engines/parallel.py)

    def __post_init__(self):
        def whole(name, low, rule):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SettingError(name, v, "{name} must be " + rule + ", not {value}")
            if v > INT64:  # saved with an interrupted run: beyond this the save itself would overflow
                raise SettingError(name, v, "{name} must be at most 2**63-1, not {value}")

        if self.epochs is not None:
            whole("epochs", 1, "at least 1")
        # `not 0 < x < inf` refuses NaN and infinity too
        for name in ("max_time", "save_every"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise SettingError(name, v, "{name} must be a positive number of seconds, not {value}")
        if self.schedule not in schedule.KINDS:
            raise SettingError("schedule", self.schedule, "{name} must be one of " + ", ".join(schedule.KINDS)
                               + ", not {value}")  # fmt: skip
        vf = self.valid_fraction
        if vf is not None:
            if isinstance(vf, bool) or not (isinstance(vf, (int, float)) and 0 <= vf < 1):
                raise SettingError("valid_fraction", vf, "{name} must be at least 0 and below 1, not {value}")
            object.__setattr__(self, "valid_fraction", float(vf))  # the model file keeps a float
        if self.keep_best not in (None, True, False):
            raise SettingError("keep_best", self.keep_best, "{name} must be True, False or None, not {value}")
        if self.keep_best and vf is not None and not vf > 0:
            raise SettingError("keep_best", True, NEEDS_HELD_OUT)
        whole("max_vocab", 1, "at least 1")
        whole("sample_every", 0, "0 (never) or more")
        whole("threads", 1, "at least 1")
        if self.workers is not None:
            whole("workers", 1, "at least 1")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def passes(self, rereadable):
        """The passes a run makes over text that can (or cannot) be read
        again: epochs, or None for passes until max_time (text read again
        only), else one."""
        if self.epochs is None and not (self.max_time is not None and rereadable):
            return 1
        return self.epochs

    def settle(self, passes, size, n, world=None, pending=None, inputs=None):
        """These options with the defaults that depend on the text decided:
        passes (Options.passes: None for passes until the time is up), size
        (characters in one pass, None when unknown), n (train.block_length),
        world (ranks training together, which keep no best model by
        default). A text read more than once holds out
        holdout.default_fraction of its first block (None when its size is
        unknown: the first block decides as it arrives) and keeps the best
        model on it; a text read once holds out nothing. An interrupted run
        on the same inputs (pending, a Position) is continued with the
        fraction it held out."""
        many = passes is None or passes > 1
        vf = self.valid_fraction
        if vf is None and pending is not None and pending.interrupted and pending.inputs == inputs:
            vf = pending.valid_fraction
        if vf is None and not many:
            vf = 0.0
        elif vf is None and size:
            vf = holdout.default_fraction(min(size, n + 1))
        keep = self.keep_best
        if keep is None:
            keep = many and vf != 0 and world is None
        elif keep and vf == 0:
            raise SettingError("keep_best", True, NEEDS_HELD_OUT + " (a text read once holds none out by default)")
        return self.replace(valid_fraction=vf, keep_best=keep)

    def held(self, size, n):
        """The share of a pass of `size` characters these settled options hold out."""
        vf = self.valid_fraction
        return holdout.share(vf if vf is not None else holdout.default_fraction(n + 1), size, n) if size else 0.0

    def spool(self, rereadable):
        """Whether text that cannot be read again must be kept for later passes."""
        passes = self.passes(rereadable)
        return not rereadable and passes is not None and passes > 1


@dataclass
class Position:
    """Where a run that stopped early was: the model keeps it (model.resume)
    so that the next run on the same input continues from there exactly."""

    inputs: list  # what was read: [{"name", "size", "fingerprint"}], as the caller described it
    epoch: int  # the pass it was in, from 1
    epochs: int | None  # passes the run was to make (None: until its time limit)
    offset: int  # characters of the pass before the current block
    chunk: int  # chunks of the current block already trained
    state: list  # per layer, a tuple of (streams, hidden) arrays: the state to go on from
    batch_size: int  # the layout it was cut with: a run with another one starts a new pass
    seq_length: int
    valid_fraction: float
    chars: int | None = None  # characters in one pass, when known (for "at 41%")
    schedule: dict | None = None  # the learning-rate schedule's schedule.Budget, as a dict
    block: int | None = None  # characters of the current block: the next run cuts the same one, however it arrives
    head: str | None = None  # a pipe's pass: SHA-256 of its first HEAD characters (compared before skipping any)
    digest: str | None = None  # a pipe's pass: SHA-256 of its text to the end of the current block
    interrupted: bool = True  # False: the run finished (its time was up) and this is only where the text goes on
    # keep-best (holdout.py): the held-out bits/char of the best model measured, which the file holds; None: none
    best: float | None = None
    # ... and the model the run goes on training from when it is a later one than that (Model.snapshot's bytes)
    current: bytes | None = None

    @property
    def fraction(self):
        """How far into the current pass, when its length is known: the
        streams of a block advance together, a chunk of characters each."""
        if not self.chars:
            return None
        done = self.offset + self.chunk * self.seq_length * len(self.state[0][0])
        return min(done / self.chars, 1.0)

    @property
    def trained(self):
        """Characters of the pass read up to where the run stopped."""
        return self.offset + self.chunk * self.seq_length * len(self.state[0][0])

    def fits(self, config, valid_fraction):
        return (self.batch_size, self.seq_length, self.valid_fraction) == (
            config.batch_size,
            config.seq_length,
            valid_fraction,
        )


def passes(text, options, inputs=None, size=None):
    """How a run reads text (anything Model.train takes): (a function giving
    each pass's pieces, whether it can be read again, what the text is,
    characters in one pass or None)."""
    if isinstance(text, str):
        if inputs is None:
            inputs = [{"name": "<text>", "size": len(text), "fingerprint": sha(text)}]
        return (lambda: [text]), True, inputs, len(text)
    inputs = [{"name": "<stream>"}] if inputs is None else inputs
    if callable(text):
        return text, True, inputs, size
    if options.spool(False):
        blocks = [b for b in text if b]  # read once, kept for the later passes
        return (lambda: blocks), True, inputs, sum(len(b) for b in blocks)
    return (lambda: text), False, inputs, size


def choose(size, options, changes=()):
    """The Config fields of a new model, and why, in words: ({}, None) for
    the default, unless the run names none of CHOSEN_BY among its changes
    and reads its text (size characters) at least MANY times: --epochs, or
    --max-time at RATE characters a second (an estimate: a slower machine
    reads it fewer times), and it has at most SMALL characters. A text of
    unknown size (a pipe) gets the default."""
    if not size or size > SMALL or any(k in changes for k in CHOSEN_BY):
        return {}, None
    times = [options.epochs] if options.epochs is not None else []
    if options.max_time is not None:
        times.append(options.max_time * RATE / size)
    if not times or min(times) < MANY:
        return {}, None
    why = (f"2 layers of 128 units with dropout 0.4, for a text of {size:,} characters read about {min(times):,.0f} "
           f"times in the run (a text of at most {SMALL:,} read at least {MANY} times: the default one layer of 192 "
           "learns it by heart)")  # fmt: skip
    return dict(MANY_PASSES), why


def sha(text):
    """SHA-256 in hex of a text's UTF-8 (lone surrogates kept as they are)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def start(model, inputs, options, epochs, again):
    """(the position to continue from or None, a note for the user or None)."""
    r, model.resume = model.resume, None
    if r is None:
        return None, None
    said = (lambda note: note) if r.interrupted else (lambda note: None)  # a finished run's place goes unsaid
    if not r.interrupted and epochs is not None and again:
        return None, None  # passes over a file start at its beginning
    if options.restart:
        return None, said("--restart: starting a new pass, not the interrupted one")
    if r.inputs != inputs:
        return None, said("the input is not the one the interrupted run read: starting a new pass")
    if not r.fits(model.config, options.valid_fraction):
        return None, said(
            "--batch-size, --seq-length or --valid-fraction differ from the interrupted run's: starting a new pass"
        )
    if epochs is not None and r.epoch > epochs:
        return None, said(f"the interrupted run was in pass {r.epoch}, past --epochs {epochs}: starting a new pass")
    model.resume = r  # until the run moves on
    which = "interrupted" if r.interrupted else "last"
    if not again:
        if r.digest is None:  # saved before pipes were fingerprinted
            return r, f"continuing pass {r.epoch} with the interrupted run's hidden state, on the text arriving now"
        return r, f"the same text as the {which} run read: skipping the {r.trained:,} characters it trained on"
    of = "" if epochs is None else f" of {epochs}"
    at = "" if r.fraction is None else f" at {r.fraction:.0%}"
    if r.interrupted:
        return r, f"continuing epoch {r.epoch}{of}{at}"
    return r, f"going on from pass {r.epoch}{at} of the text, where the last run stopped"


def budget(model, options, resume, total, held=0.0):
    """(the learning-rate schedule's Budget for a run, its time limit);
    held: the share of each pass held out, not trained on."""
    max_time = options.max_time
    scheduled = options.schedule != "none" and (options.epochs is not None or max_time is not None)
    saved = resume.schedule if resume is not None and resume.interrupted else None
    if scheduled and saved is not None and saved["kind"] == options.schedule and saved["max_time"] == max_time:
        budget = Budget(**saved)
        if not budget.spent:  # an interrupted run: its curve, to its end, in the time it had left
            return budget, None if max_time is None else max_time - budget.seconds
    # a new run: a trained model starts where its last run ended (schedule.factor)
    start = None if options.restart else model.rate if model.rate is not None else FLOOR if model.iterations else None
    if not scheduled:
        return Budget(options.schedule, None, None, start=start), max_time
    trained = None if total is None else int(total * (1 - held))
    return Budget(options.schedule, trained, max_time, start=start), max_time


GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # rows of Wxh per hidden unit (cells/*.py)
MEMORY_SHARE = 0.5  # the most of the machine's memory one update's arrays may take


def update_bytes(config, vocab_size):
    """About how much memory a run's updates take at their peak: for each of
    the seq_length x batch_size positions, every layer's gates, states and
    their gradients kept for the backward pass, and the output layer's
    logits, probabilities and gradient. Fitted to peak RSS at batch 4096
    (docs/reliability.md): 3.3 GB measured against 4.6 estimated for the
    default GRU 192, 5.8 against 6.5 for an LSTM 256."""
    per_position = config.layers * config.hidden * (3 * GATES[config.cell] + 16) + 8 * max(vocab_size, 100)
    return config.seq_length * config.batch_size * per_position * (4 if config.dtype == "float32" else 8)


def memory():
    """The machine's physical memory in bytes, or None where it cannot say."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(config, vocab_size, total=None):
    """SettingError naming --batch-size before any work when one update would
    need more than MEMORY_SHARE of the machine's memory (total, in bytes)."""
    total = memory() if total is None else total
    need = update_bytes(config, vocab_size)
    if total and need > MEMORY_SHARE * total:
        raise SettingError(
            "batch_size",
            config.batch_size,
            f"{{name}} {{value}} with {{seq_length}} {config.seq_length} needs about {need / 2**30:,.1f} GiB for one "
            f"update, more than half of this machine's {total / 2**30:,.1f} GiB; give smaller ones",
            others=("seq_length",),
        )


def sample_bytes(config, vocab_size, positions):
    """About how much memory sampling takes beyond the model's arrays: the
    weights again in float64, twice (the sampler's copy and the
    recurrence's rearranged one), and for each of `positions` run at once (a
    chunk of the prime, or one character of every beam) each layer's gates
    and states and the output's logits and scores, in float64. Fitted to
    peak RSS (docs/reliability.md): 56 MiB measured for the default GRU's
    4,096-character prime chunk against 51 estimated; 124 MiB for 1,024
    beams over 3,000 characters against 126."""
    G, H, V, L = GATES[config.cell], config.hidden, vocab_size, config.layers
    weights = G * H * (V + H + 2) + (L - 1) * G * H * (2 * H + 2) + L * H + V * (H + 1)
    per_position = L * H * (G + 3) + 5 * V
    return 8 * (2 * weights + positions * per_position)


def prime_chunk(config, vocab_size, most, total=None):
    """The characters of a prime to run at once, at most `most`: fewer when
    a large model's activations for that many would not fit MEMORY_SHARE of
    the machine's memory (total, in bytes); at least one."""
    total = memory() if total is None else total
    if not total:
        return most
    fixed = sample_bytes(config, vocab_size, 0)
    per_position = sample_bytes(config, vocab_size, 1) - fixed
    return max(1, min(most, int((MEMORY_SHARE * total - fixed) // per_position)))


def check_sampling(config, vocab_size, beam, chunk, total=None):
    """SettingError naming --beam before any work when one character of a
    beam search `beam` wide (None: sampling) would need more than
    MEMORY_SHARE of the machine's memory (total, in bytes); else the
    characters of a prime to run at once, at most chunk (prime_chunk)."""
    total = memory() if total is None else total
    need = 0 if beam is None else sample_bytes(config, vocab_size, beam)
    if total and need > MEMORY_SHARE * total:
        raise SettingError(
            "beam",
            beam,
            f"{{name}} {{value}} over this model's {vocab_size:,} characters needs about {need / 2**30:,.1f} GiB for "
            f"each character, more than half of this machine's {total / 2**30:,.1f} GiB; give a smaller one",
        )
    return prime_chunk(config, vocab_size, chunk, total)
