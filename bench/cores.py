"""Every core (issue 22): training chars/s of the default configuration on
every core against one, quiet and beside a busy program.

    .venv/bin/python bench/cores.py [--seconds 20] [--repeat 3] [--chars 1000000] [--ways]
    .venv/bin/python bench/cores.py --shards

Each contestant is a fresh process training a new default model (Config())
on the first --chars characters of ../shared/data/tinyshakespeare.txt for
--seconds, as `rnnpipe train --max-time` would:

- every core:      the default (--workers: every core this process may use)
- one core:        under `taskset -c 0`, so one worker: the whole batch at once, as before
- busy, every core: the default, with another process spinning on core 0 (`taskset -c 0`) throughout
- busy, 1 worker:  --workers 1 beside the same spinner, for reference
- with --ways: the default with its way held (always shared, or always
  every shard in the main process: Pool.measure), and --workers 1 unpinned,
  quiet and busy: what the pool's choice is between

The rounds are interleaved so that drifts in the machine's load hit every
contestant alike; the medians and the issue's ratios are printed (targets:
every/one >= 1.7, busy every/one >= 0.9), with `uptime` before and after.

Then where the main process's time per update went in the "every core"
runs (Pool.seconds): putting the inputs into shared memory ("put"), its own
shards ("own"), waiting for the workers' ("wait"), adding the shards up
("total"); and per_update(): the design's alternatives side by side in one
process, and the sync's own cost on a near-empty update.

--shards measures only this: the CPU time of an update's loss cut into 2, 4
and 8 shards against the whole batch's, by model size (shard_overhead), what
engines/shards.py's layout rests on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT = HERE.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
sys.path.insert(0, str(HERE.parent))

CONTESTANTS = {
    "every core": dict(pin=False, spin=False, workers=None),
    "one core": dict(pin=True, spin=False, workers=None),
    "busy, every core": dict(pin=False, spin=True, workers=None),
    "busy, 1 worker": dict(pin=False, spin=True, workers=1),
}
# with --ways, for a look inside: the default's two ways held fixed, and one worker unpinned
WAYS = {
    "every core, shared": dict(pin=False, spin=False, workers=None, way="share"),
    "every core, alone": dict(pin=False, spin=False, workers=None, way="alone"),
    "1 worker": dict(pin=False, spin=False, workers=1),
    "busy, shared": dict(pin=False, spin=True, workers=None, way="share"),
    "busy, alone": dict(pin=False, spin=True, workers=None, way="alone"),
}


def child(seconds, chars, workers, way=None):
    """One contestant, in its own process: prints its chars/s and its pool's times as JSON."""
    from rnnpipe import Config, Model
    from rnnpipe.engines import parallel

    if way is not None:  # held: never measured, never changed
        parallel.Pool.measure = lambda pool, *args: setattr(pool, "way", way)
    seen = {}
    close = parallel.Pool.close

    def recording(pool):
        if sum(pool.steps.values()):
            seen.update(steps=sum(pool.steps.values()), shared=pool.steps["share"], workers=pool.workers,
                        **pool.seconds)  # fmt: skip
        close(pool)

    parallel.Pool.close = recording
    text = TEXT.read_text(encoding="utf-8")[:chars]
    model = Model.new(Config(), text)
    final = model.train(text, max_time=seconds, workers=workers)
    print(json.dumps({"chars_per_sec": final.chars_per_sec, "iterations": model.iterations, "pool": seen}))


def contest(c, seconds, chars):
    command = [sys.executable, __file__, "--child", str(seconds), "--chars", str(chars)]
    if c["workers"] is not None:
        command += ["--workers", str(c["workers"])]
    if c.get("way"):
        command += ["--way", c["way"]]
    if c["pin"]:
        command = ["taskset", "-c", "0", *command]
    spinner = None
    if c["spin"]:
        spinner = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(out)


