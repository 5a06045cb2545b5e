"""Does the README's first command overfit? Its held-out curve, best and end.

    .venv/bin/python bench/overfit.py                        # this tree's default against main's, 60 s each
    .venv/bin/python bench/overfit.py --clock cpu            # on a shared machine: 60 s of CPU time each
    .venv/bin/python bench/overfit.py --contestant 'wd 0.3:weight_decay=0.3' \\
        --contestant 'h128:hidden=128' --contestant 'no hold-out:valid_fraction=0'   # regularisation, measured

Each contestant runs the setting of the README's first command,
`rnnpipe train -m shakespeare.msgpack --max-time 60 examples/shakespeare.txt`
(a new model, as the command line makes it for that text and time, with
the command line's options as that command gives them, the
text as one string read again pass after pass), in its own child process,
one after another, with the rnnpipe of the tree named (the reference is
main's: --reference, default ../main). While it trains, a copy of the
weights is taken every --every seconds (a copy of arrays: the clock hardly
notices); afterwards each copy, and the model the run ended with, is scored
on text the run never saw: the next --held characters of tinyshakespeare
after the sample (../shared/data/tinyshakespeare.txt, whose first 99,843
characters are examples/shakespeare.txt), read as one stream.

Reported per contestant: the curve, its best and when, the end (the model
the run leaves in the file) and end minus best (the target: at most 0.02
bits/char), the run's own held-out reports and the share of its time spent
scoring them (what keep-best costs), updates and chars/s.

Contestants are LABEL:FIELD=VALUE,... over the default, FIELDs of Config or
of train.Options (valid_fraction, keep_best, schedule); LABEL alone is the
default. A contestant whose label starts with "main" runs the reference tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "examples" / "shakespeare.txt"
COMMAND = ["train", "-m", "shakespeare.msgpack", "--max-time", "60", str(SAMPLE)]  # the README's first command
OPTION_FIELDS = ("valid_fraction", "keep_best", "schedule", "epochs")


def parse(spec):
    """'LABEL:key=value,...' -> (label, {field: value})."""
    label, _, rest = spec.partition(":")
    fields = {}
    for item in filter(None, rest.split(",")):
        k, v = item.split("=", 1)
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                continue
        else:
            v = {"true": True, "false": False, "none": None}.get(v.lower(), v)
        fields[k.strip().replace("-", "_")] = v
    return label, fields


# -- one contestant, in a child process -------------------------------------------


def child(spec):
    sys.path.insert(0, spec["tree"])
    if spec["clock"] == "cpu":
        time.monotonic = time.process_time  # the training loop's clock, in this process only
    import numpy as np

    from rnnpipe import options as opts_table
    from rnnpipe.cli import build_parser
    from rnnpipe.evaluate import loss_sum
    from rnnpipe.model import Model
    from rnnpipe.vocab import Vocab

    # the run's own scoring of held-out text, timed: what measuring costs it
    scoring = [0.0]
    import rnnpipe.evaluate as evaluate_module

    modules = [m for m in ("rnnpipe.holdout", "rnnpipe.train") if m in sys.modules or _importable(m)]
    for name in modules:
        module = __import__(name, fromlist=["loss_sum"])
        if hasattr(module, "loss_sum"):
            module.loss_sum = _timed(evaluate_module.loss_sum, scoring)

    args = build_parser().parse_args(spec["command"])
    changes = opts_table.config_changes(args)
    changes.update({k: v for k, v in spec["fields"].items() if k not in OPTION_FIELDS})
    run_options = opts_table.train_options(args).replace(
        **{k: v for k, v in spec["fields"].items() if k in OPTION_FIELDS}
    )
    text = Path(args.files[0]).read_text(encoding="utf-8")
    from rnnpipe import plan

    choose = getattr(plan, "choose", None)  # a tree from before it: the default model
    if choose is not None:
        changes = {**choose(len(text), run_options, changes)[0], **changes}  # the model the command line makes
    model = Model.new(**changes)
    snaps, reports, notes = [], [], []
    last = [-math.inf]

    def callback(p):
        if p.kind == "valid":
            reports.append((round(p.elapsed, 2), p.iteration, round(p.valid_bits, 4)))
        if p.kind == "note":
            notes.append(p.note)
        if p.kind in ("progress", "valid") and p.elapsed - last[0] >= spec["every"]:
            last[0] = p.elapsed
            snaps.append((p.elapsed, p.iteration, {k: v.copy() for k, v in model.params.items()}))

    final = model.train(text, run_options, callback=callback, report_every=0.25, valid_every=10.0)
    held = (SHARED / "tinyshakespeare.txt").read_text(encoding="utf-8")[len(text) : len(text) + spec["held"]]
    vocab = Vocab(model.vocab.chars)  # a new model's vocabulary is the text's from the first block on

    def bits(params):
        ix = vocab.encode(held)
        nats, n = loss_sum(model.config, params, ix[ix >= 0])
        return nats / n / math.log(2)

    curve = [(round(t, 2), it, round(bits(params), 4)) for t, it, params in snaps]
    end = bits(model.params)
    best = min(curve + [(round(final.elapsed, 2), model.iterations, end)], key=lambda c: c[2])
    kept = getattr(final, "kept", None)
    return {
        "curve": curve,
        "best": best,
        "end": round(end, 4),
        "end_minus_best": round(end - best[2], 4),
        "own_end": None if final.valid_bits is None else round(final.valid_bits, 4),
        "kept": None if kept is None else [round(kept[0], 4), round(kept[1], 2), kept[2]],
        "own": reports,
        "notes": notes,
        "scoring_share": round(scoring[0] / final.elapsed, 4) if final.elapsed else None,
        "iterations": model.iterations,
        "chars": final.chars,  # trained on, by the updates kept or not
        "chars_per_sec": round(final.chars_per_sec),
        "seconds": round(final.elapsed, 2),
        "passes": final.epoch,
        "params": int(sum(np.size(v) for v in model.params.values())),
    }


def _importable(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _timed(f, total):
    def timed(*args, **kwargs):
        start = time.monotonic()
        try:
            return f(*args, **kwargs)
        finally:
            total[0] += time.monotonic() - start

    return timed


# -- the parent ---------------------------------------------------------------------


def run_child(spec):
    env = dict(os.environ, PYTHONPATH=spec["tree"], OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                       env=env, cwd=spec["tree"])  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"{spec['label']} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--contestant", action="append", metavar="LABEL:FIELD=VALUE,...",
                        help="a contestant (default: 'main' and 'default'); repeat for more")  # fmt: skip
    parser.add_argument("--reference", default=str(ROOT.parent / "main"), metavar="TREE",
                        help="the tree 'main' contestants run (default ../main)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=60.0, help="the --max-time of the command (default 60)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="seconds of the wall clock, or of the process's CPU time (one thread: a shared "
                        "machine's figures as a quiet one's)")  # fmt: skip
    parser.add_argument("--every", type=float, default=1.0, help="seconds between copies of the weights (default 1)")
    parser.add_argument("--held", type=int, default=20_000, help="held-out characters scored (default 20,000)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not (SHARED / "tinyshakespeare.txt").exists():
        raise SystemExit(f"needs {SHARED / 'tinyshakespeare.txt'} (../shared/data) for text the runs never see")
    command = list(COMMAND)
    command[command.index("--max-time") + 1] = f"{args.seconds:g}"
    results = {}
    for spec in args.contestant or ["main", "default"]:
        label, fields = parse(spec)
        tree = args.reference if label.startswith("main") else str(ROOT)
        child_spec = {"label": label, "tree": tree, "fields": fields, "clock": args.clock, "every": args.every,
                      "held": args.held, "command": command}  # fmt: skip
        print(f"{label}: {' '.join(command)} {fields or ''} ({tree})", file=sys.stderr, flush=True)
        results[label] = run_child(child_spec)
        r = results[label]
        print(f"  best {r['best'][2]:.3f} at {r['best'][0]:.0f} s, end {r['end']:.3f} (end - best "
              f"{r['end_minus_best']:+.3f}), kept {r['kept']}, scoring {100 * r['scoring_share']:.1f}% of the "
              f"time", file=sys.stderr, flush=True)  # fmt: skip
    print(f"\nREADME's first command, {args.seconds:g} s ({args.clock} clock), scored on the next "
          f"{args.held:,} characters of tinyshakespeare\n")  # fmt: skip
    print("| contestant | best held-out (at s) | end | end - best | own held-out at the end | scoring | chars "
          "| chars/s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in results.items():
        own = "-" if r["own_end"] is None else f"{r['own_end']:.3f}" + (" (kept)" if r["kept"] else "")
        print(f"| {label} | {r['best'][2]:.3f} ({r['best'][0]:.0f}) | {r['end']:.3f} | {r['end_minus_best']:+.3f} "
              f"| {own} | {100 * r['scoring_share']:.1f}% | {r['chars']:,} | {r['chars_per_sec']:,} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "clock": args.clock, "results": results}, indent=1))


if __name__ == "__main__":
    main()
