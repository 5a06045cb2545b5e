"""A second run on a trained model: does any moment of it leave the model
worse than before it? (issue 19: a new run cannot undo a trained model
through its learning-rate schedule; schedule.py's rule.)

    .venv/bin/python bench/continued.py                   # about 3 minutes on 2 cores
    .venv/bin/python bench/continued.py --chars 300000 --json /tmp/continued.json

A fresh default model trains one pass (epochs=1, threads=1) over the first
--chars characters of ../shared/data/tinyshakespeare.txt; the last --held
characters of the file, which that never reaches, are the held-out text,
scored with Model.evaluate. Then the same model, copied from its bytes for
each rule, trains a second pass (epochs=1) under each rule:

- default: the rate the first run ended at (Model.rate), no warm-up, down to
  the floor;
- restart: restart=True, a fresh schedule: warm-up to --lr, then the cosine;
- half: for reference, the cosine restarted at half of --lr without warm-up
  (Model.rate set to 0.5 before the run), a middle way.

During the second run a callback (report_every=0, so after every update)
scores the held-out text each time another tenth of the pass has been
trained, and once more at its end: ten moments, each what Ctrl-C at that
moment would leave. The schedule counts characters (a run bounded by passes
has no clock in it), so the time spent scoring moves nothing. Reported per
rule: the score at each moment with the learning rate then (as a multiple of
--lr), the worst moment minus the score before the run, and the end minus
it. For noise: the spread of the default rule's ten moments (its rate stays at
about the floor, where the first run ended, so they differ by what it
learns, not by the schedule), and
the held-out score's standard error, from 30 equal pieces of the held-out
text scored separately.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnpipe import Config, Model  # noqa: E402

RULES = ("default", "restart", "half")


def second_run(data, text, held, rule):
    """The second pass under a rule: [(share of the pass, held-out bits, lr multiple)]."""
    model = Model.from_bytes(data)
    options = {"epochs": 1, "threads": 1}
    if rule == "restart":
        options["restart"] = True
    elif rule == "half":
        model.rate = 0.5
    start_rate, lr = (None if rule == "restart" else model.rate), model.config.lr
    moments, marks = [], iter(range(1, 10))
    mark = next(marks)

    def scored(p):
        nonlocal mark
        if mark is not None and p.kind == "progress" and p.chars >= mark * p.total / 10:
            moments.append((mark / 10, model.evaluate(held).bits_per_char, p.lr / lr))
            mark = next(marks, None)

    start = time.monotonic()
    end = model.train(text, callback=scored, report_every=0, **options)
    seconds = time.monotonic() - start
    moments.append((1.0, model.evaluate(held).bits_per_char, end.lr / lr))
    return {"rule": rule, "start_rate": start_rate, "moments": moments, "seconds": seconds}


def standard_error(model, held, pieces=30):
    size = len(held) // pieces
    bits = [model.evaluate(held[i * size : (i + 1) * size]).bits_per_char for i in range(pieces)]
    return statistics.stdev(bits) / math.sqrt(pieces)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")
    parser.add_argument("--chars", type=int, default=1_000_000, help="characters trained on, from the start")
    parser.add_argument("--held", type=int, default=30_000, help="held-out characters, from the end")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--json", type=Path, help="save the results here")
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    full = args.data.read_text(encoding="utf-8")
    text, held = full[: args.chars], full[-args.held :]
    if args.chars + args.held > len(full):
        raise SystemExit("--chars and --held overlap: the held-out text must be text the model never trains on")

    model = Model.new(Config())
    start = time.monotonic()
    first = model.train(text, epochs=1, threads=1)
    before = model.evaluate(held).bits_per_char
    se = standard_error(model, held)
    print(f"first run: {first.chars:,} chars in {time.monotonic() - start:.1f} s, ended at rate "
          f"{model.rate:.3f} x lr; held-out {before:.4f} bits/char (standard error {se:.4f})", flush=True)  # fmt: skip
    data = model.to_bytes()

    results = []
    for rule in args.rules:
        res = second_run(data, text, held, rule)
        results.append(res)
        starts = "a warm-up" if res["start_rate"] is None else f"{res['start_rate']:.3f} x lr"
        print(f"  {rule}: starts at {starts}, ends {res['moments'][-1][1]:.4f} bits/char "
              f"({res['seconds']:.1f} s)", flush=True)  # fmt: skip

    print()
    print(f"held-out bits/char (learning rate as a multiple of --lr {model.config.lr:g}) during the second pass:")
    print()
    print("| moment of the second pass | " + " | ".join(r["rule"] for r in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    print("| before it | " + " | ".join(f"{before:.4f}" for _ in results) + " |")
    for i in range(10):
        cells = []
        for r in results:
            share, bits, rate = r["moments"][i]
            cells.append(f"{bits:.4f} ({rate:.3f})")
        print(f"| {results[0]['moments'][i][0]:.0%}{' (end)' if i == 9 else ''} | " + " | ".join(cells) + " |")
    worst = [max(b for _, b, _ in r["moments"]) - before for r in results]
    last = [r["moments"][-1][1] - before for r in results]
    print("| worst moment - before | " + " | ".join(f"{w:+.4f}" for w in worst) + " |")
    print("| end - before | " + " | ".join(f"{e:+.4f}" for e in last) + " |")
    noise = {}
    default = next((r for r in results if r["rule"] == "default"), None)
    if default is not None:
        bits = [b for _, b, _ in default["moments"]]
        noise = {"stdev": statistics.stdev(bits), "range": max(bits) - min(bits)}
        print()
        print(f"noise: the default rule's 10 moments have a standard deviation of {noise['stdev']:.4f} bits/char "
              f"and span {noise['range']:.4f}; the held-out score's standard error is {se:.4f}")  # fmt: skip
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        out = {"before": before, "standard_error": se, "first_rate": model.rate, "rules": results, "noise": noise,
               "load_after": os.getloadavg()}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
