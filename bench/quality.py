"""Time to quality: held-out bits per character after a wall-clock budget,
rnnpipe against PyTorch, side by side on four kinds of text.

    .venv/bin/python bench/quality.py                                 # 60 and 180 s, four corpora
    .venv/bin/python bench/quality.py --budgets 60 180 600 --corpora prose
    .venv/bin/python bench/quality.py --budgets 60 --no-torch \\
        --rnnpipe default 'lr=0.01' 'cell=lstm,hidden=256,lr=0.008'  # a sweep of configurations
    .venv/bin/python bench/quality.py --plot docs/quality.png         # and the picture
    .venv/bin/python bench/quality.py --corpora prose --budgets 20 --rnnpipe --torch-inputs  # the GPT alone
    .venv/bin/python bench/quality.py --print-corpus chinese > song-ci.txt   # a corpus as the contestants get it

Corpora, each cut to its first --chars characters, the first 90% trained on
and the last 10% held out, scored as one continuous stream by both:
- prose: tinyshakespeare (../shared/data, see its README);
- code: the Python standard library's own .py files (not its tests), in
  sorted path order, concatenated;
- cyrillic: Debian's fortunes-ru (`apt-get install fortunes-ru`), Russian
  quotations, three quarters of the characters outside ASCII;
- chinese: a large alphabet, where the output layer dominates: Song dynasty
  ci (lyrics) from the chinese-poetry repository, 5,000 of them, in
  bench/data/chinese-poetry (see its README), each as its tune's name, its
  author and its lines, one a line, then a blank line: 449,590 characters,
  4,445 distinct (so it is used whole at the default --chars).

Contestants: rnnpipe configurations given as Config fields over the default
("default" alone is rnnpipe's default: the model the command line makes for
the text and the budget, plan.choose, unless the fields name cell, hidden,
layers or dropout), each trained once per budget with
`Model.train(text, max_time=budget)` (so its learning-rate schedule knows the
budget); and PyTorch at the best configuration found by bench/run.py's sweep
(lstm 256, batch 32, seq 50, Adam 4e-3, one-hot input) and with a learned
nn.Embedding input, each trained once for the longest budget and scored at
every budget on the way with its clock stopped while it is scored; and a
small GPT trained with nanoGPT's CPU recipe (bench/gpt.py), once per budget
as its cosine is spread over the budget, its held-out text scored with a
sliding window (every character predicted from at least 32 before it).
Each runs in its own process, one after another, rnnpipe with its default
one BLAS thread (--threads to change it) and torch with its own default
threads (one under --clock cpu).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # how the results are judged, which the tests check

from measures import GPT_LABEL, gpt_leads, leads  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
FORTUNES_RU = Path("/usr/share/games/fortunes/ru")
SONG_CI = HERE / "data" / "chinese-poetry"
TORCH_BEST = dict(cell="lstm", hidden=256, seq_length=50, batch_size=32, lr=4e-3)


def corpus(name, chars):
    """The text of a corpus, its first `chars` characters."""
    if name == "prose":
        text = (SHARED / "tinyshakespeare.txt").read_text(encoding="utf-8")
    elif name == "code":
        lib = Path(sysconfig.get_paths()["stdlib"])
        parts = []
        for path in sorted(lib.rglob("*.py")):
            rel = path.relative_to(lib).parts
            if rel[0] in ("test", "site-packages", "idlelib", "lib2to3") or "tests" in rel:
                continue
            try:
                parts.append(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, OSError):
                continue
            if sum(map(len, parts)) > chars:
                break
        text = "".join(parts)
    elif name == "cyrillic":
        if not FORTUNES_RU.is_dir():
            raise SystemExit("the cyrillic corpus is Debian's fortunes-ru: apt-get install fortunes-ru")
        files = sorted(p for p in FORTUNES_RU.iterdir() if p.is_file() and not p.suffix and not p.is_symlink())
        text = "".join(p.read_text(encoding="utf-8") for p in files)
    elif name == "chinese":
        text = song_ci()
    else:
        raise SystemExit(f"unknown corpus {name!r}")
    return text[:chars]


def song_ci():
    """The chinese corpus: bench/data/chinese-poetry's ci.song.N.json files
    in the order of N, each ci in its file's order, as plain text."""
    out = []
    for path in sorted(SONG_CI.glob("ci.song.*.json"), key=lambda p: int(p.name.split(".")[2])):
        for ci in json.loads(path.read_text(encoding="utf-8")):
            out.append(ci["rhythmic"] + "\n" + ci["author"] + "\n" + "\n".join(ci["paragraphs"]) + "\n\n")
    return "".join(out)


