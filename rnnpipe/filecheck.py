"""The model file's fields, checked: every field before any array is built,
and anything wrong raises ModelFormatError with a message that says what
(docs/model-format.md, "Validation"). modelfile.unpack reads the file's
msgpack (fileread.read) and hands the body here."""

from __future__ import annotations

import math

import numpy as np

from . import optim, schedule
from .cells import net
from .config import Config
from .fileread import fail

DTYPES = {"float32": "<f4", "float64": "<f8"}  # config dtype -> stored dtype
COUNTER_DTYPE = "<i8"  # the optimiser's integer arrays (optim.counters), whatever config.dtype


def body(doc, version):
    """(config, vocab, params, opt_state, state) of a model body's map, checked."""
    check_type(doc, dict, "model body")
    want = {"config", "vocab", "params", "optimizer", "state"}
    if set(doc) != want:
        fail(f"model body should have exactly the keys {', '.join(sorted(want))}")
    config_doc = dict(check_type(doc["config"], dict, "config"))
    for added, fields in CONFIG_ADDED.items():
        if version < added:
            if set(fields) & set(config_doc):
                fail(f"config has {', '.join(sorted(set(fields) & set(config_doc)))}, which version {version} did not")
            config_doc.update(fields)
    missing = {f for f in Config().to_dict()} - set(config_doc)
    if missing:
        fail(f"config lacks {', '.join(sorted(missing))}")
    try:
        config = Config.from_dict(config_doc)
    except (TypeError, ValueError) as e:
        fail(f"bad config: {e}")
    vocab = check_type(doc["vocab"], list, "vocab")
    if any(not isinstance(c, str) or len(c) != 1 for c in vocab):
        fail("vocab should be a list of single characters")
    if len(set(vocab)) != len(vocab):
        fail("vocab has repeated characters")
    params_doc = check_type(doc["params"], dict, "params")
    # every layer has at least three arrays: a file cannot hold more layers
    # than that allows, and trusting a huge count would loop for ever
    if 3 * config.layers + 2 > len(params_doc):
        fail(f"params holds {len(params_doc)} arrays, too few for {config.layers} layers")
    dtype = DTYPES[config.dtype]
    shapes = net.shapes(config, len(vocab))
    params = _unpack_arrays(doc["params"], "params", {k: (s, dtype) for k, s in shapes.items()})
    opt_specs = {k: (s, dtype) for k, s in optim.shapes(config.optimizer, shapes).items()}
    counters = optim.counters(config.optimizer, len(vocab))
    if version >= 2:  # Adam's per-character update counts (version 1 has none)
        opt_specs.update({k: (s, COUNTER_DTYPE) for k, s in counters.items()})
    opt = _unpack_arrays(doc["optimizer"], "optimizer", opt_specs)
    state = _state(doc["state"], version)
    if version < 2:
        # every character counted as there from the start: version 1's behaviour
        opt.update({k: np.zeros(s, np.int64) for k, s in counters.items()})
    for k, a in opt.items():  # squared-gradient sums: a negative one makes every later update NaN
        if k.split(".", 1)[0] in ("v", "mem") and a.size and a.min() < 0:
            fail(f"optimizer.{k} holds a negative value: it sums squared gradients")
    for k in counters:  # compared as Python ints: iterations may exceed int64
        if opt[k].size and not (int(opt[k].min()) >= 0 and int(opt[k].max()) <= state["iterations"]):
            fail(f"optimizer.{k} should hold update counts between 0 and state.iterations")
    if state.get("resume") is not None:
        state["resume"] = _unpack_resume(state["resume"], config, version)
    return config, vocab, params, opt, state


def check_type(value, types, what):
    if isinstance(value, bool) or not isinstance(value, types):
        fail(f"{what} should be {types.__name__}, not {type(value).__name__}")
    return value


def unpack_array(doc, what, shape, dtype):
    check_type(doc, dict, what)
    if set(doc) != {"dtype", "shape", "data"}:
        fail(f"{what} should have exactly the keys dtype, shape, data")
    if doc["dtype"] != dtype:
        fail(f"{what} has dtype {doc['dtype']!r}; this model stores {dtype!r}")
    got = doc["shape"]
    if not isinstance(got, list) or any(not isinstance(n, int) or isinstance(n, bool) for n in got):
        fail(f"{what} has a malformed shape")
    if tuple(got) != tuple(shape):
        fail(f"{what} has shape {tuple(got)}; the config and vocabulary need {tuple(shape)}")
    data = check_type(doc["data"], bytes, f"{what} data")
    itemsize = np.dtype(dtype).itemsize
    if len(data) != math.prod(shape) * itemsize:
        fail(f"{what} holds {len(data)} bytes; its shape needs {math.prod(shape) * itemsize}")
    a = np.frombuffer(data, dtype=dtype).reshape(shape)
    if not np.isfinite(a).all():
        fail(f"{what} has NaN or infinite values")
    return a.astype(a.dtype.newbyteorder("="))  # a writable native-order copy


