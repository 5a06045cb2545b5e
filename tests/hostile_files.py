"""Hostile model files through the command line: seeded mutations of a good
file (truncations, bit flips, byte edits, random bytes, wrong types under a
valid checksum, NaN weights, size bombs, other versions), each of which must
end in exit 1 and one line `rnnpipe: error: ...`, never an internal error.

tests/test_reliability.py runs the loop a few hundred times; bench/crash.py
thousands of times (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import random
import resource
import subprocess
from pathlib import Path

import msgpack
from cli_util import ENV, RNNPIPE
from crash_loops import Tally

from rnnpipe import Config, Model, cli
from rnnpipe.modelfile import VERSION


def good_model_bytes():
    m = Model.new(Config(cell="gru", hidden=3, layers=2, optimizer="adam", seq_length=4, batch_size=2), "ab\n")
    m.train("ab\nba\n" * 4)
    return m.to_bytes()


def _seal(body, **outer):
    data = body if isinstance(body, bytes) else msgpack.packb(body, use_bin_type=True)
    doc = {"format": "rnnpipe-model", "version": VERSION, "sha256": hashlib.sha256(data).digest(), "model": data}
    doc.update(outer)
    return msgpack.packb(doc, use_bin_type=True)


def _nodes(doc, prefix=()):
    if prefix:
        yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, prefix + (i,))


def _random_value(rng):
    return rng.choice(
        [
            None,
            True,
            -1,
            2**63,
            rng.randrange(-(2**31), 2**31),
            math.nan,
            math.inf,
            rng.random(),
            "",
            "x" * rng.randrange(1, 9),
            rng.randbytes(rng.randrange(0, 9)),
            [],
            [2**31, 2**31],
            {},
            {"dtype": "<f4", "shape": [2**40], "data": b""},
        ]
    )


def byte_edits(good, rng):
    """good with 1 to 4 random edits: a byte overwritten, up to 16 deleted or up to 16 random ones inserted."""
    data = bytearray(good)
    for _ in range(rng.randint(1, 4)):
        op, i = rng.randrange(3), rng.randrange(len(data))
        if op == 0:
            data[i] = rng.randrange(256)
        elif op == 1:
            del data[i : i + rng.randint(1, 16)]
        else:
            data[i:i] = rng.randbytes(rng.randint(1, 16))
    return bytes(data)


def mutate(good, rng):
    """(kind, bytes): one hostile variant of a good model file."""
    outer = msgpack.unpackb(good, raw=False)
    body = msgpack.unpackb(outer["model"], raw=False)
    kind = rng.choice(
        ["truncate", "bit flip", "byte edits", "random bytes", "wrong type", "NaN weight", "size bomb", "version"]
    )
    if kind == "truncate":
        return kind, good[: rng.randrange(len(good))]
    if kind == "bit flip":
        data = bytearray(good)
        i = rng.randrange(len(data) * 8)
        data[i // 8] ^= 1 << (i % 8)
        return kind, bytes(data)
    if kind == "byte edits":
        return kind, byte_edits(good, rng)
    if kind == "random bytes":
        return kind, rng.randbytes(rng.randrange(0, 4000))
    if kind == "wrong type":
        path = rng.choice(list(_nodes(body)))
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _random_value(rng)
        return kind, _seal(body)
    if kind == "NaN weight":
        name = rng.choice(sorted(body["params"]))
        a = body["params"][name]
        values = bytearray(a["data"])
        i = rng.randrange(len(values) // 4) * 4
        values[i : i + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff"])
        a["data"] = bytes(values)
        return kind, _seal(body)
    if kind == "size bomb":
        name = rng.choice(sorted(body["params"]))
        body["params"][name]["shape"] = rng.choice([[2**31, 2**31], [2**40], [2**64 - 1, 3], [-1, -5]])
        if rng.random() < 0.5:
            body["config"]["hidden"] = 2**40
        return kind, _seal(body)
    return kind, _seal(outer["model"], version=rng.choice([0, 3, 99, -1, "1", "2", None, 1.0, 2.0]))


@contextlib.contextmanager
def memory_cap(extra=2 << 30):
    """Cap this process's address space at its present size plus `extra`, so
    an allocation bomb is a MemoryError (an "out of memory" line, counted as
    a failure) rather than the kernel's OOM killer taking the machine down."""
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def fuzz_run(folder, cases, seed=0, subprocess_every=20):
    with memory_cap():
        return _fuzz_run(folder, cases, seed, subprocess_every)


def _fuzz_run(folder, cases, seed, subprocess_every):
    folder = Path(folder)
    t = Tally("fuzz")
    rng = random.Random(seed)
    good = good_model_bytes()
    path = folder / "hostile.rnn"
    commands = ["info", "sample", "eval", "train"]
    for i in range(cases):
        kind, data = mutate(good, rng)
        path.write_bytes(data)
        t.tried += 1
        t.count(f"case {kind}")
        real = subprocess_every and i % subprocess_every == 0
        command = commands[(i // max(subprocess_every, 1)) % len(commands)] if real else "info"
        args = [command, "-m", str(path)]
        if real:
            t.count("through the real executable")
            r = subprocess.run(RNNPIPE + args, input=b"ab\nba\n" * 20, capture_output=True, env=ENV, timeout=60)
            status, out, err = r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        else:
            o, e = io.StringIO(), io.StringIO()
            status = cli.main(args, stdin=io.StringIO("ab\nba\n" * 20), stdout=o, stderr=e)
            out, err = o.getvalue(), e.getvalue()
        if status == 0 and data == good:
            t.count("unchanged by the mutation (loaded)")
            continue
        if status == 0:
            # only changes that leave a valid model may load (a wrong type in a field that accepts it)
            try:
                Model.from_bytes(data)
                t.count("still a valid model (loaded)")
            except Exception as e:
                t.fail(f"{kind}: {command} exited 0 on a file the loader refuses: {e}")
            continue
        if status != 1 or err.count("\n") != 1 or not err.startswith("rnnpipe: error: ") or out:
            t.fail(f"{kind}: {command} exit {status}: {err[-300:]!r}")
        elif "internal error" in err or "Traceback" in err or "out of memory" in err:
            t.fail(f"{kind}: {command}: {err.strip()}")
        if command == "train" and path.read_bytes() != data:
            t.fail(f"{kind}: train changed a file it could not load")
    return t
