"""Hostile model files that try to make the loader allocate as much memory
per file byte as they can: the worst peak RSS per byte over the corpus.

    .venv/bin/python bench/loadfuzz.py                  # the corpus and a search, a few minutes on two cores
    .venv/bin/python bench/loadfuzz.py --size 4000000 --search 60 --seed 1
    .venv/bin/python bench/loadfuzz.py --only maps --size 20000000   # the file issue 21 found (1.45 GB)
    .venv/bin/python bench/loadfuzz.py --against ../main             # and another checkout's loader beside it

Every file has a valid checksum (or is a bare msgpack value, to test the
envelope): the loader must read it as far as its structure goes before it can
refuse it. Each is loaded by `rnnpipe.Model.load` in a child process of its
own, whose peak RSS (Linux's VmHWM, reset after the imports through
/proc/self/clear_refs) above its RSS before the load is the figure; the
child's address space is capped so a bomb ends in MemoryError, not the OOM
killer. A file is a body made of one element repeated to the file size,
placed somewhere in the model (the body itself, the vocabulary, an extra
config or params entry, the envelope), optionally wrapped in one-element
lists and cut short by a byte:

  elements  empty maps, empty arrays, nil, two-character strings, 16-bit
            integers, floats, two-byte bins, fixext and timestamp extension
            types, one-entry maps, maps of distinct keys, array headers that
            declare as many entries as the file has bytes (nested), a string
            of ASCII with one emoji (four bytes a character in memory)
  valid     real models: the default, 1,024 layers of one unit (the most
            arrays a file can hold), a vocabulary of 20,000 characters with
            one unit (the most vocabulary per weight byte)

Then --search N mutates the worst file found so far (element, count,
place, nesting, truncation) N times and keeps what is worse. The report:
one line per file, then the worst ratio over files of at least 1 MB
(smaller ones are dominated by the fixed cost of building any model), and
the largest excess over the bound docs/reliability.md states. With
--against PATH, each hostile file is also loaded by the rnnpipe package of
the checkout at PATH (sealed with the version that one writes), side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnpipe import Config, Model  # noqa: E402
from rnnpipe.modelfile import VERSION  # noqa: E402

# the bound docs/reliability.md states: peak RSS above the process's before the load
PER_BYTE, FIXED = 8, 24 << 20

CHILD = r"""
import json, os, resource, sys, time
from rnnpipe import Model, ModelFormatError
import msgpack, numpy  # everything the loader imports, before the baseline

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

try:  # VmHWM back to the present RSS, so the peak is the load's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
base = rss("VmRSS")
resource.setrlimit(resource.RLIMIT_AS, (rss("VmSize") + int(sys.argv[2]), resource.RLIM_INFINITY))
start = time.perf_counter()
try:
    Model.load(sys.argv[1])
    outcome = "loaded"
except ModelFormatError as e:
    outcome = "refused: " + str(e)
except MemoryError:
    outcome = "MemoryError"