# `state`'s keys: those every version's file must hold (checked in
# _state), and those a file may hold from the version that added
# them, each with the function that checks its value. A field added in a
# later version goes here and in docs/model-format.md; unpack returns a
# file's state as it was, so for an older file the field is simply absent.
STATE_REQUIRED = frozenset({"iterations", "chars_seen", "smooth_loss", "last_loss", "rng"})


def _check_rate(rate):
    if rate is not None and not (isinstance(rate, float) and 0 < rate <= 1):
        fail("state.rate should be a float in (0, 1] or nil")


def _check_engine(engine):
    if engine is not None and not (isinstance(engine, str) and 0 < len(engine) <= 200):
        fail("state.engine should be a string of at most 200 characters or nil")


def _check_chosen(chosen):
    if chosen is not None and not (isinstance(chosen, str) and 0 < len(chosen) <= 500):
        fail("state.chosen should be a string of at most 500 characters or nil")


# resume is checked in unpack, knowing the config; rate: where the next run's learning rate starts;
# engine: the engine (and device) that made the latest update; chosen: why a new model has its architecture
STATE_OPTIONAL = {"resume": (2, lambda doc: None), "rate": (5, _check_rate), "engine": (6, _check_engine),
                  "chosen": (7, _check_chosen)}  # fmt: skip
# config fields added in a version, and what a file before it meant by them
CONFIG_ADDED = {4: {"weight_decay": 0.0}}


def _state(doc, version):
    check_type(doc, dict, "state")
    want = set(STATE_REQUIRED)
    optional = {k: check for k, (since, check) in STATE_OPTIONAL.items() if version >= since}
    if not want <= set(doc) <= want | set(optional):
        if optional:
            fail(f"state should have the keys {', '.join(sorted(want))} and optionally {', '.join(sorted(optional))}")
        fail(f"state should have exactly the keys {', '.join(sorted(want))}")
    for k, check in optional.items():
        if k in doc:
            check(doc[k])
    for k in ("iterations", "chars_seen"):
        # below 2**63: rnnpipe counts on from here, and the next save must still fit msgpack's integers
        if not isinstance(doc[k], int) or isinstance(doc[k], bool) or not 0 <= doc[k] < 2**63:
            fail(f"state.{k} should be a non-negative integer below 2**63")
    if not isinstance(doc["smooth_loss"], float) or not math.isfinite(doc["smooth_loss"]):
        fail("state.smooth_loss should be a finite float")
    if doc["last_loss"] is not None and not (isinstance(doc["last_loss"], float) and math.isfinite(doc["last_loss"])):
        fail("state.last_loss should be a finite float or nil")
    rng = check_type(doc["rng"], dict, "state.rng")
    if set(rng) != {"bit_generator", "state", "inc", "has_uint32", "uinteger"} or rng["bit_generator"] != "PCG64":
        fail("state.rng should be a PCG64 state with keys bit_generator, state, inc, has_uint32, uinteger")
    for k in ("state", "inc"):
        text = rng[k]
        if not (isinstance(text, str) and text.isascii() and text.isdecimal() and len(text) <= 39):
            fail(f"state.rng.{k} should be a 128-bit integer in decimal")
        if int(text) >= 2**128:
            fail(f"state.rng.{k} is out of range")
    if check_type(rng["has_uint32"], int, "state.rng.has_uint32") not in (0, 1):
        fail("state.rng.has_uint32 should be 0 or 1")
    if not 0 <= check_type(rng["uinteger"], int, "state.rng.uinteger") < 2**32:
        fail("state.rng.uinteger is out of range")
    return doc


RESUME_KEYS = {
    "inputs", "epoch", "epochs", "offset", "chunk", "batch_size", "seq_length", "valid_fraction", "chars", "state"
}  # fmt: skip


SCHEDULE_KEYS = {"kind", "total", "max_time", "chars", "seconds"}  # schedule.Budget's fields (and start, version 5)
# resume's keys from version 5: how the run's block was cut, a pipe's fingerprints, whether it was interrupted
RESUME_V5 = {"block", "head", "digest", "interrupted"}
# from version 7: keep-best's best score, and the later model a run goes on from (the file's model is the best one)
RESUME_V7 = {"best", "current"}


