"""One benchmark contestant, run in its own process by bench/run.py.

    python bench/contestants.py '{"kind": "rnnpipe", "budget": 60, "config": {...}, ...}'

prints one JSON line: chars/s, held-out bits per character and what else the
kind measures. A process per contestant keeps them apart: BLAS thread pools,
allocator state and imports (numpy's startup, torch's) do not leak from one to
the next, and the thread count set in its environment holds for it alone.

kinds:
  seed     bench/seed.py, the notebook's code (float64, one-hot, dict caches)
  rnnpipe  rnnpipe through its public API: Model.new, Model.train, Model.evaluate
  torch    bench/torch_rnn.py (torch.nn.RNN/LSTM/GRU), when torch imports
  curve    the loss-curve check: rnnpipe's seed configuration and the seed's
           code from the same weights, smooth loss at equal iteration counts
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def split(text, fraction=0.9):
    cut = int(len(text) * fraction)
    return text[:cut], text[cut:]


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [
        {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for d in threadpool_info()
    ]


def run_seed(spec, train, held):
    import seed

    return seed.run(train + held, spec["budget"])  # seed.run splits 90/10 itself


def run_rnnpipe(spec, train, held):
    import rnnpipe

    config = rnnpipe.Config(**spec["config"])
    model = rnnpipe.Model.new(config, train)
    # no epochs: as many passes as the budget allows. The fixed configurations
    # run at a constant rate (schedule "none"), as their torch counterparts
    # and the seed's code do; rnnpipe's default runs as a user gets it
    progress = model.train(train, max_time=spec["budget"], schedule=spec.get("schedule", "cosine"))
    ev = model.evaluate(held)
    out = {
        "chars": progress.chars,
        "seconds": progress.elapsed,
        "chars_per_sec": progress.chars_per_sec,
        "iterations": model.iterations,
        "smooth_loss_per_char": model.smooth_loss,
        "valid_bits": ev.bits_per_char,
        "unknown": ev.unknown,
    }
    if spec.get("sample"):
        model.sample(50, seed=0)  # warm-up: first-call costs are not sampling speed
        n = spec["sample"]
        start = time.perf_counter()
        model.sample(n, seed=1)
        out["sample_chars_per_sec"] = n / (time.perf_counter() - start)
    if spec.get("save"):
        model.save(spec["save"])
    return out


def run_torch(spec, train, held):
    import torch
    import torch_rnn

    torch.set_num_threads(spec["threads"])
    c = spec["config"]
    out = torch_rnn.run(
        train,
        held,
        c["cell"],
        c["hidden"],
        c["seq_length"],
        c["batch_size"],
        c["optimizer"],
        c["lr"],
        spec["budget"],
        clip=c.get("clip", 5.0),
        layers=c.get("layers", 1),
    )
    out["torch"] = torch.__version__
    return out


def run_curve(spec, train, held):
    """rnnpipe's seed configuration (in float64, and in its default float32)
    and the seed's code, from the same initial weights on the same
    characters: smooth loss per character every `every` iterations. It is
    the same algorithm, so the float64 columns agree to rounding."""
    import numpy as np
    import seed

    import rnnpipe

    iterations, every = spec["iterations"], spec["every"]
    start = rnnpipe.Model.new(rnnpipe.SEED.replace(dtype="float64"), train).params
    rows = {}
    for dtype in ("float64", "float32"):
        model = rnnpipe.Model.new(rnnpipe.SEED.replace(dtype=dtype), train)
        model.params = {k: v.astype(dtype) for k, v in start.items()}

        def stop(model=model, dtype=dtype):  # polled after every iteration
            if model.iterations % every == 0:
                rows.setdefault(model.iterations, {})[f"rnnpipe_{dtype}"] = model.smooth_loss
            return model.iterations >= iterations

        model.train(train, stop=stop, schedule="none")  # the seed's constant rate

    names = {"Wxh": "0.Wxh", "Whh": "0.Whh", "Why": "Why", "bh": "0.bh", "by": "by"}
    weights = {k: start[v] for k, v in names.items()}
    # the control: the seed's code against itself with every starting weight
    # moved by one unit in the last place. Training amplifies any rounding
    # difference (a different summation order is one), so this column shows
    # how far two runs of one algorithm drift apart by rounding alone
    nudged = {k: np.nextafter(v, np.inf) for k, v in weights.items()}
    for column, w in (("seed", weights), ("seed_1ulp", nudged)):
        rnn = seed.SeedRNN(sorted(set(train)), weights=w)

        def on_iter(n, smooth, column=column):
            if n % every == 0:
                rows.setdefault(n, {})[column] = smooth / 25  # the seed's is per 25 characters

        rnn.train(train, max_iter=iterations, on_iter=on_iter)
    return {"rows": [{"iteration": k, **v} for k, v in sorted(rows.items())]}


KINDS = {"seed": run_seed, "rnnpipe": run_rnnpipe, "torch": run_torch, "curve": run_curve}


def main():
    spec = json.loads(sys.argv[1])
    with open(spec["data"], encoding="utf-8") as f:
        train, held = split(f.read())
    threads = spec.get("threads", 1)
    import numpy  # noqa: F401  (loads the BLAS, which threadpoolctl can only limit once loaded)

    try:  # the numpy BLAS's thread count, whatever the environment said
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(threads)
    except ImportError:
        limiter = None
    out = KINDS[spec["kind"]](spec, train, held)
    out["blas"] = blas_info()
    if limiter is not None:
        limiter.restore_original_limits()
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
