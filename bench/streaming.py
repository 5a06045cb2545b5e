"""Streaming latency: seconds from a line's arrival in a pipe to the first
update trained on it (`tail -f log | rnnpipe train`).

    .venv/bin/python bench/streaming.py                      # 20 s per cadence, about 3 minutes
    .venv/bin/python bench/streaming.py --seconds 8 --json /tmp/streaming.json

A writer thread writes 100-byte lines into a real pipe (os.pipe) for
--seconds: one every 0.3 s, one every 0.03 s, and as fast as the pipe takes
them. The lines are ../shared/data/kafka.txt as ASCII, newlines folded to
spaces, cut into 99 characters plus a newline, so that a line's characters
are [100 i, 100 i + 100) of the stream. The write time of each line is taken
when os.write returns: the line is in the pipe then (at full speed a write
waits while the pipe is full, so the wait counts as the writer's, not as
latency).

The reading side is what `rnnpipe train` runs, through the Python API: a
fresh default model, `Model.train(TextReader([Source(fd)]).blocks())`, with a
callback called after every update (report_every=0). After each update the
callback notes the time and model.resume, the position an interruption would
continue from: the offset of the current block in the stream, its length
and the chunks of it trained so far. A block of n characters is cut into B
contiguous streams of L characters (train.layout), trained seq_length
characters of every stream per update, so after k chunks character
`offset + b L + j` of the block has been trained on (as an input, or as the
last target) exactly when j <= min(k seq_length, L). That gives, for every
character of the stream, the time of the first update that trained on it; a
line's latency is the earliest of its characters' (the first update trained
on it) minus its write time, and the latest of them gives when all of it was
trained. The writer closes the pipe after --seconds and training goes on to
the end of the input, so every line gets a latency; "trained before the
writer finished" counts the lines first trained on before the writer closed
the pipe.

Then the real command line for the 0.3 s cadence: `rnnpipe train -m M
--save-every 1` reading its stdin from this process, and the times (from the
first line written) at which the model file was saved (a new inode: saves are
atomic renames) and at which its status lines came (every 5 s, stderr not
being a terminal), to show that training happens while the writer is still
writing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnpipe import Config, Model  # noqa: E402
from rnnpipe.reader import Source, TextReader  # noqa: E402
from rnnpipe.train import LATENCY, layout  # noqa: E402

LINE = 100
_script = Path(sys.executable).parent / "rnnpipe"
RNNPIPE = [str(_script)] if _script.exists() else [sys.executable, "-m", "rnnpipe"]


def lines_of(path):
    """An endless supply of LINE-byte lines of the text, ASCII only so that
    bytes and characters count the same."""
    text = path.read_text(encoding="utf-8").encode("ascii", "replace").decode("ascii")
    text = " ".join(text.split())
    body = LINE - 1
    lines = [text[i : i + body].ljust(body) + "\n" for i in range(0, len(text) - body, body)]
    i = 0
    while True:
        yield lines[i % len(lines)].encode("ascii")
        i += 1


class Writer(threading.Thread):
    """Writes lines into fd every `every` seconds (0: as fast as it is
    taken) for `seconds`, then closes it; `times[i]` is when line i was in."""

    def __init__(self, fd, lines, every, seconds, close=os.close):
        super().__init__(daemon=True)
        self.fd, self.lines, self.every, self.seconds, self.close = fd, lines, every, seconds, close
        self.times, self.began, self.finished = [], None, None

    def run(self):
        self.began = time.monotonic()
        try:
            while True:
                n = len(self.times)
                due = self.began + n * self.every
                if due - self.began >= self.seconds:
                    break
                # absolute due times: a late wake-up does not push back every later line
                if self.every and due > time.monotonic():
                    time.sleep(due - time.monotonic())
                if not self.every and time.monotonic() - self.began >= self.seconds:
                    break
                line = next(self.lines)
                written = 0
                while written < len(line):
                    written += os.write(self.fd, line[written:])
                self.times.append(time.monotonic())
        finally:
            self.finished = time.monotonic()
            self.close(self.fd)


def first_trained(records, total, config):
    """Per character of the stream, the time of the first update that trained
    on it (inf: none did), from the (time, offset, chunk, block) noted after
    every update (and the streams it had, to check the layout)."""
    first = np.full(total + 1, np.inf)
    blocks = {}
    for t, offset, chunk, n, streams in records:
        blocks.setdefault((offset, n), {})[chunk] = t
        # the layout below must be the one the run cut the block into
        assert streams == layout(n, config.seq_length, config.batch_size)[0], (offset, n, streams)
    S = config.seq_length
    for (offset, n), times in blocks.items():
        B, L = layout(n, S, config.batch_size)
        end = min(offset + B * L, total)
        rel = np.arange(end - offset + 1)
        b = np.minimum(rel // L, B - 1)
        within = rel - b * L
        chunk = np.maximum(1, -(-within // S))  # the chunk whose targets reach it (the first: its input)
        last = max(times)
        at = np.array([times.get(k, np.inf) for k in range(last + 1)])
        done = at[np.minimum(chunk, last)]
        done[chunk > last] = np.inf  # an interrupted block (not expected here)
        first[offset : end + 1] = np.minimum(first[offset : end + 1], done)
    return first


def api_run(every, seconds, lines):
    """One cadence through Model.train on a real pipe: per-line latencies."""
    config = Config()
    model = Model.new(config)
    r, w = os.pipe()
    records = []

    def noted(p):
        pos = model.resume
        if p.kind == "progress" and pos is not None:
            records.append((time.monotonic(), pos.offset, pos.chunk, pos.block, len(pos.state[0][0])))

    writer = Writer(w, lines, every, seconds)
    writer.start()
    reader = TextReader([Source("<pipe>", fd=r)])
    model.train(reader.blocks(), callback=noted, report_every=0)
    writer.join()
    os.close(r)
    n = len(writer.times)
    first = first_trained(records, n * LINE, config)
    per_line = first[: n * LINE].reshape(n, LINE)
    written = np.array(writer.times)
    latency = per_line.min(axis=1) - written
    whole = per_line.max(axis=1) - written
    trained = np.isfinite(latency)
    return {
        "every": every,
        "lines": n,
        "chars_per_sec_written": n * LINE / (writer.finished - writer.began),
        "writer_seconds": writer.finished - writer.began,
        "trained_before_writer_finished": int((per_line.min(axis=1) < writer.finished).sum()),
        "untrained": int((~trained).sum()),
        "median": float(np.median(latency[trained])),
        "p90": float(np.percentile(latency[trained], 90)),
        "max": float(latency[trained].max()),
        "whole_median": float(np.median(whole[trained])),
        "whole_p90": float(np.percentile(whole[trained], 90)),
        "updates": len(records),
        "chars_trained": model.chars_seen,
    }


def cli_run(every, seconds, lines, folder):
    """The command line on the same kind of pipe: when the model file is
    saved (--save-every 1) and when status lines come, from the first line."""
    path = Path(folder) / "stream.msgpack"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([*RNNPIPE, "train", "-m", str(path), "--save-every", "1"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=False, env=env)  # fmt: skip
    status = []

    def read_stderr():
        for line in proc.stderr:
            status.append((time.monotonic(), line.decode(errors="replace").rstrip()))

    saves, watching = [], threading.Event()

    def watch():
        seen = None
        while not watching.is_set():
            try:
                st = os.stat(path)
                key = (st.st_ino, st.st_mtime_ns)
                if key != seen:
                    seen = key
                    saves.append(time.monotonic())
            except FileNotFoundError:
                pass
            time.sleep(0.01)

    threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=watch, daemon=True)]
    for t in threads:
        t.start()
    writer = Writer(proc.stdin.fileno(), lines, every, seconds, close=lambda fd: proc.stdin.close())
    writer.start()
    writer.join()
    rc = proc.wait()
    time.sleep(0.05)
    watching.set()
    for t in threads:
        t.join()
    t0 = writer.began
    return {
        "every": every,
        "exit": rc,
        "writer_seconds": writer.finished - t0,
        "saves": [round(t - t0, 2) for t in saves],
        "status": [(round(t - t0, 2), line) for t, line in status],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds the writer writes, per cadence")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "kafka.txt")
    parser.add_argument("--json", type=Path, help="save the results here")
    parser.add_argument("--no-cli", action="store_true", help="skip the command line run")
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"load average before: {os.getloadavg()}; train.LATENCY {LATENCY} s", flush=True)
    results = {"api": [], "cli": None}
    for every in (0.3, 0.03, 0.0):
        res = api_run(every, args.seconds, lines_of(args.data))
        results["api"].append(res)
        print(f"  every {every or 'full speed'}: {res['lines']} lines, median {res['median']:.2f} s, "
              f"{res['untrained']} never trained", flush=True)  # fmt: skip
    print()
    print("| cadence | lines written | written chars/s | first trained before the writer finished | latency median (s) "
          "| p90 (s) | max (s) | all of the line trained: median (s) | p90 (s) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results["api"]:
        cadence = f"a line every {r['every']} s" if r["every"] else "full speed"
        print(f"| {cadence} | {r['lines']:,} | {r['chars_per_sec_written']:,.0f} | "
              f"{r['trained_before_writer_finished']:,} | {r['median']:.2f} | {r['p90']:.2f} | {r['max']:.2f} | "
              f"{r['whole_median']:.2f} | {r['whole_p90']:.2f} |")  # fmt: skip
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as folder:
            cli = cli_run(0.3, args.seconds, lines_of(args.data), folder)
        results["cli"] = cli
        print()
        print(f"rnnpipe train -m M --save-every 1, a line every 0.3 s for {cli['writer_seconds']:.1f} s "
              f"(exit {cli['exit']}); seconds from the first line written:")  # fmt: skip
        during = [t for t in cli["saves"] if t < cli["writer_seconds"]]
        print(f"  model file saved at: {', '.join(f'{t:.2f}' for t in cli['saves'])}")
        print(f"  saves while the writer was writing: {len(during)}, the first at {during[0] if during else '-'} s")
        for t, line in cli["status"]:
            print(f"  {t:6.2f}  {line}")
    print(f"load average after: {os.getloadavg()}")
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
