"""Learning per update: rnnpipe and PyTorch, the same configuration, the same
chunks in the same order, the same number of updates; then held-out bits
per character, each scored as one continuous stream.

    .venv/bin/python bench/per_iteration.py                      # lstm 256, b32, s50, Adam 4e-3, 600 updates
    .venv/bin/python bench/per_iteration.py --cell gru --seeds 0 1 2
    .venv/bin/python bench/per_iteration.py --lstm-init forget1  # rnnpipe's old LSTM initialisation
    .venv/bin/python bench/per_iteration.py --input-init torch   # input weights drawn as torch's one-hot model's

Time plays no part here (what bench/run.py measures); the question is
whether an update of rnnpipe teaches as much as an update of torch. The
only differences left are the initial weights (each library draws its own)
and float rounding, so over several seeds the two should agree. With
--input-init torch, rnnpipe's one-hot input weights are drawn as the torch
model's are (uniform(+-1/sqrt(hidden))) instead of rnnpipe's uniform(-1, 1)
(net.INPUT_SCALE): the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "tinyshakespeare.txt"


def run_rnnpipe(train, held, args, seed, lstm_init, input_init):
    import numpy as np

    import rnnpipe

    # weight_decay 0: torch.optim.Adam has none
    config = rnnpipe.Config(cell=args.cell, hidden=args.hidden, seq_length=args.seq_length, batch_size=args.batch_size,
                            optimizer="adam", lr=args.lr, seed=seed, weight_decay=0.0)  # fmt: skip
    model = rnnpipe.Model.new(config, train)
    if lstm_init == "forget1" and args.cell == "lstm":  # what rnnpipe did before: zero biases, forget gate 1
        H = args.hidden
        bh = model.params["0.bh"]
        bh[:] = 0
        bh[H : 2 * H] = 1
    if input_init == "torch":
        W = model.params["0.Wxh"]
        k = 1.0 / math.sqrt(args.hidden)
        W[:] = np.random.default_rng(seed).uniform(-k, k, W.shape)
    model.train(train, epochs=1, schedule="none", stop=lambda: model.iterations >= args.iterations)
    return model.evaluate(held).bits_per_char


def run_torch(train, held, args, seed):
    import torch
    import torch_rnn

    from rnnpipe.train import batches

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    chars, train_ix, held_ix = torch_rnn.encode(train, held)
    model = torch_rnn.CharRNN(args.cell, len(chars), args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    state = None
    for n, (X, Y) in enumerate(batches(train_ix, args.seq_length, args.batch_size), 1):
        state = torch_rnn.adam_update(model, opt, X, Y, state)
        if n >= args.iterations:
            break
    model.eval()
    nats, scored = torch_rnn.loss_sum(model, held_ix)
    return nats / scored / math.log(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--cell", default="lstm", choices=("rnn", "lstm", "gru"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq-length", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--lstm-init",
        choices=("torch", "forget1"),
        default="torch",
        help="rnnpipe's LSTM biases: as torch draws them (rnnpipe's now) or zero with forget gate 1",
    )
    parser.add_argument(
        "--input-init",
        choices=("rnnpipe", "torch"),
        default="rnnpipe",
        help="rnnpipe's one-hot input weights: its own uniform(-1, 1) or torch's uniform(+-1/sqrt(hidden))",
    )
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    text = Path(args.data).read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    train, held = text[:cut], text[cut:]
    print(f"{args.cell} {args.hidden}, batch {args.batch_size}, seq {args.seq_length}, Adam {args.lr:g}, "
          f"{args.iterations} updates, {Path(args.data).name}, rnnpipe's input weights drawn as {args.input_init}'s; "
          "held-out bits/char (1 thread each)")  # fmt: skip
    ours, theirs = [], []
    with threadpool_limits(1):
        for seed in args.seeds:
            a = run_rnnpipe(train, held, args, seed, args.lstm_init, args.input_init)
            ours.append(a)
            line = f"seed {seed}: rnnpipe {a:.3f}"
            if not args.no_torch:
                b = run_torch(train, held, args, seed)
                theirs.append(b)
                line += f"  torch {b:.3f}  difference {a - b:+.3f}"
            print(line, flush=True)
    line = f"mean:   rnnpipe {statistics.mean(ours):.3f}"
    if theirs:
        a, b = statistics.mean(ours), statistics.mean(theirs)
        line += f"  torch {b:.3f}  difference {a - b:+.3f}"
    print(line)


if __name__ == "__main__":
    main()
