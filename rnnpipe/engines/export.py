"""A model's weights as a PyTorch file, and back: `rnnpipe export` and
`rnnpipe import`.

The file is what torch.save writes of a plain dict, loadable with
torch.load(path, weights_only=True) (no pickled code):

- "state_dict": the weights by the names torch.nn.RNN / LSTM / GRU(V, H, L)
  gives them under the prefix "rnn." and torch.nn.Linear(H, V) under
  "head." (layout.to_torch maps them; input is one-hot over the vocabulary);
- "vocab": the characters, a list of str, in index order;
- "config": the model file's config map (docs/model-format.md).

Only weights travel: importing gives a model with fresh optimiser state and
no training history, as a new model has.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile

import numpy as np
import torch

from .. import optim
from ..cells import net
from ..config import Config
from . import layout


class FormatError(ValueError):
    """The file is not a state_dict in the layout export writes; the message says why."""


def to_bytes(model) -> bytes:
    model.sync()
    arrays = layout.to_torch(model.params, model.config)
    data = {
        "state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
        "vocab": list(model.vocab.chars),
        "config": model.config.to_dict(),
    }
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


def _config(data, state):
    """The config a file names, or, for a bare state_dict's dict without
    one, what its shapes say (the other fields the defaults)."""
    if isinstance(data.get("config"), dict):
        return Config.from_dict(data["config"])
    layers = sum(1 for k in state if k.startswith("rnn.weight_hh_l"))
    G, H = state["rnn.weight_hh_l0"].shape
    cells = {cell.GATES: name for name, cell in net.CELLS.items()}
    if G % H or G // H not in cells:
        raise FormatError(f"rnn.weight_hh_l0 has shape {G}x{H}: not an RNN, GRU or LSTM's")
    dtype = "float64" if state["rnn.weight_hh_l0"].dtype == torch.float64 else "float32"
    return Config(cell=cells[G // H], hidden=H, layers=layers, dtype=dtype)


def shapes(config, vocab_size):
    """The state_dict's names and shapes for config: torch.nn.RNN / LSTM /
    GRU(V, H, L) and Linear(H, V), worked out, not built (a file saying
    hidden 20,000 would otherwise allocate gigabytes before its shapes were
    looked at)."""
    G, H, V = net.CELLS[config.cell].GATES, config.hidden, vocab_size
    out = {}
    for k in range(config.layers):
        out[f"rnn.weight_ih_l{k}"] = (G * H, V if k == 0 else H)
        out[f"rnn.weight_hh_l{k}"] = (G * H, H)
        out[f"rnn.bias_ih_l{k}"] = (G * H,)
        out[f"rnn.bias_hh_l{k}"] = (G * H,)
    out["head.weight"], out["head.bias"] = (V, H), (V,)
    return out


def check_archive(path):
    """Before torch.load reads a byte: the zip archive torch.save writes,
    whose members are stored, not compressed, so that what it unpacks is
    never more than the file holds (a megabyte of deflated zeros would
    unpack to a gigabyte)."""
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            for m in members:
                if m.compress_type != zipfile.ZIP_STORED:
                    raise FormatError(f"{m.filename!r} is compressed ({m.compress_size:,} bytes unpacking to "
                                      f"{m.file_size:,}); torch.save stores its data as it is")  # fmt: skip
            held = sum(m.file_size for m in members)
            if held > size:
                raise FormatError(f"its members claim {held:,} bytes, more than the file's {size:,}")
            pickles = [m for m in members if m.filename.endswith("/data.pkl") and m.filename.count("/") == 1]
            if len(pickles) != 1:
                raise FormatError("not a PyTorch file as torch.save writes it (no data.pkl)")
            check_pickle(archive.read(pickles[0]), PICKLE_PER_BYTE * size + PICKLE_ALLOWANCE)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError("not a PyTorch file as torch.save writes it (a zip archive)") from None


# What unpickling data.pkl may make, per byte of the file: a vocabulary's characters on one unit cost
# the most (each a str, a memo entry and a stack slot, about 250 bytes, for 8 bytes of pickle and 12 of
# weights), and the allowance covers the most tensors a state_dict has (4,098).
PICKLE_PER_BYTE, PICKLE_ALLOWANCE = 16, 16 << 20
_PICKLE_COSTS = {
    **dict.fromkeys(
        (
            "EMPTY_DICT",
            "EMPTY_LIST",
            "EMPTY_TUPLE",
            "EMPTY_SET",
            "MARK",
            "TUPLE",
            "TUPLE1",
            "TUPLE2",
            "TUPLE3",
            "LIST",
            "DICT",
            "FROZENSET",
        ),
        80,
    ),  # fmt: skip
    **dict.fromkeys(("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"), 100),  # a memo entry
    **dict.fromkeys(
        ("GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "BINPERSID", "PERSID"), 200
    ),  # fmt: skip
}


def check_pickle(data, budget):
    """Before torch's unpickler builds anything: data.pkl's opcodes walked
    (pickletools, which builds none of their objects), each charged what
    the unpickler would make of it, a stack slot and a place in a container,
    against budget; one line when they would take more (4 MB of empty dicts
    took 145 MB)."""
    import pickletools

    left = budget
    try:
        for op, arg, _ in pickletools.genops(data):
            cost = _PICKLE_COSTS.get(op.name, 0)
            if isinstance(arg, (str, bytes, int)) and op.name not in (
                "BINPUT",
                "LONG_BINPUT",
                "PUT",
                "MEMOIZE",
                "BINGET",
                "LONG_BINGET",
                "GET",
                "PROTO",
                "FRAME",
            ):
                cost += sys.getsizeof(arg)  # fmt: skip
            elif isinstance(arg, float):
                cost += 32
            if op.stack_after:  # it pushes a value: a slot on the stack, then in a list or a dict
                cost += 64
            left -= cost
            if left < 0:
                raise FormatError(f"its data.pkl would take more than {budget:,} bytes to unpickle, "
                                  f"{PICKLE_PER_BYTE} times the file's size and more")  # fmt: skip
    except ValueError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"its data.pkl is not a pickle ({e})") from None


def check_storage(state):
    """Each tensor's elements are in the file: together they need no more
    bytes than the storages under them hold (a view with zero strides would
    stand for any number of elements over a few bytes)."""
    storages, needed = {}, 0
    for t in state.values():
        storage = t.untyped_storage()
        storages[storage.data_ptr(), storage.nbytes()] = storage.nbytes()
        needed += t.numel() * t.element_size()
    if needed > sum(storages.values()):
        raise FormatError(
            f"its tensors stand for {needed:,} bytes of weights; the file holds {sum(storages.values()):,}"
        )


def from_file(path):
    """A Model with the weights, vocabulary and config of an exported file."""
    from ..model import Model
    from ..vocab import Vocab

    check_archive(path)
    data = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise FormatError("not a dict with a state_dict (rnnpipe export writes one)")
    state, vocab = data["state_dict"], data.get("vocab")
    if not isinstance(vocab, list) or not all(isinstance(c, str) and len(c) == 1 for c in vocab):
        raise FormatError("vocab must be a list of one-character str, in index order")
    if len(set(vocab)) != len(vocab):
        raise FormatError("vocab has a character twice")
    # a lone surrogate ("\ud800") is a str of length 1 but no character: the model file (UTF-8) cannot hold it
    odd = [c for c in vocab if 0xD800 <= ord(c) <= 0xDFFF]
    if odd:
        raise FormatError(f"vocab holds a lone surrogate, not a character: {odd[0]!r}")
    try:
        config = _config(data, state)
    except (KeyError, ValueError, TypeError) as e:
        raise FormatError(f"config: {e}") from None
    expected = shapes(config, len(vocab))
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise FormatError(f"state_dict keys differ from {config.cell}'s: missing {missing}, unexpected {extra}")
    for k, shape in expected.items():
        if not isinstance(state[k], torch.Tensor) or not state[k].is_floating_point():
            # complex would lose its imaginary part in the cast below, integers were never weights
            got = state[k].dtype if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
            raise FormatError(f"{k} holds {got}, not real floating-point weights")
        if tuple(state[k].shape) != shape:
            raise FormatError(f"{k} has shape {tuple(state[k].shape)}, expected {shape}")
    check_storage(state)
    dtype = np.dtype(config.dtype)
    with np.errstate(over="ignore"):  # an overflow is reported below, as infinity
        arrays = {k: v.detach().cpu().numpy().astype(dtype) for k, v in state.items()}
    for k, a in arrays.items():
        if not np.isfinite(a).all():  # NaN or infinite in the file, or too large for config.dtype
            raise FormatError(f"{k} holds NaN or infinite weights (or weights too large for {config.dtype})")
    params = layout.from_torch(arrays, config)
    rng = np.random.default_rng(config.seed)
    return Model(config, Vocab(vocab), params, optim.init(config.optimizer, params), rng)
