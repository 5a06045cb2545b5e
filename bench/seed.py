"""The seed notebook's min-char-rnn, ported to Python 3 and nothing else.

The algorithm is the notebook's line for line: one-hot column vectors, one
np.dot per product per time step, float64, dict caches, elementwise clip at 5
and Adagrad with learning rate 0.1. The port changes only what Python 3 needs
(xrange -> range, print()) and what a benchmark needs:

- the notebook's module-level globals live on a SeedRNN object;
- the vocabulary is sorted(set(data)) rather than list(set(data)), whose order
  changes from run to run under Python 3's string hashing (rnnpipe sorts too,
  so both number the characters alike);
- the training loop stops after a wall-clock budget, and its 200-character
  sample every 1000 iterations is optional (off in the benchmark, which times
  training alone for every contestant);
- held-out scoring reuses the forward-pass lines of lossFun on one stream.

Run it alone: python bench/seed.py --budget 10
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "tinyshakespeare.txt")


class SeedRNN:
    def __init__(self, chars, hidden_size=100, seq_length=25, learning_rate=1e-1, seed=None, weights=None):
        if seed is not None:
            np.random.seed(seed)
        self.chars = chars
        self.vocab_size = vocab_size = len(chars)
        self.char_to_ix = {ch: i for i, ch in enumerate(chars)}
        self.ix_to_char = {i: ch for i, ch in enumerate(chars)}
        self.hidden_size, self.seq_length, self.learning_rate = hidden_size, seq_length, learning_rate
        # model parameters
        self.Wxh = np.random.randn(hidden_size, vocab_size) * 0.01  # input to hidden
        self.Whh = np.random.randn(hidden_size, hidden_size) * 0.01  # hidden to hidden
        self.Why = np.random.randn(vocab_size, hidden_size) * 0.01  # hidden to output
        self.bh = np.zeros((hidden_size, 1))  # hidden bias
        self.by = np.zeros((vocab_size, 1))  # output bias
        if weights is not None:  # start from given weights (the loss-curve check)
            for k, v in weights.items():
                setattr(self, k, np.array(v, dtype=np.float64).reshape(getattr(self, k).shape))
        # memory variables for Adagrad
        self.mWxh, self.mWhh, self.mWhy = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.Why)
        self.mbh, self.mby = np.zeros_like(self.bh), np.zeros_like(self.by)
        self.smooth_loss = -np.log(1.0 / vocab_size) * seq_length  # loss at iteration 0
        self.n, self.p = 0, 0
        self.hprev = np.zeros((hidden_size, 1))

    def lossFun(self, inputs, targets, hprev):
        """
        inputs,targets are both list of integers.
        hprev is Hx1 array of initial hidden state
        returns the loss, gradients on model parameters, and last hidden state
        """
        Wxh, Whh, Why, bh, by, vocab_size = self.Wxh, self.Whh, self.Why, self.bh, self.by, self.vocab_size
        xs, hs, ys, ps = {}, {}, {}, {}
        hs[-1] = np.copy(hprev)
        loss = 0
        # forward pass
        for t in range(len(inputs)):
            xs[t] = np.zeros((vocab_size, 1))  # encode in 1-of-k representation
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)  # hidden state
            ys[t] = np.dot(Why, hs[t]) + by  # unnormalized log probabilities for next chars
            ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))  # probabilities for next chars
            loss += -np.log(ps[t][targets[t], 0])  # softmax (cross-entropy loss)
        # backward pass: compute gradients going backwards
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
        dbh, dby = np.zeros_like(bh), np.zeros_like(by)
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1  # backprop into y
            dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(Why.T, dy) + dhnext  # backprop into h
            dhraw = (1 - hs[t] * hs[t]) * dh  # backprop through tanh nonlinearity
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(Whh.T, dhraw)
        for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
            np.clip(dparam, -5, 5, out=dparam)  # clip to mitigate exploding gradients
        return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]

    def sample(self, h, seed_ix, n):
        """sample a sequence of integers from the model"""
        x = np.zeros((self.vocab_size, 1))
        x[seed_ix] = 1
        ixes = []
        for _t in range(n):
            h = np.tanh(np.dot(self.Wxh, x) + np.dot(self.Whh, h) + self.bh)
            y = np.dot(self.Why, h) + self.by
            p = np.exp(y) / np.sum(np.exp(y))
            ix = np.random.choice(range(self.vocab_size), p=p.ravel())
            x = np.zeros((self.vocab_size, 1))
            x[ix] = 1
            ixes.append(ix)
        return "".join(self.ix_to_char[ix] for ix in ixes)

    def train(self, data, max_time=None, max_iter=None, sample_every=0, verbose=False, on_iter=None):
        """The notebook's main loop, stopped after max_time seconds or
        max_iter iterations. Returns (characters trained on, seconds)."""
        seq_length, hidden_size, char_to_ix = self.seq_length, self.hidden_size, self.char_to_ix
        params = [self.Wxh, self.Whh, self.Why, self.bh, self.by]
        mems = [self.mWxh, self.mWhh, self.mWhy, self.mbh, self.mby]
        n, p, hprev = self.n, self.p, self.hprev
        chars, start = 0, time.monotonic()
        while True:
            if p + seq_length + 1 >= len(data) or n == 0:
                hprev = np.zeros((hidden_size, 1))  # reset RNN memory
                p = 0  # go from start of data
            inputs = [char_to_ix[ch] for ch in data[p : p + seq_length]]
            targets = [char_to_ix[ch] for ch in data[p + 1 : p + seq_length + 1]]
            loss, dWxh, dWhh, dWhy, dbh, dby, hprev = self.lossFun(inputs, targets, hprev)
            self.smooth_loss = self.smooth_loss * 0.999 + loss * 0.001
            if sample_every and n % sample_every == 0:
                print("iter %d, loss: %f" % (n, self.smooth_loss))  # noqa: UP031 (the notebook's)
                print("----\n %s \n----" % (self.sample(hprev, inputs[0], 200),))  # noqa: UP031
            for param, dparam, mem in zip(params, [dWxh, dWhh, dWhy, dbh, dby], mems, strict=True):
                mem += dparam * dparam
                param += -self.learning_rate * dparam / np.sqrt(mem + 1e-8)  # adagrad update
            p += seq_length
            n += 1
            chars += len(inputs)
            if on_iter is not None:
                on_iter(n, self.smooth_loss)
            elapsed = time.monotonic() - start
            if (max_time is not None and elapsed >= max_time) or (max_iter is not None and n >= max_iter):
                break
        self.n, self.p, self.hprev = n, p, hprev
        return chars, elapsed

    def loss_on(self, text):
        """Nats of predicting text[1:] from text[:-1] on one stream from a zero
        state, with lossFun's forward-pass lines. Returns (nats, scored)."""
        Wxh, Whh, Why, bh, by, vocab_size = self.Wxh, self.Whh, self.Why, self.bh, self.by, self.vocab_size
        ix = [self.char_to_ix[ch] for ch in text if ch in self.char_to_ix]
        h = np.zeros((self.hidden_size, 1))
        loss = 0.0
        for t in range(len(ix) - 1):
            x = np.zeros((vocab_size, 1))
            x[ix[t]] = 1
            h = np.tanh(np.dot(Wxh, x) + np.dot(Whh, h) + bh)
            y = np.dot(Why, h) + by
            p = np.exp(y) / np.sum(np.exp(y))
            loss += -np.log(p[ix[t + 1], 0])
        return float(loss), len(ix) - 1


def split(text, fraction=0.9):
    cut = int(len(text) * fraction)
    return text[:cut], text[cut:]


def run(text, budget, seed=0):
    """Train the seed on the first 90% of text for budget seconds; returns a
    dict of chars/s and held-out bits per character."""
    train, held = split(text)
    rnn = SeedRNN(sorted(set(train)), seed=seed)
    chars, elapsed = rnn.train(train, max_time=budget)
    nats, scored = rnn.loss_on(held)
    return {
        "chars": chars,
        "seconds": elapsed,
        "chars_per_sec": chars / elapsed,
        "iterations": rnn.n,
        "smooth_loss_per_char": rnn.smooth_loss / rnn.seq_length,
        "valid_bits": nats / scored / math.log(2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of training")
    args = parser.parse_args()
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    print(run(text, args.budget))


if __name__ == "__main__":
    main()
