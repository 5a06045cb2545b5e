"""The PyTorch CPU contestant: the same model and training as rnnpipe's.

torch.nn.RNN / LSTM / GRU over one-hot inputs (the same parameters as
rnnpipe's Wxh columns) under an nn.Linear head; truncated BPTT over parallel
contiguous streams cut exactly as rnnpipe.train.batches cuts them, the state
carried from chunk to chunk and detached; the loss summed over time and
averaged over streams, as the seed's. The optimisers are rnnpipe's:

- adagrad: each gradient entry clipped to [-clip, clip], then Adagrad with
  the seed's eps (torch adds eps outside the square root, the seed inside:
  the difference is below 1e-4 of a step once mem exceeds 1e-8);
- adam: the per-character mean gradient, scaled down together when its
  global norm exceeds clip, then Adam with betas (0.9, 0.999), eps 1e-8.

Held-out text is scored as rnnpipe.evaluate scores it: as one continuous
stream, each character predicted from all the text before it (torch runs the
one stream 4096 characters a call, the state carried; rnnpipe gets the same
figure, to about 1e-5 bits per character, from parallel segments).

Only imported when torch is installed (pip install torch==2.13.0).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rnnpipe.train import batches  # the same chunks in the same order

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class CharRNN(nn.Module):
    def __init__(self, cell, vocab_size, hidden, layers=1):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = CELLS[cell](vocab_size, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, X, state):
        """X: (time, batch) long indices; returns logits (time * batch, V)."""
        x = F.one_hot(X, self.vocab_size).float()
        hs, state = self.rnn(x, state)
        return self.head(hs.reshape(-1, hs.shape[-1])), state


def _detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def encode(train, held):
    """(the vocabulary of train, train as int64 indices, held as indices with
    characters train lacks left out)."""
    chars = sorted(set(train))
    lookup = {c: i for i, c in enumerate(chars)}
    train_ix = np.array([lookup[c] for c in train], np.int64)
    held_ix = np.array([lookup[c] for c in held if c in lookup], np.int64)
    return chars, train_ix, held_ix


def adam_update(model, opt, X, Y, state, clip=5.0):
    """One update as rnnpipe's Adam makes it: the per-character mean loss of a
    (time, streams) chunk, its gradient clipped by global norm. Returns the
    state after the chunk, detached."""
    T, B = X.shape
    logits, state = model(torch.from_numpy(X), state)
    loss = F.cross_entropy(logits, torch.from_numpy(Y).reshape(-1), reduction="sum") / (B * T)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return _detach(state)


@torch.no_grad()
def loss_sum(model, ix, chunk=4096):
    """Total nats of predicting ix[1:] from ix[:-1] in one stream, and how many."""
    total, state = 0.0, None
    for p in range(0, len(ix) - 1, chunk):
        x = ix[p : min(p + chunk, len(ix) - 1)]
        logits, state = model(torch.from_numpy(x[:, None]), state)
        total += float(F.cross_entropy(logits, torch.from_numpy(ix[p + 1 : p + 1 + len(x)]), reduction="sum"))
    return total, max(len(ix) - 1, 0)


def run(train, held, cell, hidden, seq_length, batch_size, optimizer, lr, budget, clip=5.0, layers=1, seed=0):
    """Train for budget seconds on train; returns chars/s and held-out bits."""
    torch.manual_seed(seed)
    chars = sorted(set(train))
    lookup = {c: i for i, c in enumerate(chars)}
    encode = np.vectorize(lookup.get, otypes=[np.int64])
    train_ix = encode(list(train))
    held_ix = encode([c for c in held if c in lookup])

    model = CharRNN(cell, len(chars), hidden, layers)
    if optimizer == "adagrad":
        opt = torch.optim.Adagrad(model.parameters(), lr=lr, eps=1e-8)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)

    start = time.monotonic()
    n_chars = iterations = 0
    smooth = math.log(len(chars))
    done = False
    while not done:  # epochs, until the budget runs out
        state = None
        for X, Y in batches(train_ix, seq_length, batch_size):
            T, B = X.shape
            logits, state = model(torch.from_numpy(X), state)
            total = F.cross_entropy(logits, torch.from_numpy(Y).reshape(-1), reduction="sum")
            opt.zero_grad(set_to_none=True)
            if optimizer == "adagrad":
                (total / B).backward()  # the seed's loss: summed over time
                for p in model.parameters():
                    p.grad.clamp_(-clip, clip)
            else:
                (total / (B * T)).backward()  # the per-character mean
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            state = _detach(state)
            n_chars += X.size
            iterations += 1
            smooth = smooth * 0.999 + float(total) / (B * T) * 0.001
            if time.monotonic() - start >= budget:
                done = True
                break
    elapsed = time.monotonic() - start
    model.eval()
    nats, scored = loss_sum(model, held_ix)
    return {
        "chars": n_chars,
        "seconds": elapsed,
        "chars_per_sec": n_chars / elapsed,
        "iterations": iterations,
        "smooth_loss_per_char": smooth,
        "valid_bits": nats / scored / math.log(2),
    }
