"""How many BLAS threads rnnpipe should train with: chars/s of a config with
1 and with 2 threads, on a quiet machine, with another process keeping one
core busy, and with two trainers at once (the slower one's rate),
interleaved so that drifts in the machine's load hit both.

    .venv/bin/python bench/threads.py [--config default|seed|lstm256] [--seconds 8] [--repeat 2]

Reads ../shared/data/tinyshakespeare.txt (its first 300k characters).
The result is why `--threads` defaults to 1 (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from rnnpipe import SEED, Config, Model

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
CONFIGS = {
    "default": Config(),
    "seed": SEED,
    "lstm256": Config(cell="lstm", hidden=256, batch_size=32, seq_length=50, lr=4e-3),
}


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def chars_per_sec(config, text, threads, seconds):
    with threadpool_limits(threads, user_api="blas"):
        model = Model.new(config, text)
        return model.train(text, max_time=seconds).chars_per_sec


def pair(config, text, threads, seconds):
    """Two trainers at once, both with `threads` threads (two models trained
    side by side, or rnnpipe beside any other BLAS program): the slower one's rate."""
    with multiprocessing.Pool(2) as pool:
        rates = pool.starmap(chars_per_sec, [(config, text, threads, seconds)] * 2)
    return min(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=CONFIGS, default="default")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    text = TEXT.read_text()[:300_000]
    for _ in range(args.repeat):
        rates = {t: pair(CONFIGS[args.config], text, t, args.seconds) for t in (1, 2)}
        print(
            f"{args.config} two trainers : 1 thread {rates[1]:8,.0f} chars/s, 2 threads {rates[2]:8,.0f} chars/s, "
            f"2/1 = {rates[2] / rates[1]:.3f}",
            flush=True,
        )
        for busy in (False, True):
            hog = None
            if busy:
                hog = multiprocessing.Process(target=spin, args=(4 * args.seconds + 10,))
                hog.start()
            rates = {t: chars_per_sec(CONFIGS[args.config], text, t, args.seconds) for t in (1, 2)}
            if hog is not None:
                hog.terminate()
                hog.join()
            where = "one core busy" if busy else "quiet        "
            print(
                f"{args.config} {where}: 1 thread {rates[1]:8,.0f} chars/s, 2 threads {rates[2]:8,.0f} chars/s, "
                f"2/1 = {rates[2] / rates[1]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
