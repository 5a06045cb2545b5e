"""CPU time of one training update, rnnpipe against PyTorch, the same chunks.

    .venv/bin/python bench/step_time.py              # lstm 256, batch 32, seq 50
    .venv/bin/python bench/step_time.py gru 192

One thread each, CPU time (time.process_time) rather than wall-clock, so that
a figure taken beside other work compares as it would on a quiet machine;
5 warm-up updates, then 55 timed. The ratio printed is torch's time over
rnnpipe's: rnnpipe's speed as a multiple of torch's.

Then the matrix products alone: an update's recurrent products (one
batch x hidden by hidden x gates product per step forward, one batch x gates
by gates x hidden per step back, and the chunk's recurrent weight gradient),
timed through numpy (its OpenBLAS) and through torch.mm (torch's MKL) on the
same arrays, and what rnnpipe's update would cost with torch's products and
everything else as it is: the most that a numpy engine, whose elementwise
work cannot get much smaller (docs/benchmarks.md), could gain without
another BLAS.
"""

import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import rnnpipe  # noqa: E402
from rnnpipe.cells import net  # noqa: E402
from rnnpipe.train import batches  # noqa: E402


def main():
    cell = sys.argv[1] if len(sys.argv) > 1 else "lstm"
    H = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    text = (HERE.parent.parent / "shared" / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:300000]
    # weight_decay 0 as torch's Adam: the same arithmetic per update
    cfg = rnnpipe.Config(cell=cell, hidden=H, seq_length=50, batch_size=32, lr=4e-3, weight_decay=0.0)
    m = rnnpipe.Model.new(cfg, text)
    chunks = list(batches(m.vocab.encode(text), 50, 32))[:60]
    with threadpool_limits(1):
        state = net.zero_state(cfg, 32)
        for X, Y in chunks[:5]:
            state = m.step(X, Y, state)
        t = time.process_time()
        for X, Y in chunks[5:]:
            state = m.step(X, Y, state)
        ours = (time.process_time() - t) / len(chunks[5:])

    import torch
    import torch_rnn

    torch.set_num_threads(1)
    tm = torch_rnn.CharRNN(cell, len(m.vocab), H)
    opt = torch.optim.Adam(tm.parameters(), lr=4e-3)

    def step(X, Y, st):
        return torch_rnn.adam_update(tm, opt, X.astype(np.int64), Y.astype(np.int64), st)

    st = None
    for X, Y in chunks[:5]:
        st = step(X, Y, st)
    t = time.process_time()
    for X, Y in chunks[5:]:
        st = step(X, Y, st)
    theirs = (time.process_time() - t) / len(chunks[5:])
    print(f"{cell} {H}: rnnpipe {ours * 1000:.1f} ms/update, torch {theirs * 1000:.1f} ms/update, "
          f"rnnpipe's speed {theirs / ours:.2f}x torch's")  # fmt: skip
    products(cell, H, ours, theirs)


def products(cell, H, ours, theirs, B=32, T=50, repeat=5):
    import torch

    G = (4 if cell == "lstm" else 3 if cell == "gru" else 1) * H
    rng = np.random.default_rng(0)
    h, WT = rng.standard_normal((B, H), np.float32), rng.standard_normal((H, G), np.float32)
    q, W = rng.standard_normal((B, G), np.float32), rng.standard_normal((G, H), np.float32)
    Q, HS = rng.standard_normal((T * B, G), np.float32), rng.standard_normal((T * B, H), np.float32)
    arrays = (h, WT, q, W, Q, HS, np.empty((B, G), np.float32), np.empty((B, H), np.float32))

    def update(mm, h, WT, q, W, Q, HS, o1, o2):
        """An update's recurrent products through mm (np.dot or torch.mm)."""
        for _ in range(T):
            mm(h, WT, out=o1)
        for _ in range(T):
            mm(q, W, out=o2)
        Q.T @ HS

    tensors = tuple(torch.from_numpy(a) for a in arrays)

    def best(f):
        f()
        times = []
        for _ in range(repeat):
            t = time.process_time()
            f()
            times.append(time.process_time() - t)
        return min(times)

    with threadpool_limits(1):
        mine = best(lambda: update(np.dot, *arrays))
    theirs_mm = best(lambda: update(torch.mm, *tensors))
    print(f"{cell} {H}: an update's recurrent products, numpy (OpenBLAS) {mine * 1000:.1f} ms, "
          f"torch.mm (MKL) {theirs_mm * 1000:.1f} ms")  # fmt: skip
    bound = ours - mine + theirs_mm
    print(f"  rnnpipe with torch's products and nothing else changed: {bound * 1000:.1f} ms/update, "
          f"{theirs / bound:.2f}x torch's")  # fmt: skip


if __name__ == "__main__":
    main()
