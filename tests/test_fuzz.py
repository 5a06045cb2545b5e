"""The loader against hostile files: whatever the bytes, the only possible
outcomes are a model or ModelFormatError, and nothing is allocated in
proportion to sizes the file merely declares."""

import hashlib
import os
import random
import tracemalloc

import msgpack
import pytest
from hostile_files import byte_edits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnpipe import Config, Model, ModelFormatError
from rnnpipe.modelfile import VERSION

# a small but complete model: every section of the format is present, an
# interrupted run's position and its learning-rate schedule (version 3) too,
# so that flipping the version to an older one is refused as well
GOOD = Model.new(Config(cell="gru", hidden=3, layers=2, optimizer="adam", seq_length=4, batch_size=2), "ab\n")
GOOD.train("ab\nba\n" * 4, epochs=2, stop=lambda: GOOD.iterations >= 3)
assert GOOD.resume is not None and GOOD.resume.schedule["kind"] == "cosine"
GOOD_BYTES = GOOD.to_bytes()
MUTATIONS = int(os.environ.get("RNNPIPE_FUZZ_MUTATIONS", "3000"))


def load_or_refuse(data):
    """The loader's contract: a model, or ModelFormatError; never anything else."""
    try:
        return Model.from_bytes(data)
    except ModelFormatError as e:
        message = str(e)
        assert message and "\n" not in message
        return None


def seal(body, **outer):
    data = body if isinstance(body, bytes) else msgpack.packb(body, use_bin_type=True)
    doc = {"format": "rnnpipe-model", "version": VERSION, "sha256": hashlib.sha256(data).digest(), "model": data}
    doc.update(outer)
    return msgpack.packb(doc, use_bin_type=True)


def body():
    return msgpack.unpackb(msgpack.unpackb(GOOD_BYTES, raw=False)["model"], raw=False)


def test_every_truncation_is_refused():
    refused = sum(load_or_refuse(GOOD_BYTES[:n]) is None for n in range(len(GOOD_BYTES)))
    assert refused == len(GOOD_BYTES)