def split(text):
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


RUN_FIELDS = ("valid_fraction", "keep_best")  # train.Options fields a contestant may set too


def parse_config(spec):
    """'default' or 'cell=lstm,hidden=256,lr=0.008' -> dict of Config fields
    (and of RUN_FIELDS: 'valid_fraction=0' holds nothing out)."""
    if spec == "default":
        return {}
    out = {}
    for item in spec.split(","):
        k, v = item.split("=", 1)
        v = {"true": True, "false": False}.get(v.lower(), v)
        for cast in (int, float) if isinstance(v, str) else ():
            try:
                v = cast(v)
                break
            except ValueError:
                continue
        out[k.strip().replace("-", "_")] = v
    return out


# -- the contestants, each in a child process -----------------------------------


def use_clock(spec):
    """--clock cpu: every budget in seconds of this process's CPU time, so
    that figures taken while other work shares the machine compare as they
    would on a quiet one (one thread each, so CPU seconds are its seconds)."""
    if spec.get("clock") == "cpu":
        time.monotonic = time.process_time  # the training loop's clock, in this child process only


def child_rnnpipe(spec):
    from threadpoolctl import threadpool_limits

    import rnnpipe

    use_clock(spec)

    train, held = split(corpus(spec["corpus"], spec["chars"]))
    fields = dict(spec["config"])
    options = {k: fields.pop(k) for k in RUN_FIELDS if k in fields}  # the run's, not the model's
    from rnnpipe import plan

    # the model the command line makes for this text and time
    fields = {**plan.choose(len(train), plan.Options(max_time=spec["budget"]), fields)[0], **fields}
    config = rnnpipe.Config(**fields)
    model = rnnpipe.Model.new(config, train)
    with threadpool_limits(spec.get("threads", 1)):
        progress = model.train(train, max_time=spec["budget"], schedule=spec.get("schedule", "cosine"), **options)
        ev = model.evaluate(held)
    # kept: the run ended with an earlier model than its last, the best on its own held-out text (holdout.py)
    return {"bits": ev.bits_per_char, "chars_per_sec": progress.chars_per_sec, "iterations": model.iterations,
            "seconds": progress.elapsed, "epochs": progress.epoch, "updates": progress.iteration,
            "kept": progress.kept, "chosen": {k: getattr(config, k) for k in plan.CHOSEN_BY}}  # fmt: skip


def torch_start(spec):
    """What every torch contestant does first: its seed, its clock and threads,
    and the corpus split and encoded (chars, train_ix, held_ix)."""
    import torch
    import torch_rnn

    torch.manual_seed(0)
    use_clock(spec)
    if spec.get("clock") == "cpu":
        torch.set_num_threads(1)
    train, held = split(corpus(spec["corpus"], spec["chars"]))
    return torch_rnn.encode(train, held)


