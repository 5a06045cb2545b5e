"""The torch engine against the numpy engine: training chars/s of the same
model through the same Model.train, and DDP with 2 gloo ranks against 1
process, on this machine's CPU (issue 12; docs/benchmarks.md has a run).

    .venv/bin/python bench/engines.py [--seconds 15] [--sweep 64 128 192 256 384 512] [--no-ddp]

Each figure is one run of `seconds` of training in its own process (a fresh
import, thread pools and allocator), one thread for numpy's BLAS and for
torch (--threads 1, rnnpipe's default), numpy and torch measured one after
the other for each configuration so that drifts in the machine's load hit
both. The DDP figures run `torchrun --standalone --nproc_per_node 2 -m rnnpipe
train --engine torch` and read the chars/s its summary line reports (all
ranks together), against the same command without torchrun. Reads
../shared/data/tinyshakespeare.txt (its first 300k characters).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

# name -> Config fields (rnnpipe's default is the GRU 192, batch 32, seq 50)
CONFIGS = {
    "default (gru 192)": {},
    "lstm 256": {"cell": "lstm", "hidden": 256, "lr": 4e-3},
    "lstm 1024 x 2": {"cell": "lstm", "hidden": 1024, "layers": 2, "lr": 2e-3},
}

ONE = """
import json, sys
from threadpoolctl import threadpool_limits
from rnnpipe import Config, Model
fields, engine, seconds, path = json.loads(sys.argv[1])
text = open(path).read()[:300_000]
with threadpool_limits(1, user_api="blas"):
    model = Model.new(Config(**fields), text)
    if engine == "torch":
        import torch
        torch.set_num_threads(1)
        model.use("torch", "cpu")
    p = model.train(text, max_time=seconds)
print(json.dumps({"chars_per_sec": p.chars_per_sec, "iterations": model.iterations}))
"""


def rate(fields, engine, seconds):
    out = subprocess.run(
        [sys.executable, "-c", ONE, json.dumps([fields, engine, seconds, str(TEXT)])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def cli_rate(prefix, seconds, fields):
    """chars/s from `rnnpipe train`'s summary line."""
    args = []
    for k, v in fields.items():
        args += [f"--{k}", str(v)]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(TEXT.read_text()[:300_000])
        r = subprocess.run(
            [*prefix, "-m", "rnnpipe", "train", "-m", str(Path(tmp) / "m.msgpack"), "--engine", "torch",
             "--device", "cpu", "--max-time", str(seconds), *args, str(corpus)],
            capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    found = re.search(r"\(([0-9.]+)(k?) chars/s\)", r.stderr)
    if not found:
        raise RuntimeError(r.stderr)
    return float(found.group(1)) * (1000 if found.group(2) else 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sweep", type=int, nargs="*", default=[64, 128, 192, 256, 384, 512],
                        help="GRU sizes (batch 32, seq 50) for the break-even point")  # fmt: skip
    parser.add_argument("--no-ddp", action="store_true")
    args = parser.parse_args()

    rows = [(name, fields) for name, fields in CONFIGS.items()]
    rows += [(f"gru {h}", {"hidden": h}) for h in args.sweep if h != 192]
    print("| config | numpy chars/s | torch chars/s | torch / numpy |")
    print("| --- | ---: | ---: | ---: |")
    for name, fields in rows:
        n = rate(fields, "numpy", args.seconds)["chars_per_sec"]
        t = rate(fields, "torch", args.seconds)["chars_per_sec"]
        print(f"| {name} | {n:,.0f} | {t:,.0f} | {t / n:.2f}x |", flush=True)
    if args.no_ddp:
        return
    print()
    print("| config | torch, 1 process chars/s | torchrun 2 gloo ranks chars/s | 2 ranks / 1 |")
    print("| --- | ---: | ---: | ---: |")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for name, fields in list(CONFIGS.items())[:2]:
        one = cli_rate([sys.executable], args.seconds, fields)
        two = cli_rate(torchrun, args.seconds, fields)
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
