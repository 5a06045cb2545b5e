"""The Python API against the command line: training chars/s of the README's
"From Python" example and of the same configuration through `rnnpipe train`,
for the same time budget (issue 19: the API within 10% of the CLI).

    .venv/bin/python bench/api_vs_cli.py                    # 20 s each, 2 repeats, about 2 minutes
    .venv/bin/python bench/api_vs_cli.py --seconds 10 --repeat 3 --json /tmp/api_vs_cli.json

The API run is the README's example itself, read from README.md: its lines
up to the `model.train(...)` call (an LSTM of 256 units on
examples/shakespeare.txt, progress through Display), with `max_time=60`
replaced by the budget; it runs in a fresh `python -c` in the repository
root, as a user's script would. The CLI run is `rnnpipe train -m M --cell lstm
--hidden 256 --max-time T examples/shakespeare.txt -q` on a new model file,
then `rnnpipe info -m M --json` for its chars_seen. Both clocks start when
the text arrives and stop after the first update past the budget, so each
side's rate is chars_seen / budget (the API's own Progress.chars_per_sec is
printed beside it as a check). The API runs twice per repeat: as the
example is (threads=1, the default since issue 19, as on the command line),
and for reference with threads=2, how the API used to run (numpy's default,
all cores). Order within each repeat: API, CLI, API threads=2, so that drifts
in the machine's load hit all three.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_script = Path(sys.executable).parent / "rnnpipe"
RNNPIPE = [str(_script)] if _script.exists() else [sys.executable, "-m", "rnnpipe"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def readme_example():
    """The README's "From Python" code, up to and including its train call."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    lines = code.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("model.train("))
    return "\n".join(lines[: end + 1])


def api_script(seconds, threads):
    code = readme_example()
    if "max_time=60" not in code or 'cell="lstm", hidden=256' not in code:
        raise SystemExit("the README's example changed: update bench/api_vs_cli.py (and the CLI side)")
    extra = "" if threads == 1 else f", threads={threads}"
    code = code.replace("max_time=60", f"max_time={seconds}{extra}").replace("model.train(", "_end = model.train(")
    return code + (
        "\nimport json\n"
        "print(json.dumps({'chars_seen': model.chars_seen, 'elapsed': _end.elapsed,"
        " 'chars_per_sec': _end.chars_per_sec}))\n"
    )


def run_api(seconds, threads):
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", api_script(seconds, threads)], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True)  # fmt: skip
    wall = time.monotonic() - start
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"side": "api", "threads": threads, "wall": wall, **res}


def run_cli(seconds, folder, i):
    model = str(Path(folder) / f"cli{i}.msgpack")
    start = time.monotonic()
    subprocess.run([*RNNPIPE, "train", "-m", model, "--cell", "lstm", "--hidden", "256", "--max-time", str(seconds),
                    "examples/shakespeare.txt", "-q"], cwd=ROOT, env=ENV, check=True)  # fmt: skip
    wall = time.monotonic() - start
    info = subprocess.run([*RNNPIPE, "info", "-m", model, "--json"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          check=True)  # fmt: skip
    data = json.loads(info.stdout)
    return {"side": "cli", "threads": 1, "wall": wall, "chars_seen": data["chars_seen"], "config": data["config"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="the training budget of every run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="save the results here")
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.repeat):
            for label, threads in (("api", 1), ("cli", 1), ("api", 2)):
                res = run_cli(args.seconds, folder, r) if label == "cli" else run_api(args.seconds, threads)
                res["repeat"] = r + 1
                res["rate"] = res["chars_seen"] / args.seconds
                runs.append(res)
                check = f", its own {res['chars_per_sec']:,.0f}" if "chars_per_sec" in res else ""
                print(f"  repeat {r + 1} {label} threads={res['threads']}: {res['rate']:,.0f} chars/s{check}",
                      flush=True)  # fmt: skip
    cli_config = next(r["config"] for r in runs if r["side"] == "cli")
    print(f"CLI model's config: {cli_config}")
    print()
    print("| repeat | run | chars_seen | chars/s (chars_seen / budget) | Progress.chars_per_sec | wall s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for res in runs:
        name = "CLI" if res["side"] == "cli" else f"API threads={res['threads']}"
        own = f"{res['chars_per_sec']:,.0f}" if "chars_per_sec" in res else ""
        print(f"| {res['repeat']} | {name} | {res['chars_seen']:,} | {res['rate']:,.0f} | {own} | {res['wall']:.1f} |")

    def mean(side, threads):
        return statistics.mean(r["rate"] for r in runs if r["side"] == side and r["threads"] == threads)

    cli, api1, api2 = mean("cli", 1), mean("api", 1), mean("api", 2)
    pairs = [a["rate"] / c["rate"] for a, c in zip(runs[0::3], runs[1::3], strict=True)]
    print()
    print("| | mean chars/s | / CLI | per repeat |")
    print("| --- | ---: | ---: | --- |")
    print(f"| CLI | {cli:,.0f} | 1.00 | |")
    print(f"| API threads=1 (the README's example) | {api1:,.0f} | {api1 / cli:.2f} | "
          f"{', '.join(f'{p:.2f}' for p in pairs)} |")  # fmt: skip
    pairs2 = [a["rate"] / c["rate"] for a, c in zip(runs[2::3], runs[1::3], strict=True)]
    print(f"| API threads=2 (before issue 19) | {api2:,.0f} | {api2 / cli:.2f} | "
          f"{', '.join(f'{p:.2f}' for p in pairs2)} |")  # fmt: skip
    print(f"target: API within 10% of the CLI: {'met' if abs(api1 / cli - 1) <= 0.10 else 'NOT met'}")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(
            json.dumps({"seconds": args.seconds, "runs": runs, "load_after": os.getloadavg()}, indent=1)
        )


if __name__ == "__main__":
    main()
