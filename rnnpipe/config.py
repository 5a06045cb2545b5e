"""Hyperparameters of a model and of its training, as plain data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CELLS = ("rnn", "lstm", "gru")
OPTIMIZERS = ("adagrad", "adam")
DTYPES = ("float32", "float64")
MAX_VOCAB = 20_000  # distinct characters a model may grow to in training, unless a run allows more
ADAM_WEIGHT_DECAY = 0.1  # Config.weight_decay's default with Adam (docs/benchmarks.md, "Time to quality")

# Fields fixed when a model is created: changing them would change the shapes
# of the weights or the meaning of the optimiser state.
ARCHITECTURE = ("cell", "hidden", "layers", "optimizer", "dtype")


INT64 = 2**63 - 1  # the largest count or seed the model file (msgpack's signed 64-bit integers) holds for rnnpipe
# The most each size may be, and why: chosen bounds, not measured ones (docs/reliability.md)
MOST = {
    "hidden": (2**15, "no larger recurrent weight array fits in one model-file binary of 4 GiB"),
    "layers": (2**10, "each layer's arrays are built one by one"),
    "seq_length": (2**20, "a chunk's activations are held for backpropagation"),
    "batch_size": (2**20, "each stream's activations are held at once"),
}


@dataclass(frozen=True)
class Config:
    # The defaults are the configuration that reached the best held-out bits
    # per character after 60 s of training on a 2-core machine, among the
    # ones docs/benchmarks.md lists, and the weight decay that kept it
    # improving to 10 minutes on three kinds of text (measured, not guessed).
    cell: str = "gru"  # recurrent cell: rnn (the seed's), lstm or gru
    hidden: int = 192  # units in each recurrent layer
    layers: int = 1  # recurrent layers stacked under one softmax head
    dropout: float = 0.0  # dropout on the activations between layers (0 = off)
    seq_length: int = 50  # characters of truncated backpropagation through time
    batch_size: int = 32  # parallel streams, each a contiguous part of the text
    optimizer: str = "adam"  # adagrad (the seed's) or adam
    lr: float = 1e-2  # learning rate (a timed run's schedule peaks at it, then lowers it: schedule.py)
    clip: float = 5.0  # adagrad: elementwise gradient clip; adam: global-norm clip
    # each update first shrinks every weight by lr * weight_decay (AdamW's
    # decay); None: ADAM_WEIGHT_DECAY with adam, none with adagrad, whose
    # rates (the seed's 0.1) are ten times Adam's and would decay ten times faster
    weight_decay: float | None = None
    dtype: str = "float32"  # float64 for gradient checks and exactness studies
    seed: int = 0  # seeds weight initialisation and dropout

    def __post_init__(self):
        if self.weight_decay is None:  # frozen: set once, here
            object.__setattr__(self, "weight_decay", ADAM_WEIGHT_DECAY if self.optimizer == "adam" else 0.0)
        problems = []
        if self.cell not in CELLS:
            problems.append(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        for name in ("hidden", "layers", "seq_length", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, not {value!r}")
            elif value > MOST[name][0]:  # refused before any work, not an overflow or the OOM killer mid-run
                problems.append(f"{name} must be at most {MOST[name][0]:,} ({MOST[name][1]}), not {value:,}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            problems.append(f"dropout must be in [0, 1), not {self.dropout!r}")
        for name in ("lr", "clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                problems.append(f"{name} must be a positive number, not {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < float("inf")):
            problems.append(f"weight_decay must be a non-negative number, not {self.weight_decay!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            problems.append(f"seed must be a non-negative integer, not {self.seed!r}")
        elif self.seed > INT64:
            problems.append(f"seed must be at most 2**63-1, not {self.seed}")
        if problems:
            raise ValueError("; ".join(problems))

    def check_dropout(self):
        """Refuse dropout on one layer, where it would do nothing (it acts
        between stacked layers): where a model is made or its dropout changed."""
        if self.dropout > 0 and self.layers == 1:
            raise ValueError(
                f"dropout {self.dropout:g} would do nothing: it acts between stacked layers and this model has one "
                "(give 2 or more layers, or no dropout)"
            )

    def replace(self, **changes) -> Config:
        if changes.get("optimizer", self.optimizer) != self.optimizer and "weight_decay" not in changes:
            # the new optimiser's default, as Config(optimizer=...) gives; the same one keeps its decay
            changes["weight_decay"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**data)


# min-char-rnn exactly: the configuration of the notebook in shared/seed.
SEED = Config(
    cell="rnn",
    hidden=100,
    layers=1,
    seq_length=25,
    batch_size=1,
    optimizer="adagrad",
    lr=0.1,
    clip=5.0,
    weight_decay=0.0,
)
