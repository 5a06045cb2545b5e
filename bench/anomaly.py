"""Finding the unusual lines of a real log: `rnnpipe score` against two
baselines a shell user has (issue 23).

The log is bench/data/dpkg.log, dpkg's own log of the packages installed on
the machine this benchmark was written on (Debian 12; see bench/data/README.md).
Its first TRAIN share of lines trains a model (`rnnpipe train`); into the rest,
held out, lines of other kinds are injected at random places (seeded):

- another program's log: lines of bench/data/alternatives.log
  (update-alternatives, from the same machine);
- a stack trace: the traceback this script gets from a failing call, made
  here when it runs;
- shuffled characters of real held-out lines (the same characters, so the
  length and the character counts give nothing away).

Every line of the result is scored, and the scores rank the lines; the
injected lines are the ones to find. Scores:

- rnnpipe: `rnnpipe score --json`'s bits per character (the held-out text read
  as one stream);
- length: the line's length as a z-score, |len - mean| / std, with the mean and
  std of the training lines;
- gzip: the line's compressed size per character, deflate at level 9 with the
  32 KB of text before it (the training text's tail, then the held-out text
  as it comes, injected lines included) as its preset dictionary.

For each: precision at k (the share of injected lines among the k highest
scores; k = 10, 50 and the number injected) and ROC AUC (the chance that an
injected line scores above a real one, ties counting half).

    python bench/anomaly.py                      # a 60 s GRU, the default
    python bench/anomaly.py --max-time 20 --seed 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOG = os.path.join(HERE, "data", "dpkg.log")
OTHER = os.path.join(HERE, "data", "alternatives.log")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from measures import gzip_scores, length_scores, precision_at, roc_auc, stack_trace  # noqa: E402

TRAIN = 0.7  # the share of the log's lines, from its start, the model learns from


def rnnpipe(*args, input=None):
    script = os.path.join(os.path.dirname(sys.executable), "rnnpipe")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "rnnpipe"]
    r = subprocess.run(command + [str(a) for a in args], input=input, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"rnnpipe {args[0]} failed: {r.stderr.decode()}")
    return r


def shuffled(line, rng):
    chars = list(line.rstrip("\n"))
    rng.shuffle(chars)
    return "".join(chars) + "\n"


KINDS = ("other program", "shuffled", "stack trace")


def inject(held, other, trace, n_other, n_shuffled, rng):
    """The held-out lines with others put in at random places; (lines, kinds: None for the log's own)."""
    items = [(line, None) for line in held]
    injected = [[(line, KINDS[0])] for line in rng.sample(other, n_other)]
    injected += [[(shuffled(line, rng), KINDS[1])] for line in rng.sample(held, n_shuffled)]
    injected.append([(line, KINDS[2]) for line in trace])  # a trace is one block of lines
    for block in injected:
        at = rng.randrange(len(items) + 1)
        items[at:at] = block
    return [x for x, _ in items], [k for _, k in items]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-time", type=float, default=60.0, help="seconds of training (default 60)")
    ap.add_argument("--seed", type=int, default=1, help="where the injected lines go, and which (default 1)")
    ap.add_argument("--other", type=int, default=30, help="lines of the other program's log injected (default 30)")
    ap.add_argument("--shuffled", type=int, default=30, help="shuffled real lines injected (default 30)")
    args = ap.parse_args()

    with open(LOG, encoding="utf-8") as f:
        log = f.readlines()
    with open(OTHER, encoding="utf-8") as f:
        other = f.readlines()
    cut = int(len(log) * TRAIN)
    train_lines, held = log[:cut], log[cut:]
    rng = random.Random(args.seed)
    trace = stack_trace()
    lines, kinds = inject(held, other, trace, args.other, args.shuffled, rng)
    labels = [int(k is not None) for k in kinds]
    train_text, test_text = "".join(train_lines), "".join(lines)

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model, test, train = (os.path.join(tmp, name) for name in ("log.msgpack", "test.log", "train.log"))
        for path, text in ((test, test_text), (train, train_text)):
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        start = time.monotonic()
        # a FILE, not stdin: --max-time makes pass after pass over it
        rnnpipe("train", "-m", model, "--max-time", args.max_time, "-q", train)
        trained = time.monotonic() - start
        start = time.monotonic()
        out = rnnpipe("score", "-m", model, "--json", test).stdout.decode().splitlines()
        scored = time.monotonic() - start
        bits_per_char = json.loads(rnnpipe("eval", "-m", model, "--json", test).stdout)["bits_per_char"]
    records = [json.loads(x) for x in out]
    assert [r["text"] + "\n" for r in records] == lines
    scores = {
        "rnnpipe bits/char": [r["bits_per_char"] if r["bits_per_char"] is not None else 0.0 for r in records],
        "length z-score": length_scores(train_lines, lines),
        "gzip bytes/char (32 KB dict)": gzip_scores(train_text, lines),
    }
    n = sum(labels)
    print(f"log: {os.path.relpath(LOG)}: {len(log)} lines; trained on the first {cut} ({len(train_text):,} chars, "
          f"{args.max_time:g} s: {trained:.0f} s with start-up), held out {len(held)}")  # fmt: skip
    print(f"injected: {args.other} lines of {os.path.relpath(OTHER)}, {args.shuffled} shuffled held-out lines, "
          f"a {len(trace)}-line Python traceback: {n} of {len(lines)} lines")  # fmt: skip
    print(f"held-out text with the injections: {bits_per_char:.3f} bits/char (rnnpipe eval); "
          f"scored {len(test_text):,} chars in {scored:.1f} s")  # fmt: skip
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))  # fmt: skip
    print()
    print(f"| score | P@10 | P@50 | P@{n} | ROC AUC | " + " | ".join(f"AUC {k}" for k in KINDS) + " |")
    print("| --- " * (5 + len(KINDS)) + "|")
    for name, s in scores.items():
        p = [precision_at(s, labels, k) for k in (10, 50, n)]
        # each kind against the log's own lines alone
        by_kind = []
        for kind in KINDS:
            keep = [i for i, k in enumerate(kinds) if k in (None, kind)]
            by_kind.append(roc_auc([s[i] for i in keep], [labels[i] for i in keep]))
        print(f"| {name} | {p[0]:.2f} | {p[1]:.2f} | {p[2]:.2f} | {roc_auc(s, labels):.3f} | "
              + " | ".join(f"{a:.3f}" for a in by_kind) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
