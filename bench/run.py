"""The speed benchmark: every contestant trains for the same wall-clock budget
on the same machine, one after another, and the table compares them.

    .venv/bin/python bench/run.py                # 60 s each, the full table
    .venv/bin/python bench/run.py --budget 10    # a quick look
    .venv/bin/python bench/run.py --only seed rnnpipe-seed --no-extras
    .venv/bin/python bench/run.py --quality 60 180 600 --clock cpu   # and time to quality

Corpus: tinyshakespeare, first 90% trained on, last 10% held out and scored
(bits per character). Contestants (see CONTESTANTS): the seed's own code,
rnnpipe with the seed's configuration, its default configuration and batched
rnn/lstm/gru ones, and PyTorch on the CPU at the same configurations when
torch is installed (pip install torch==2.13.0). Each runs in its own process
(bench/contestants.py) with the BLAS limited to --threads threads.

Then the extras: the loss-curve check (rnnpipe's seed configuration against
the seed's code from the same weights), sampling speed, the wall time of
`rnnpipe sample -m MODEL -n 300`, and bench/memory.py's streaming-memory
figure. With --quality, last, bench/quality.py's time to quality on four
corpora at those budgets (the GPT peer too), and its targets in the same
table of targets.
docs/benchmarks.md has a run's output and what it means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
sys.path.insert(0, str(ROOT / "tests"))  # the targets' judgement, which the tests check

from measures import quality_targets  # noqa: E402


def cfg(cell, hidden, seq_length, batch_size, optimizer, lr):
    return dict(cell=cell, hidden=hidden, seq_length=seq_length, batch_size=batch_size, optimizer=optimizer, lr=lr)


SEED_CFG = cfg("rnn", 100, 25, 1, "adagrad", 0.1)
RNN_B32 = cfg("rnn", 100, 25, 32, "adam", 2e-3)
LSTM_B32 = cfg("lstm", 256, 50, 32, "adam", 4e-3)
GRU_B32 = cfg("gru", 256, 50, 32, "adam", 4e-3)


def default_cfg():
    from rnnpipe import Config

    c = Config()
    return cfg(c.cell, c.hidden, c.seq_length, c.batch_size, c.optimizer, c.lr)


def contestants():
    """(name, kind, config) in running order; names are what --only takes."""
    default = default_cfg()
    out = [
        ("seed", "seed", SEED_CFG),
        ("rnnpipe-seed", "rnnpipe", SEED_CFG),
        ("torch-seed", "torch", SEED_CFG),
        ("rnnpipe-rnn100-b32", "rnnpipe", RNN_B32),
        ("torch-rnn100-b32", "torch", RNN_B32),
        ("rnnpipe-lstm256-b32", "rnnpipe", LSTM_B32),
        ("torch-lstm256-b32", "torch", LSTM_B32),
        ("rnnpipe-gru256-b32", "rnnpipe", GRU_B32),
        ("torch-gru256-b32", "torch", GRU_B32),
    ]
    if default not in (SEED_CFG, RNN_B32, LSTM_B32, GRU_B32):
        out += [("rnnpipe-default", "rnnpipe", default), ("torch-default", "torch", default)]
    return out


def describe(c):
    return f"{c['cell']} {c['hidden']}, seq {c['seq_length']}, batch {c['batch_size']}, {c['optimizer']} {c['lr']:g}"


def child_env(threads):
    """The contestant's environment: its BLAS and OpenMP pools at `threads`.
    OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which some machines here set for
    old OpenBLAS builds and which slow a current one, are removed for the
    benchmark only (docs/benchmarks.md); the kernel each contestant then ran
    is recorded from threadpoolctl."""
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def run_child(spec, threads, timeout):
    spec = dict(spec, threads=threads)
    proc = subprocess.run(
        [sys.executable, str(HERE / "contestants.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=child_env(threads),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    versions = f"Python {platform.python_version()}, numpy {numpy.__version__}"
    if torch_available():
        from importlib.metadata import version

        versions += f", torch {version('torch')}"
    return f"{os.cpu_count()} cores, {model}; {versions}"


def load():
    try:
        return os.getloadavg()
    except OSError:
        return None


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def table(results):
    lines = [
        "| contestant | configuration | chars/s | held-out bits/char | iterations |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, (config, r) in results.items():
        lines.append(
            f"| {name} | {describe(config)} | {r['chars_per_sec']:,.0f} | {r['valid_bits']:.3f} | {r['iterations']:,} |"
        )
    return "\n".join(lines)


def targets(results, quality=()):
    def cps(name):
        return results[name][1]["chars_per_sec"] if name in results else None

    def bits(name):
        return results[name][1]["valid_bits"] if name in results else None

    rows = ["| target | measured | goal | met |", "| --- | ---: | ---: | --- |"]

    def speed(label, a, b, goal):
        if cps(a) and cps(b):
            r = cps(a) / cps(b)
            rows.append(f"| {label} | {r:.2f}x | >= {goal}x | {'yes' if r >= goal else 'NO'} |")

    speed("rnnpipe seed configuration vs the seed's code, chars/s", "rnnpipe-seed", "seed", 5.0)
    speed("rnnpipe vs torch, rnn 100 batch 32, chars/s", "rnnpipe-rnn100-b32", "torch-rnn100-b32", 1.0)
    speed("rnnpipe vs torch, lstm 256 batch 32 seq 50, chars/s", "rnnpipe-lstm256-b32", "torch-lstm256-b32", 0.8)
    speed("rnnpipe vs torch, gru 256 batch 32 seq 50, chars/s (no target)", "rnnpipe-gru256-b32", "torch-gru256-b32", 0)
    torch_runs = {n: bits(n) for n in results if n.startswith("torch-") and bits(n) is not None}
    mine = "rnnpipe-default" if "rnnpipe-default" in results else None
    if mine is None:  # the default configuration is one of the batched ones
        d = default_cfg()
        mine = next((n for n, (c, _) in results.items() if n.startswith("rnnpipe-") and c == d), None)
    if torch_runs and mine:
        best = min(torch_runs, key=torch_runs.get)
        gap = bits(mine) - torch_runs[best]
        rows.append(
            f"| time to quality: {mine} minus the best torch ({best}), held-out bits/char after the budget "
            f"| {gap:+.3f} | <= +0.10 | {'yes' if gap <= 0.10 else 'NO'} |"
        )
    rows += quality_targets(quality)
    return "\n".join(rows)


def curve_table(rows):
    lines = [
        "| iteration | rnnpipe float64 | rnnpipe float32 | seed's code | seed's code, weights +1 ulp |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['iteration']:,} | {r['rnnpipe_float64']:.4f} | {r['rnnpipe_float32']:.4f} | {r['seed']:.4f} "
            f"| {r['seed_1ulp']:.4f} |"
        )
    return "\n".join(lines)


def time_cli_sample(model_path, runs=5):
    """Median wall time of `rnnpipe sample -m MODEL -n 300`, start-up included."""
    exe = shutil.which("rnnpipe", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "rnnpipe"]
    command += ["sample", "-m", str(model_path), "-n", "300", "--seed", "1"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return None, " ".join(command), proc.stderr.strip()[-500:]
    return statistics.median(times), " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)), None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per contestant (default 60)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=f"corpus (default {DEFAULT_DATA})")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads per contestant (default 1)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these contestants")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch contestants")
    parser.add_argument("--no-extras", action="store_true", help="skip the loss curve, sampling and memory")
    parser.add_argument("--curve-iterations", type=int, default=4000, help="length of the loss-curve check")
    parser.add_argument("--json", metavar="FILE", help="also write every result to FILE")
    parser.add_argument("--quality", type=float, nargs="+", metavar="SECONDS",
                        help="also run bench/quality.py at these budgets (cyrillic needs fortunes-ru)")  # fmt: skip
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="--quality's clock (see quality.py)")
    args = parser.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"no corpus at {args.data}: pass --data")

    have_torch = torch_available() and not args.no_torch
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"budget {args.budget:g} s per contestant, {args.threads} BLAS thread(s); load average before: {load()}")
    print()

    results, raw = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        saved = {}
        for name, kind, config in contestants():
            if args.only and name not in args.only:
                continue
            if kind == "torch" and not have_torch:
                continue
            spec = {"kind": kind, "budget": args.budget, "config": config, "data": args.data}
            if kind == "rnnpipe" and name != "rnnpipe-default":
                spec["schedule"] = "none"  # the constant rate the seed's code and torch train at
            if kind == "rnnpipe" and (name in ("rnnpipe-seed", "rnnpipe-default") or config == default_cfg()):
                spec["sample"] = 2000
                spec["save"] = saved[name] = os.path.join(folder, f"{name}.rnn")
            print(f"  {name}: {describe(config)} ...", end=" ", flush=True)
            r = run_child(spec, args.threads, timeout=args.budget * 3 + 600)
            results[name], raw[name] = (config, r), r
            print(f"{r['chars_per_sec']:,.0f} chars/s, {r['valid_bits']:.3f} bits/char", flush=True)

        quality = []
        if args.quality:
            print()
            print("Time to quality (bench/quality.py):", flush=True)
            qjson = os.path.join(folder, "quality.json")
            command = [sys.executable, str(HERE / "quality.py"), "--budgets", *map(str, args.quality)]
            command += ["--clock", args.clock, "--json", qjson] + (["--no-torch"] if not have_torch else [])
            proc = subprocess.run(command)
            if proc.returncode == 0:
                quality = raw["quality"] = json.loads(Path(qjson).read_text())
            else:
                print(f"bench/quality.py failed (exit {proc.returncode})")

        print()
        print(table(results))
        print()
        print(targets(results, quality))
        blas = next((r.get("blas") for r in raw.values() if r.get("blas")), None)
        print()
        print(f"numpy's BLAS as the contestants ran it (threadpoolctl): {blas}")

        if not args.no_extras:
            print()
            print(
                f"Loss curve: smooth loss per character (nats), the seed's configuration, same start weights,"
                f" same characters ({args.curve_iterations:,} iterations):"
            )
            curve = run_child(
                {
                    "kind": "curve",
                    "iterations": args.curve_iterations,
                    "every": args.curve_iterations // 8,
                    "data": args.data,
                },
                args.threads,
                timeout=3600,
            )
            raw["curve"] = curve
            print()
            print(curve_table(curve["rows"]))
            print()
            print("Sampling, one stream (Model.sample after training):")
            for name in saved:
                if name in raw and "sample_chars_per_sec" in raw[name]:
                    print(f"  {name}: {raw[name]['sample_chars_per_sec']:,.0f} chars/s")
            for name, path in saved.items():
                seconds, command, error = time_cli_sample(path)
                if seconds is None:
                    print(f"  `{command}` failed: {error}")
                else:
                    raw[f"cli-{name}"] = seconds
                    print(f"  `rnnpipe sample -m MODEL -n 300` with {name}'s model: {seconds:.3f} s wall (median of 5)")
            memory = HERE / "memory.py"
            print()
            if memory.exists():
                print("Streaming memory (bench/memory.py):")
                proc = subprocess.run([sys.executable, str(memory)], capture_output=True, text=True)
                print(proc.stdout.rstrip() or proc.stderr.rstrip())
            else:
                print("Streaming memory: bench/memory.py is not here, not measured")

    print()
    print(f"load average after: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=float))


if __name__ == "__main__":
    main()