def per_update(rounds=5, repeat=20):
    """Wall ms per update's loss (net.loss or its equal), medians of interleaved
    rounds: the default GRU's whole batch on one core; its shards (the layout
    of 2 workers) on 2 threads; on 2 processes (the pool, always sharing);
    the same shards one after another in one process (the pool's other way),
    CPU ms too. Then the sync's own cost: the pool against one core on a
    near-empty update (hidden 4, 4 streams of 1 character), where computing
    costs next to nothing."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from rnnpipe import Config, Model
    from rnnpipe.cells import net
    from rnnpipe.engines import parallel, shards
    from rnnpipe.train import batches

    parallel.WINDOW = 1 << 40  # each pool keeps the way it is given
    text = TEXT.read_text(encoding="utf-8")[:300_000]
    executor = ThreadPoolExecutor(2)

    def threaded(params, cfg, X, Y, state, rng):
        B = X.shape[1]
        futures = [executor.submit(net.loss, params, cfg, X[:, a:b], Y[:, a:b], [tuple(s[a:b] for s in layer)
                                   for layer in state]) for a, b in shards.layout(B, 2, cfg)]  # fmt: skip
        parts = [(f.result(), (b - a) / B) for f, (a, b) in zip(futures, shards.layout(B, 2, cfg), strict=True)]
        grads = {k: sum(g[k] * w for (_, g, _), w in parts) for k in params}
        return sum(loss * w for (loss, _, _), w in parts), grads, None

    def contestants(cfg):
        shared, alone = parallel.Pool(2), parallel.Pool(2)
        alone.lost = True  # every shard in the main process, one after the other
        return {"one core, whole batch": net.loss, "2 threads": threaded, "2 processes": shared.loss,
                "1 process, shards": alone.loss}, (shared, alone)  # fmt: skip

    def children_cpu(pools):
        """CPU seconds the pools' workers have used so far (from /proc)."""
        total = 0.0
        for pool in pools:
            for pid in pool.children:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def timed(cfg, model, chunks):
        found, pools = contestants(cfg)
        wall, cpu, workers = ({name: [] for name in found} for _ in range(3))
        for _ in range(rounds):
            for name, fn in found.items():
                state = net.zero_state(cfg, cfg.batch_size)
                fn(model.params, cfg, *chunks[0], state, model.rng)
                t, c, w = time.perf_counter(), time.process_time(), children_cpu(pools)
                for X, Y in chunks[1:]:
                    fn(model.params, cfg, X, Y, state, model.rng)
                n = len(chunks) - 1
                wall[name].append((time.perf_counter() - t) / n * 1e3)
                cpu[name].append((time.process_time() - c) / n * 1e3)
                workers[name].append((children_cpu(pools) - w) / n * 1e3)
        for pool in pools:
            pool.close()
        return {name: tuple(statistics.median(d[name]) for d in (wall, cpu, workers)) for name in found}

    with threadpool_limits(1, user_api="blas"):
        cfg = Config()
        model = Model.new(cfg, text)
        chunks = list(batches(model.vocab.encode(text), cfg.seq_length, cfg.batch_size))[: repeat + 1]
        default = timed(cfg, model, chunks)
        tiny = Config(hidden=4, batch_size=4, seq_length=1)
        model = Model.new(tiny, text)
        chunks = list(batches(model.vocab.encode(text), 1, 4))[: 50 * repeat + 1]
        shards.SHARD_UNITS = 1  # split as the default is, into 4 shards
        empty = timed(tiny, model, chunks)
    executor.shutdown()
    return default, empty