def _unpack_resume(doc, config, version):
    """state.resume, checked: where an interrupted run stopped."""
    check_type(doc, dict, "state.resume")
    extra = {"schedule"} if version >= 3 else set()  # version 3 may save the schedule's budget
    want = RESUME_KEYS | (RESUME_V5 if version >= 5 else set()) | (RESUME_V7 if version >= 7 else set())
    if not want <= set(doc) <= want | extra:
        fail(f"state.resume should have exactly the keys {', '.join(sorted(want | extra))}")
    doc["schedule"] = _unpack_schedule(doc.get("schedule"), version)
    if version < 5:
        doc.update(block=None, head=None, digest=None, interrupted=True)  # what such a file meant
    if doc["block"] is not None and (not isinstance(doc["block"], int) or isinstance(doc["block"], bool)
                                     or doc["block"] < 2):  # fmt: skip
        fail("state.resume.block should be an integer of at least 2 or nil")
    for k in ("head", "digest"):
        v = doc[k]
        if v is not None and not (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
            fail(f"state.resume.{k} should be a SHA-256 in hex or nil")
    if not isinstance(doc["interrupted"], bool):
        fail("state.resume.interrupted should be true or false")
    if version < 7:
        doc.update(best=None, current=None)
    best = doc["best"]
    if best is not None and not (isinstance(best, float) and math.isfinite(best) and best >= 0):
        fail("state.resume.best should be a non-negative float or nil")
    if doc["current"] is not None and (best is None or not isinstance(doc["current"], bytes)):
        fail("state.resume.current should be a model file's bytes, with a best score, or nil")

    def count(k, low, nil=False):
        v = doc[k]
        if v is None and nil:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            fail(f"state.resume.{k} should be an integer of at least {low}" + (" or nil" if nil else ""))

    for k, low in (("epoch", 1), ("offset", 0), ("chunk", 0), ("batch_size", 1), ("seq_length", 1)):
        count(k, low)
    count("epochs", 1, nil=True)
    count("chars", 0, nil=True)
    vf = doc["valid_fraction"]
    if not isinstance(vf, float) or not 0 <= vf < 1:
        fail("state.resume.valid_fraction should be a float in [0, 1)")
    inputs = check_type(doc["inputs"], list, "state.resume.inputs")
    for i in inputs:
        if not isinstance(i, dict) or not set(i) <= {"name", "size", "fingerprint"} or "name" not in i:
            fail("state.resume.inputs should be maps with a name, and a size and fingerprint for files")
        if not isinstance(i["name"], str) or not isinstance(i.get("size", 0), int) or isinstance(i.get("size"), bool):
            fail("state.resume.inputs should have a string name and an integer size")
        if not isinstance(i.get("fingerprint", ""), str):
            fail("state.resume.inputs should have a string fingerprint")
    layers = check_type(doc["state"], list, "state.resume.state")
    per_layer = 2 if config.cell == "lstm" else 1
    if len(layers) != config.layers or any(not isinstance(layer, list) or len(layer) != per_layer for layer in layers):
        fail(f"state.resume.state should hold {per_layer} array(s) for each of {config.layers} layer(s)")
    first = check_type(layers[0][0], dict, "state.resume.state[0][0]").get("shape")
    streams = first[0] if isinstance(first, list) and first and isinstance(first[0], int) else 0
    if not 1 <= streams <= doc["batch_size"]:
        fail("state.resume.state should have between 1 and batch_size streams")
    doc["state"] = [
        tuple(
            unpack_array(a, f"state.resume.state[{i}]", (streams, config.hidden), DTYPES[config.dtype]) for a in layer
        )
        for i, layer in enumerate(layers)
    ]
    return doc


def _unpack_schedule(doc, version):
    """state.resume.schedule, checked (None where the run had none saved)."""
    if doc is None:
        return None
    check_type(doc, dict, "state.resume.schedule")
    keys = SCHEDULE_KEYS | ({"start"} if version >= 5 else set())
    if set(doc) != keys:
        fail(f"state.resume.schedule should have exactly the keys {', '.join(sorted(keys))}")
    start = doc.setdefault("start", None)
    if start is not None and not (isinstance(start, float) and 0 < start <= 1):
        fail("state.resume.schedule.start should be a float in (0, 1] or nil")
    if doc["kind"] not in schedule.KINDS:
        fail(f"state.resume.schedule.kind should be one of {', '.join(schedule.KINDS)}")
    total, chars = doc["total"], doc["chars"]
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        fail("state.resume.schedule.total should be a non-negative integer or nil")
    if not isinstance(chars, int) or isinstance(chars, bool) or chars < 0:
        fail("state.resume.schedule.chars should be a non-negative integer")
    max_time, seconds = doc["max_time"], doc["seconds"]
    # true is an int to Python but no number of seconds msgpack would hold for rnnpipe: refused like the others
    if max_time is not None and (
        not isinstance(max_time, (int, float)) or isinstance(max_time, bool) or not 0 < max_time < math.inf
    ):
        fail("state.resume.schedule.max_time should be a positive number or nil")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < math.inf:
        fail("state.resume.schedule.seconds should be a non-negative number")
    return doc


def _names(keys, limit=4):
    """A short, one-line list of keys that may be anything the file holds."""
    keys = sorted(repr(k) for k in keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _unpack_arrays(doc, what, specs):
    """specs: name -> (shape, dtype), exactly the names doc must hold."""
    check_type(doc, dict, what)
    missing, extra = set(specs) - set(doc), set(doc) - set(specs)
    if missing:
        fail(f"{what} lacks {_names(missing)}")
    if extra:
        fail(f"{what} has unexpected entries {_names(extra)}")
    return {k: unpack_array(doc[k], f"{what}.{k}", s, dtype) for k, (s, dtype) in specs.items()}
