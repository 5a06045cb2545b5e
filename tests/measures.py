"""How the benchmarks' figures are measured and judged: the ranking measures
of bench/anomaly.py (which lines of a log are unusual) and the time-to-quality
targets of bench/quality.py and bench/run.py.

Plain functions on plain lists. They live beside the tests, which check them
(tests/test_bench_targets.py) without importing anything from bench/; the
benchmarks import them from here.
"""

from __future__ import annotations

import itertools
import json
import traceback
import zlib

DICT = 32 * 1024  # bytes of preceding text gzip may refer back to: deflate's whole window


# -- finding the unusual (bench/anomaly.py) ------------------------------------------


def stack_trace():
    """A real traceback, a few frames deep, as a program would log it."""

    def parse(record):
        return json.loads(record)["when"]

    def handle(records):
        return [parse(r) for r in records]

    try:
        handle(['{"when": 1}', "{not json}"])
    except ValueError:
        return traceback.format_exc().splitlines(keepends=True)
    raise AssertionError("the failing call did not fail")


def gzip_scores(before, lines):
    """Compressed bytes per character of each line given the DICT bytes before it."""
    context = before.encode()[-DICT:]
    out = []
    for line in lines:
        data = line.encode()
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, context)
        out.append(len(c.compress(data) + c.flush()) / len(line))
        context = (context + data)[-DICT:]
    return out


def length_scores(train_lines, lines):
    lengths = [len(x) for x in train_lines]
    mean = sum(lengths) / len(lengths)
    std = (sum((n - mean) ** 2 for n in lengths) / len(lengths)) ** 0.5
    return [abs(len(x) - mean) / std for x in lines]


def precision_at(scores, labels, k):
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    return sum(labels[i] for i in ranked[:k]) / k


def roc_auc(scores, labels):
    """Mann-Whitney: the chance an injected line outscores a real one, ties counting half."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


# -- time to quality (bench/quality.py, bench/run.py) ----------------------------------


def leads(results):
    """The issue's comparison: rnnpipe's default against the best torch
    figure at each budget, as (corpus, budget, rnnpipe's bits, the best
    torch bits or None), corpora in the order met and budgets in order."""
    out = []
    for name in dict.fromkeys(r["corpus"] for r in results):
        here = [r for r in results if r["corpus"] == name]
        # "rnnpipe default" or "rnnpipe default, 2 threads" (--threads)
        ours = {r["budget"]: r["bits"] for r in here if r["label"].split(",")[0] == "rnnpipe default"}
        for budget in sorted(ours):
            theirs = [r["bits"] for r in here if r["budget"] == budget and r["label"].startswith("torch")]
            out.append((name, budget, ours[budget], min(theirs, default=None)))
    return out


GPT_LABEL = "gpt, nanoGPT's cpu recipe"  # bench/quality.py's GPT peer (bench/gpt.py)


def gpt_leads(results):
    """rnnpipe's default against the GPT peer, as leads() against torch:
    (corpus, budget, rnnpipe's bits, the GPT's bits) where both ran."""
    out = []
    for name in dict.fromkeys(r["corpus"] for r in results):
        here = [r for r in results if r["corpus"] == name]
        ours = {r["budget"]: r["bits"] for r in here if r["label"].split(",")[0] == "rnnpipe default"}
        gpt = {r["budget"]: r["bits"] for r in here if r["label"] == GPT_LABEL}
        out += [(name, b, ours[b], gpt[b]) for b in sorted(ours) if b in gpt]
    return out


# bench/quality.py's targets (issue 11): how far ahead of the best torch
# figure rnnpipe's default must be after each budget, in bits/char
QUALITY_LEAD = {60: 0.05, 180: 0.08}
# issue 22: how far ahead of the nanoGPT-recipe GPT, by (corpus, budget)
GPT_LEAD = {("prose", 180): 0.25}


def quality_targets(points):
    """Target rows from bench/quality.py's JSON results: the lead over the
    best torch figure at each budget, and that the default keeps improving
    from one budget to the next."""
    rows, by_corpus = [], {}
    for name, budget, ours, best in leads(points):
        by_corpus.setdefault(name, []).append((budget, ours, best))
    for name, measured in by_corpus.items():
        for budget, bits, best in measured:
            goal = QUALITY_LEAD.get(int(budget))
            if best is not None and goal is not None:
                lead = best - bits
                rows.append(f"| time to quality, {name}, {budget:g} s: rnnpipe default ahead of the best torch by "
                            f"| {lead:+.3f} | >= {goal} | {'yes' if lead >= goal else 'NO'} |")  # fmt: skip
        ours = {budget: bits for budget, bits, _ in measured}
        budgets = sorted(ours)
        if len(budgets) > 1:
            better = all(ours[b] < ours[a] for a, b in itertools.pairwise(budgets))
            curve = ", ".join(f"{ours[b]:.3f}" for b in budgets)
            seconds = ", ".join(f"{b:g}" for b in budgets)
            rows.append(f"| time to quality, {name}: rnnpipe default improves at each longer budget ({seconds} s) "
                        f"| {curve} | each lower | {'yes' if better else 'NO'} |")  # fmt: skip
    for name, budget, bits, gpt in gpt_leads(points):
        goal = GPT_LEAD.get((name, int(budget)))
        if goal is not None:
            lead = gpt - bits
            rows.append(f"| time to quality, {name}, {budget:g} s: rnnpipe default ahead of the nanoGPT-recipe GPT by "
                        f"| {lead:+.3f} | >= {goal} | {'yes' if lead >= goal else 'NO'} |")  # fmt: skip
    return rows