def child_torch(spec):
    import torch
    import torch_rnn

    from rnnpipe.train import batches

    chars, train_ix, held_ix = torch_start(spec)
    c = spec["config"]
    if spec["input"] == "embedding":
        model = Embedded(c["cell"], len(chars), c["hidden"])
    else:
        model = torch_rnn.CharRNN(c["cell"], len(chars), c["hidden"])
    opt = torch.optim.Adam(model.parameters(), lr=c["lr"], betas=(0.9, 0.999), eps=1e-8)
    budgets = sorted(spec["budgets"])
    out, trained, n_chars, scoring = [], 0.0, 0, 0.0
    start = time.monotonic()
    while budgets:
        state = None
        for X, Y in batches(train_ix, c["seq_length"], c["batch_size"]):
            state = torch_rnn.adam_update(model, opt, X, Y, state)
            n_chars += X.size
            trained = time.monotonic() - start - scoring
            if trained >= budgets[0]:
                paused = time.monotonic()
                model.eval()
                nats, scored = torch_rnn.loss_sum(model, held_ix)
                model.train()
                out.append({"budget": budgets.pop(0), "bits": nats / scored / math.log(2),
                            "chars_per_sec": n_chars / trained})  # fmt: skip
                scoring += time.monotonic() - paused
                if not budgets:
                    break
    return {"points": out, "threads": torch.get_num_threads()}


def child_gpt(spec):
    """The GPT peer (bench/gpt.py), trained for one budget: its learning
    rate's cosine is spread over that budget, so each budget is its own run."""
    import gpt
    import torch

    chars, train_ix, held_ix = torch_start(spec)
    model = gpt.GPT(len(chars))
    iterations, seconds = gpt.train(model, torch.from_numpy(train_ix), spec["budget"], clock=time.monotonic)
    nats, scored = gpt.loss_sum(model, torch.from_numpy(held_ix))
    return {"bits": nats / scored / math.log(2), "chars_per_sec": iterations * gpt.BATCH * gpt.BLOCK / seconds,
            "iterations": iterations, "seconds": seconds, "threads": torch.get_num_threads()}  # fmt: skip


def _embedded_class():
    import torch_rnn
    from torch import nn

    class Embedded(nn.Module):
        """The same network with a learned nn.Embedding as its input layer
        (width = hidden), as practitioners often write it."""

        def __init__(self, cell, vocab_size, hidden):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, hidden)
            self.rnn = torch_rnn.CELLS[cell](hidden, hidden)
            self.head = nn.Linear(hidden, vocab_size)

        def forward(self, X, state):
            hs, state = self.rnn(self.embed(X), state)
            return self.head(hs.reshape(-1, hs.shape[-1])), state

    return Embedded


def Embedded(*args):  # noqa: N802 (a class, built on first use so importing this file needs no torch)
    return _embedded_class()(*args)


def run_child(spec, timeout):
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------