def test_every_single_bit_flip_is_refused():
    data = bytearray(GOOD_BYTES)
    for i in range(len(data) * 8):
        data[i // 8] ^= 1 << (i % 8)
        assert load_or_refuse(bytes(data)) is None, f"bit {i} flipped and the file still loaded"
        data[i // 8] ^= 1 << (i % 8)


def test_seeded_mutation_loop():
    rng = random.Random(1234)
    loaded = 0
    for _ in range(MUTATIONS):
        loaded += load_or_refuse(byte_edits(GOOD_BYTES, rng)) is not None
    # a mutation can only load if it happened to leave the bytes as they were
    assert loaded <= MUTATIONS // 100


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_refused(data):
    assert load_or_refuse(data) is None


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


ALL_PATHS = [p for p in paths(body()) if p]


@settings(
    max_examples=int(os.environ.get("RNNPIPE_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sampled_from(ALL_PATHS), values)
def test_valid_msgpack_with_wrong_types_is_refused(path, value):
    doc = body()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if node[path[-1]] == value:
        return
    node[path[-1]] = value
    # the checksum is right: only validation can catch this
    model = load_or_refuse(seal(doc))
    if model is not None:
        # the only changes allowed through are those that still make sense:
        # another character in the vocabulary, a hyperparameter or counter, or
        # another valid RNG state (has_uint32 1, uinteger below 2**32, a decimal
        # state or inc: hypothesis finds these now and then)
        changeable = {"dropout", "lr", "clip", "seed", "seq_length", "batch_size", "weight_decay"}
        counters = {"smooth_loss", "last_loss", "iterations", "chars_seen", "rate", "engine"}  # engine: version 6
        position = {"epoch", "epochs", "offset", "chunk", "batch_size", "seq_length", "valid_fraction", "chars"}
        position |= {"block", "head", "digest"}  # version 5
        budget = {"kind", "total", "max_time", "chars", "seconds", "start"}
        assert (
            path[0] == "vocab"
            and isinstance(value, str)
            and len(value) == 1
            or path[0] == "config"
            and path[1] in changeable
            or path[0] == "state"
            and path[1] in counters
            or path[:2] == ("state", "rng")
            and path[2] in {"has_uint32", "uinteger", "state", "inc"}
            # an interrupted run's position and schedule: other counts, names and limits are positions too
            or path in (("state", "resume"), ("state", "resume", "schedule"))
            and value is None  # nothing pending, or a run with no schedule saved
            or path[:2] == ("state", "resume")
            and len(path) > 2
            and (path[2] in position or path[2:4] in (("schedule", k) for k in budget) or path[2] == "inputs")
            and not isinstance(value, bool)
            or path == ("state", "resume", "interrupted")  # finished or not: either is a valid file
            and isinstance(value, bool)
        ), (path, value)
        if path[:2] == ("state", "rng"):  # and it really is one: numpy takes it
            assert model.rng.random() >= 0


@pytest.mark.parametrize("value", [True, False, 0, -1, float("inf"), float("nan"), "60"])
def test_a_schedule_time_limit_that_is_not_a_positive_number_is_refused(value):
    # hypothesis found true loading as a 1-second limit: a bool is an int to Python, not to the format
    doc = body()
    doc["state"]["resume"]["schedule"]["max_time"] = value
    with pytest.raises(ModelFormatError, match="max_time should be a positive number or nil"):
        Model.from_bytes(seal(doc))


def test_body_that_is_not_msgpack_is_refused():
    with pytest.raises(ModelFormatError, match="model body is not valid msgpack"):
        Model.from_bytes(seal(b"\xc1garbage"))


def peak_allocation(data):
    tracemalloc.start()
    try:
        load_or_refuse(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "bomb",
    [
        # a config declaring a huge model: the arrays' shapes cannot match it
        lambda d: d["config"].update(hidden=2**40),
        lambda d: d["config"].update(layers=2**62),
        # an array declaring a huge shape over a few bytes of data
        lambda d: d["params"]["by"].update(shape=[2**31, 2**31]),
        # sizes that overflow 64 bits, and negative ones
        lambda d: d["params"]["0.Wxh"].update(shape=[2**64 - 1, 2**64 - 1]),
        lambda d: d["params"]["0.Wxh"].update(shape=[-9, -1]),
    ],
)
def test_declared_sizes_do_not_allocate(bomb):
    doc = body()
    bomb(doc)
    data = seal(doc)
    assert load_or_refuse(data) is None
    assert peak_allocation(data) < 20 * len(data) + 2**20


def test_msgpack_headers_declaring_gigabytes_do_not_allocate():
    # bin 32 header claiming 4 GiB, array 32 and map 32 headers claiming 4 billion entries
    for header in (b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"):
        assert load_or_refuse(header + b"\0" * 64) is None
        assert peak_allocation(header + b"\0" * 64) < 2**20
        assert load_or_refuse(seal(header + b"\0" * 64)) is None


# -- the bounded reader (rnnpipe/fileread.py): msgpack's values, within a memory budget ------------


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_bounded_reader_reads_what_msgpack_reads_and_every_prefix_is_truncated(value):
    from rnnpipe import fileread

    data = msgpack.packb(value, use_bin_type=True)
    assert msgpack.packb(fileread.read(data, "the file"), use_bin_type=True) == data  # NaN too: compared as bytes
    with pytest.raises(ModelFormatError, match="the file is empty"):
        fileread.read(b"", "the file")
    for cut in range(1, len(data)):  # msgpack is prefix-free: every proper prefix ends inside the value
        with pytest.raises(ModelFormatError, match=f"the file is truncated: it ends after {cut} bytes"):
            fileread.read(data[:cut], "the file")


@pytest.mark.parametrize(
    "data, says",
    [
        (b"\x91\xd4\x01a", r"holds a msgpack extension type \(0xd4 at byte 1\), which the format never uses"),
        (b"\x92\xc0\xd6\xff\x00\x00\x00\x01", r"holds a msgpack extension type \(0xd6 at byte 2\)"),  # a timestamp
        (b"\x81\x01\xc0", r"holds a map key that is not a string \(at byte 1\)"),
        (b"\x81\xc4\x01a\xc0", r"holds a map key that is not a string"),  # bytes: a key the format never has
        (b"\x81\x90\xc0", r"holds a map key that is not a string"),
        (b"\x91" * 17 + b"\xc0", r"holds values nested over 16 deep \(at byte 16\); the format nests 7 deep"),
        (b"\xc0\xc0", r"is not valid msgpack \(ExtraData\)"),
        (b"\xc1", r"is not valid msgpack"),
        (b"\xdd\xff\xff\xff\xff\xc0", r"is truncated"),  # 4 billion entries declared, one there
        (b"\xdb\xff\xff\xff\xffab", r"is truncated"),
    ],
)
def test_the_bounded_reader_refuses_what_no_model_holds(data, says):
    from rnnpipe import fileread

    with pytest.raises(ModelFormatError, match="the file " + says):
        fileread.read(data, "the file")
    assert fileread.read(b"\x91" * 16 + b"\xc0", "the file")  # 16 deep is allowed


def test_the_bounded_reader_refuses_values_over_its_budget_before_they_are_built():
    from rnnpipe import fileread

    # a million empty maps: one byte each in the file, 64 bytes each in memory
    n = 1_000_000
    many = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    with pytest.raises(ModelFormatError, match=f"holds more msgpack values than a model of {len(many):,} bytes can"):
        fileread.read(many, "the file")
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError):
            fileread.read(many, "the file")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= fileread.PER_BYTE * len(many) + fileread.ALLOWANCE + 2**20