def shard_overhead(rounds=3, repeat=11):
    """CPU ms of one update's loss cut into 2, 4 and 8 shards computed one
    after another in one process, as a ratio to the whole batch's, for a
    few model sizes (32 streams of 50): what engines/shards.py's layout
    rule rests on."""
    from threadpoolctl import threadpool_limits

    from rnnpipe import Config, Model
    from rnnpipe.cells import net
    from rnnpipe.train import batches

    text = TEXT.read_text(encoding="utf-8")[:300_000]
    rows = {}
    with threadpool_limits(1, user_api="blas"):
        for cell, hidden in (("gru", 192), ("gru", 64), ("lstm", 256), ("gru", 512)):
            cfg = Config(cell=cell, hidden=hidden)
            model = Model.new(cfg, text)
            chunks = list(batches(model.vocab.encode(text), cfg.seq_length, cfg.batch_size))[: repeat + 1]
            B, cpu = cfg.batch_size, {}
            for _ in range(rounds):
                for K in (1, 2, 4, 8):
                    cuts = [(k * B // K, (k + 1) * B // K) for k in range(K)]
                    state = net.zero_state(cfg, B)
                    t = time.process_time()
                    for X, Y in chunks[1:]:
                        for a, b in cuts:
                            part = [tuple(s[a:b] for s in layer) for layer in state]
                            net.loss(model.params, cfg, X[:, a:b], Y[:, a:b], part, None)
                    cpu.setdefault(K, []).append(time.process_time() - t)
            whole = statistics.median(cpu[1])
            rows[f"{cell} {hidden}"] = {K: statistics.median(v) / whole for K, v in cpu.items() if K > 1}
    return rows


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--ways", action="store_true", help="also the contestants of WAYS, for a look inside")
    parser.add_argument("--shards", action="store_true", help="only the shards' overhead by model size")
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.chars, args.workers, args.way)
    print(f"cores this process may use: {len(os.sched_getaffinity(0))}; {uptime()}", flush=True)
    if args.shards:
        print("CPU time of an update's loss in K shards one after another / the whole batch's (32 streams of 50)")
        for model, ratios in shard_overhead().items():
            print(f"  {model:9} " + "  ".join(f"{K} shards {r:.2f}" for K, r in ratios.items()), flush=True)
        print(uptime())
        return None
    contestants = {**CONTESTANTS, **(WAYS if args.ways else {})}
    rates, pools = {name: [] for name in contestants}, []
    for r in range(args.repeat):
        for name, c in contestants.items():
            got = contest(c, args.seconds, args.chars)
            rates[name].append(got["chars_per_sec"])
            if name == "every core" and got["pool"]:
                pools.append(got["pool"])
            shared = f", {got['pool']['shared'] / got['pool']['steps']:.0%} shared" if got["pool"] else ""
            rate, n = got["chars_per_sec"], got["iterations"]
            print(f"round {r + 1} {name:19}: {rate:8,.0f} chars/s ({n} updates{shared})", flush=True)
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(f"\nmedians over {args.repeat} rounds of {args.seconds:g} s each; {uptime()}")
    for name, v in med.items():
        print(f"  {name:19} {v:8,.0f} chars/s  ({v / med['one core']:.2f} of one core)")
    one = med["one core"]
    print(f"every core / one core          {med['every core'] / one:.2f}  (target >= 1.7)")
    print(f"busy, every core / one core    {med['busy, every core'] / one:.2f}  (target >= 0.9)")
    print(f"busy, 1 worker / one core      {med['busy, 1 worker'] / one:.2f}")
    if pools:
        print(f"\nthe main process per update, every core ({pools[0]['workers']} workers), wall ms:")
        for key in ("put", "own", "wait", "total"):
            values = [p[key] / p["steps"] * 1e3 for p in pools]
            print(f"  {key:6} {statistics.median(values):7.3f}")
    default, empty = per_update()
    print(f"\nper update's loss, medians of interleaved rounds; {uptime()}")
    print("  default GRU 192, 32 streams of 50:      wall ms   CPU ms: the main process, the worker")
    for name, (wall, cpu, worker) in default.items():
        print(f"    {name:34} {wall:7.2f} {cpu:8.2f} {worker:8.2f}")
    print("  near-empty update (hidden 4, 4 streams of 1): the sync's own cost")
    for name, (wall, cpu, worker) in empty.items():
        print(f"    {name:34} {wall:7.3f} {cpu:8.3f} {worker:8.3f}")


if __name__ == "__main__":
    main()