def plot(results, path, clock="wall"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(r["corpus"] for r in results))
    fig, axes = plt.subplots(1, len(corpora), figsize=(5 * len(corpora), 4), squeeze=False)
    for ax, name in zip(axes[0], corpora, strict=True):
        rows = [r for r in results if r["corpus"] == name]
        for label in dict.fromkeys(r["label"] for r in rows):
            pts = sorted((r["budget"], r["bits"]) for r in rows if r["label"] == label)
            style = "o-" if label.startswith("rnnpipe") else "^:" if label == GPT_LABEL else "s--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        ax.set_title(name)
        ax.set_xlabel("CPU seconds of training, one thread" if clock == "cpu" else "wall-clock seconds of training")
        ax.set_ylabel("held-out bits per character")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 180], help="seconds (default 60 180)")
    parser.add_argument("--corpora", nargs="+", default=["prose", "code", "cyrillic", "chinese"])
    parser.add_argument("--chars", type=int, default=1_115_394, help="characters of each corpus (tinyshakespeare's)")
    parser.add_argument("--rnnpipe", nargs="*", default=["default"], metavar="CONFIG",
                        help="rnnpipe configurations: 'default' or Config fields: 'cell=lstm,lr=0.008', and "
                        f"{' or '.join(RUN_FIELDS)} ('valid_fraction=0': nothing held out) (none: no "
                        "rnnpipe)")  # fmt: skip
    parser.add_argument("--schedule", default="cosine", help="rnnpipe's --schedule (default cosine)")
    parser.add_argument("--threads", type=int, default=1,
                        help="rnnpipe's BLAS threads (default 1, its own default; torch keeps its default threads "
                        "under the wall clock)")  # fmt: skip
    parser.add_argument("--no-torch", action="store_true", help="no torch contestant (the GPT included)")
    parser.add_argument("--no-gpt", action="store_true", help="no GPT peer")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="budgets in wall-clock seconds, or in CPU seconds with one thread each (cpu: for a "
                        "machine that is not quiet)")  # fmt: skip
    parser.add_argument("--torch-inputs", nargs="*", default=["one-hot", "embedding"],
                        help="the torch lstm's inputs (none: no torch lstm)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write every result to FILE")
    parser.add_argument("--plot", metavar="PNG", help="draw held-out bits/char against seconds to PNG")
    parser.add_argument("--print-corpus", metavar="NAME", help="write corpus NAME's text (cut to --chars) and exit")
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = {"rnnpipe": child_rnnpipe, "torch": child_torch, "gpt": child_gpt}[spec["kind"]](spec)
        print(json.dumps(result))
        return
    if args.print_corpus:
        sys.stdout.write(corpus(args.print_corpus, args.chars))
        return

    results = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for name in args.corpora:
        text = corpus(name, args.chars)
        print(f"\n{name}: {len(text):,} characters, {len(set(text))} distinct", flush=True)
        for cfg in args.rnnpipe:
            label = "rnnpipe " + cfg + (f", {args.threads} threads" if args.threads != 1 else "")
            for budget in args.budgets:
                spec = {"kind": "rnnpipe", "corpus": name, "chars": args.chars, "config": parse_config(cfg),
                        "budget": budget, "schedule": args.schedule, "clock": args.clock,
                        "threads": args.threads}  # fmt: skip
                r = run_child(spec, timeout=budget * 3 + 600)
                results.append({"corpus": name, "label": label, "budget": budget, **r})
                print(f"  {label:40s} {budget:5.0f} s  {r['bits']:.3f} bits/char  {r['chars_per_sec']:8.0f} chars/s "
                      f"{r['epochs']} pass(es)", flush=True)  # fmt: skip
        if not args.no_torch:
            for kind in args.torch_inputs:
                label = f"torch lstm 256 {kind}"
                spec = {"kind": "torch", "input": kind, "corpus": name, "chars": args.chars, "config": TORCH_BEST,
                        "budgets": args.budgets, "clock": args.clock}  # fmt: skip
                r = run_child(spec, timeout=max(args.budgets) * 3 + 600)
                for p in r["points"]:
                    results.append({"corpus": name, "label": label, "threads": r["threads"], **p})
                    print(f"  {label:40s} {p['budget']:5.0f} s  {p['bits']:.3f} bits/char  "
                          f"{p['chars_per_sec']:8.0f} chars/s ({r['threads']} threads)", flush=True)  # fmt: skip
        if not args.no_torch and not args.no_gpt:
            for budget in args.budgets:
                spec = {"kind": "gpt", "corpus": name, "chars": args.chars, "budget": budget, "clock": args.clock}
                r = run_child(spec, timeout=budget * 3 + 600)
                results.append({"corpus": name, "label": GPT_LABEL, "budget": budget, **r})
                print(f"  {GPT_LABEL:40s} {budget:5.0f} s  {r['bits']:.3f} bits/char  {r['chars_per_sec']:8.0f} "
                      f"chars/s ({r['threads']} threads, {r['iterations']:,} iterations)", flush=True)  # fmt: skip
    print(f"\nload average at end: {os.getloadavg()}")
    for name, budget, ours, best in leads(results):
        if best is not None:
            print(f"{name:9s} {budget:5.0f} s: rnnpipe default {ours:.3f}, best torch {best:.3f}: "
                  f"rnnpipe better by {best - ours:+.3f} bits/char")  # fmt: skip
    for name, budget, ours, theirs in gpt_leads(results):
        print(f"{name:9s} {budget:5.0f} s: rnnpipe default {ours:.3f}, the GPT {theirs:.3f}: "
              f"rnnpipe better by {theirs - ours:+.3f} bits/char")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot, args.clock)


if __name__ == "__main__":
    main()