seconds = time.perf_counter() - start
peak = rss("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"extra": peak - base, "outcome": outcome, "seconds": seconds, "reset": reset}))
"""


def measure(path, root=ROOT, cap=6 << 30):
    env = {**os.environ, "PYTHONPATH": str(root), "OPENBLAS_NUM_THREADS": "1"}
    # run from the file's folder: `python -c` puts the working directory first on the path
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), str(cap)], capture_output=True, text=True, env=env,
                       cwd=Path(path).parent)  # fmt: skip
    if r.returncode:
        return {"extra": None, "outcome": f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}", "seconds": 0}
    return json.loads(r.stdout)


# -- msgpack by hand: headers that claim what the data does not hold ---------------------------------------


def header(n, fix, h16, h32):
    return bytes([fix | n]) if n < 16 else (h16 + n.to_bytes(2, "big") if n < 2**16 else h32 + n.to_bytes(4, "big"))


def arr(n):
    return header(n, 0x90, b"\xdc", b"\xdd")


def mapping(n):
    return header(n, 0x80, b"\xde", b"\xdf")


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def seal(body: bytes, version):
    return pack({"format": "rnnpipe-model", "version": version, "sha256": hashlib.sha256(body).digest(), "model": body})


ELEMENTS = {
    "maps": b"\x80",
    "arrays": b"\x90",
    "nils": b"\xc0",
    "str2": b"\xa2ab",
    "ints": b"\xcd\x01\x02",  # uint16 258: past the cached small ints
    "floats": pack(0.5),
    "bin2": b"\xc4\x02ab",
    "fixext1": b"\xd4\x01a",
    "timestamps": b"\xd6\xff\x00\x00\x00\x01",
    "map1": b"\x81\xa0\xc0",  # {"": nil}
    "list-of-maps": b"\x91\x80",  # [{}]
    "list-of-4-arrays": b"\x94\x90\x90\x90\x90",
}


def element_run(kind, size, chunks=1):
    """An array of `kind` repeated to about size bytes, any kind of ELEMENTS or a special one; with
    chunks > 1, an array of that many such arrays (a loader may refuse one long array at its header)."""
    if chunks > 1:
        one = element_run(kind, size // chunks)
        return arr(chunks) + one * chunks
    if kind == "distinct-keys":  # a map of distinct short keys, each to nil
        n = size // 7
        return mapping(n) + b"".join(b"\xa5" + f"{i:05x}"[-5:].encode() + b"\xc0" for i in range(n))
    if kind == "declared":  # nested array headers each declaring as many entries as the file has bytes, then nils
        head = arr(size) * min(1000, size // 10)
        return head + b"\xc0" * (size - len(head))
    if kind == "ucs4-string":  # ASCII then one emoji: the whole string four bytes a character in memory
        text = "a" * (size - 10) + "\U0001f600"
        return pack(text)
    one = ELEMENTS[kind]
    n = size // len(one)
    return arr(n) + one * n


def good_body(**config):
    m = Model.new(Config(**{"hidden": 8, "layers": 1, "batch_size": 2, "seq_length": 4, **config}), "ab\n")
    return msgpack.unpackb(msgpack.unpackb(m.to_bytes(), raw=False)["model"], raw=False)


PLACES = ("body", "vocab", "config-extra", "params-extra", "envelope")


def hostile(kind, size, place="body", wrap=0, cut=False, chunks=1, version=VERSION):
    """One hostile file: the element run placed in the model, wrapped in
    `wrap` one-element lists, its last byte cut off when cut, sealed as `version`."""
    run = element_run(kind, size, chunks)
    run = arr(1) * wrap + run
    if place == "envelope":
        return run[:-1] if cut else run
    if place == "body":
        body = run
    else:
        doc = good_body()
        marker = "\x00MARK\x00"  # replaced by the raw run, so no re-encoding can change it
        if place == "vocab":
            doc["vocab"] = marker
        elif place == "config-extra":
            doc["config"]["zz"] = marker
        else:
            doc["params"]["zz"] = marker
        body = pack(doc).replace(pack(marker), run)
    return seal(body[:-1] if cut else body, version)


def valid(kind):
    if kind == "default":
        m = Model.new(Config(), "".join(chr(c) for c in range(32, 127)) + "\n")
    elif kind == "1024-layers":  # the most arrays: 13 a layer, an interrupted run's state among them
        m = Model.new(Config(cell="gru", hidden=1, layers=1024, optimizer="adam", batch_size=4, seq_length=4), "ab")
        m.train("ab" * 100, epochs=2, stop=lambda: m.iterations >= 1)
    elif kind == "largest-config":  # what a run would allocate is no concern of the loader's
        m = Model.new(Config(hidden=1, layers=1, batch_size=2**20, seq_length=2**20), "ab")
    else:  # the most vocabulary per weight byte: one unit, Adagrad; 20,000 CJK or 200,000 four-byte characters
        first, n = (0x4E00, 20_000) if kind == "20000-chars" else (0x10000, 200_000)
        m = Model.new(Config(cell="rnn", hidden=1, optimizer="adagrad"), "".join(map(chr, range(first, first + n))))
    return m.to_bytes()


def corpus(size):
    """(name, a function of the version to seal with giving the file's bytes, or None for this one's only)."""
    for kind in ("default", "1024-layers", "largest-config", "20000-chars", "200000-chars"):
        yield f"valid {kind}", lambda v, kind=kind: valid(kind) if v == VERSION else None
    for kind in (*ELEMENTS, "distinct-keys", "declared", "ucs4-string"):
        yield f"{kind} in body", lambda v, kind=kind: hostile(kind, size, version=v)
    for kind in ELEMENTS:
        yield f"{kind} in body, 100 arrays", lambda v, kind=kind: hostile(kind, size, chunks=100, version=v)
    for place in PLACES[1:]:
        yield f"maps in {place}", lambda v, place=place: hostile("maps", size, place, version=v)
    yield "maps in body, cut", lambda v: hostile("maps", size, cut=True, version=v)
    yield "maps in envelope, cut", lambda v: hostile("maps", size, "envelope", cut=True, version=v)
    yield "maps in body, 20 lists deep", lambda v: hostile("maps", size, wrap=20, version=v)
    yield "declared in envelope", lambda v: hostile("declared", size, "envelope", version=v)


GENES = {
    "kind": (*ELEMENTS, "distinct-keys", "declared", "ucs4-string"),
    "place": PLACES,
    "wrap": (0, 1, 3, 20, 200, 2000),
    "cut": (False, True),
    "chunks": (1, 10, 100, 1000, 10000),
}


def search(best, size, tries, rng, report):
    """Mutate the worst genome found so far, one gene at a time; keep the worse."""
    genome, worst = best
    for i in range(tries):
        g = dict(genome)
        gene = rng.choice(sorted(GENES))
        g[gene] = rng.choice(GENES[gene])
        name = f"search {i + 1}: {g['kind']} in {g['place']}, wrap {g['wrap']}, cut {g['cut']}, {g['chunks']} arrays"
        ratio = report(name, lambda v, g=g: hostile(g["kind"], size, g["place"], g["wrap"], g["cut"], g["chunks"], v))
        if ratio is not None and ratio > worst:
            genome, worst = g, ratio
    return genome, worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4_000_000, help="bytes of each hostile file (default 4 MB)")
    ap.add_argument("--search", type=int, default=40, help="mutations of the worst file to try (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="only the corpus files whose name starts with this")
    ap.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    ap.add_argument("--against", metavar="PATH", help="also load each hostile file with the checkout at PATH")
    args = ap.parse_args(argv)
    results = []
    other = None
    if args.against:
        env = {**os.environ, "PYTHONPATH": args.against}
        code = "from rnnpipe.modelfile import VERSION; print(VERSION)"
        got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")
        other = int(got.stdout)
    with tempfile.TemporaryDirectory(prefix="rnnpipe-loadfuzz-") as folder:
        path = Path(folder) / "m.msgpack"

        def report(name, make):
            data = make(VERSION)
            path.write_bytes(data)
            r = measure(path)
            extra = r["extra"]
            ratio = None if extra is None else extra / len(data)
            over = None if extra is None else extra - (PER_BYTE * len(data) + FIXED)
            results.append({"name": name, "bytes": len(data), **r, "ratio": ratio, "over_bound": over})
            shown = "?" if extra is None else f"{extra / 2**20:8.1f} MiB {ratio:7.1f}x"
            line = f"{name:42} {len(data):>11,} B {shown} {r['seconds']:6.2f} s  {r['outcome'][:70]}"
            theirs = None if other is None else make(other)
            if theirs is not None:
                path.write_bytes(theirs)
                t = measure(path, args.against)
                results[-1]["against"] = {"bytes": len(theirs), **t}
                line += "" if t["extra"] is None else f"  | against: {t['extra'] / 2**20:.1f} MiB"
                line += f" {t['extra'] / len(theirs):.1f}x" if t["extra"] is not None else f" {t['outcome']}"
            print(line, flush=True)
            return ratio if len(data) >= 1_000_000 else None

        start = time.monotonic()
        for name, make in corpus(args.size):
            if args.only and not name.startswith(args.only):
                continue
            report(name, make)
        if args.search and not args.only:
            rng = random.Random(args.seed)
            big = [r for r in results if r["bytes"] >= 1_000_000 and r["ratio"] is not None]
            first = max(big, key=lambda r: r["ratio"])
            kind = first["name"].partition(" in ")[0]
            chunks = 100 if "100 arrays" in first["name"] else 1
            genome = {"kind": kind if kind in GENES["kind"] else "maps", "place": "body", "wrap": 0, "cut": False,
                      "chunks": chunks}  # fmt: skip
            search((genome, first["ratio"]), args.size, args.search, rng, report)
    big = [r for r in results if r["bytes"] >= 1_000_000 and r["ratio"] is not None]
    worst = max(big, key=lambda r: r["ratio"])
    failures = [r for r in results if r["extra"] is None or r["outcome"] == "MemoryError"]
    over = max(results, key=lambda r: -math_inf if r["over_bound"] is None else r["over_bound"])
    print(
        f"{len(results)} files in {time.monotonic() - start:.0f} s; worst over files of 1 MB or more: "
        f"{worst['ratio']:.1f}x ({worst['name']}, {worst['extra'] / 2**20:.1f} MiB for {worst['bytes']:,} bytes)"
    )
    print(
        f"bound {PER_BYTE} x size + {FIXED >> 20} MiB: largest excess {over['over_bound'] / 2**20:+.1f} MiB "
        f"({over['name']}); {len(failures)} failed to finish or ran out of memory"
    )
    theirs = [r for r in results if "against" in r and r["against"]["extra"] is not None and r["bytes"] >= 1_000_000]
    if theirs:
        w = max(theirs, key=lambda r: r["against"]["extra"] / r["against"]["bytes"])
        a = w["against"]
        print(
            f"against {args.against}: worst {a['extra'] / a['bytes']:.1f}x ({w['name']}, {a['extra'] / 2**20:.1f} MiB)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failures or over["over_bound"] > 0 else 0


math_inf = float("inf")

if __name__ == "__main__":
    sys.exit(main())
