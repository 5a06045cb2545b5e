"""Long reliability runs: the real `rnnpipe` executable killed, interrupted,
raced, starved of disk and fed hostile model files, many times over.

Each run counts the cases it tried and the cases that lost data or crashed
(the goal is zero); the figures go into docs/reliability.md.

    .venv/bin/python bench/crash.py                    # everything, a few minutes on two cores
    .venv/bin/python bench/crash.py --kills 20 --fuzz 500 --bursts 5 --races 5 --disk 5   # a quick look
    .venv/bin/python bench/crash.py --only kills --kills 1000 --seed 7
    .venv/bin/python bench/crash.py --only text --text 1   # hostile training text, about 2 minutes

The loops themselves are tests/crash_loops.py and tests/hostile_files.py
(beside the tests, which import no bench/ code): tests/test_reliability.py
runs each of them a few times in CI, and `pytest -m slow` runs this whole
script. Only the hostile training text, which is timed, is this script's own.

kills   SIGKILL `rnnpipe train` (endless piped input, a save after every
        iteration) at a random moment, hundreds of times, resuming the same
        model each time. After every kill the file must load, be at least as
        far trained as before, and no more than one temp file may lie beside it
        (the next run removes it). Kills that left a temp file landed inside a
        save.
bursts  a burst of 2-20 SIGINTs (1-3 ms apart) into a training run that saves
        after every iteration: exit 130, no traceback, the model loads, no temp
        file or lock file left.
races   two `rnnpipe train` runs started together on the same model, each with
        a character of its own: every run that reports success has its
        character in the final model (no silent lost update); a refused run
        says why and names the other's pid.
disk    a save into a file size limit (RLIMIT_FSIZE) at a random size below the
        model's: exit 1, one error line, the old model byte for byte, no temp
        file.
text    (only with --text N) hostile training text, each trained on N times: /bin/ls, NUL bytes and
        CRLF, one 5 MB line (all of it), CJK text with 5000 distinct
        characters (10 s, tiny and full-size models): exit 0, no traceback;
        seconds, peak RSS (os.wait4) and vocabulary recorded.
fuzz    corrupted model files (truncations, bit flips, byte edits, random
        bytes, valid msgpack with wrong types, NaN weights, size bombs, other
        versions) through the command line: exit 1 and one line
        `rnnpipe: error: ...`, never an internal error. Most run in-process
        through cli.main; every 20th runs the real executable (info, sample,
        eval or train in turn; train must leave the file as it was).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from crash_loops import TINY, Tally, burst_run, disk_run, kill_run, race_run, run_measured, training_text  # noqa: E402
from hostile_files import fuzz_run  # noqa: E402

from rnnpipe import Model  # noqa: E402

# -- bad text ------------------------------------------------------------------------------


def text_cases(text):
    """(name, bytes, extra options) of hostile training text."""
    rng = random.Random(0)
    cjk = [chr(0x4E00 + i) for i in range(5000)]
    cjk_text = "".join(rng.choice(cjk) for _ in range(200_000)).encode()
    return [
        ("binary (/bin/ls)", Path("/bin/ls").read_bytes(), ["--binary"]),
        ("NUL bytes and CRLF", b"one\x00two\r\nthree\x00\r\n" * 2000, ["--binary"]),
        ("one 5 MB line", (text.replace("\n", " ").encode("ascii", "ignore") * 40)[:5_000_000], []),
        ("CJK, 5000 distinct characters, tiny model", cjk_text, ["--max-time", "10"]),
        (
            "CJK, 5000 distinct characters, GRU 192 units",
            cjk_text,
            ["--cell", "gru", "--hidden", "192", "--seq-length", "50", "--batch-size", "32", "--max-time", "10"],
        ),
        (
            "CJK, 5000 distinct characters, LSTM 256 units",
            cjk_text,
            ["--cell", "lstm", "--hidden", "256", "--seq-length", "50", "--batch-size", "32", "--max-time", "10"],
        ),
    ]


def text_run(folder, repeat=1, seed=0):
    """Each hostile text once (repeat times): exit 0, no traceback; the
    seconds, peak RSS and vocabulary are recorded."""
    folder = Path(folder)
    t = Tally("text")
    t.notes["runs"] = []
    for _ in range(repeat):
        for i, (name, data, extra) in enumerate(text_cases(training_text())):
            model = folder / f"text{i}.rnn"
            with contextlib.suppress(FileNotFoundError):
                model.unlink()
            arch = [] if "--cell" in extra else TINY
            start = time.monotonic()
            status, err, peak = run_measured(["train", "-m", model, *arch, *extra], data, timeout=600)
            seconds = time.monotonic() - start
            t.tried += 1
            if status != 0 or "Traceback" in err:
                t.fail(f"{name}: exit {status}: {err[-300:]}")
                continue
            m = Model.load(model)
            t.notes["runs"].append(
                {
                    "input": name,
                    "bytes": len(data),
                    "seconds": round(seconds, 1),
                    "peak_rss_mib": round(peak),
                    "vocabulary": len(m.vocab),
                    "chars_seen": m.chars_seen,
                    "file_bytes": model.stat().st_size,
                    "stderr": err.strip().splitlines()[-1][:200] if err.strip() else "",
                }
            )
    return t


# -- all ---------------------------------------------------------------------------------


RUNS = {
    "kills": kill_run,
    "bursts": burst_run,
    "races": race_run,
    "disk": disk_run,
    "fuzz": fuzz_run,
    "text": text_run,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--bursts", type=int, default=50)
    ap.add_argument("--races", type=int, default=30)
    ap.add_argument("--disk", type=int, default=40)
    ap.add_argument("--fuzz", type=int, default=5000)
    ap.add_argument(
        "--text", type=int, default=0, help="times to run each hostile training text (default 0: about 2 minutes each)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=sorted(RUNS), action="append", help="run only these (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="also write the tallies as JSON")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rnnpipe-crash-") as folder:
        for name, run in RUNS.items():
            if args.only and name not in args.only or getattr(args, name) <= 0:
                continue
            start = time.monotonic()
            t = run(folder, getattr(args, name), seed=args.seed)
            results[name] = {**t.as_dict(), "seconds": round(time.monotonic() - start, 1)}
            print(json.dumps({name: results[name]}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    failed = sum(r["failed"] for r in results.values())
    print(f"{sum(r['tried'] for r in results.values())} cases, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
