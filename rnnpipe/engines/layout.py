"""rnnpipe's arrays in PyTorch's terms and back: the parameters (and each
optimiser slot, which has their shapes), the recurrent state, and Net, the
torch module with torch's names that the engine trains and export writes.

rnnpipe's parameters map exactly onto torch.nn.RNN / LSTM / GRU(V, H, L)
and a torch.nn.Linear(H, V) head:

- weight_ih_l<k> is <k>.Wxh, weight_hh_l<k> is <k>.Whh, with the LSTM's gate
  rows reordered (rnnpipe keeps i, f, o, g so the sigmoids are contiguous;
  torch has i, f, g, o); the RNN's and GRU's orders are torch's already.
- bias_ih_l<k> is <k>.bh and bias_hh_l<k> is zero, since rnnpipe has one
  bias per gate where torch adds two; except the GRU's n rows of bias_hh,
  which are <k>.bhn: both put that bias inside the reset product.
- head.weight is Why, head.bias is by. Layer 0's input is one-hot over the
  vocabulary, so its weights are Wxh's columns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# where the vocabulary indexes each parameter, by torch's names (optim.VOCAB_AXES)
VOCAB_AXES = {"rnn.weight_ih_l0": 1, "head.weight": 0, "head.bias": 0}


def _gates(a, cell):
    """rnnpipe's gate rows in torch's order, or back (the swap is its own
    inverse): the LSTM's o and g trade places."""
    if cell != "lstm":
        return a
    i, f, o, g = np.split(a, 4, axis=0)
    return np.concatenate([i, f, g, o], axis=0)


def to_torch(arrays, config):
    """rnnpipe's parameters (or one optimiser slot's arrays, which have
    their shapes) by torch's names, as numpy arrays."""
    out = {}
    for k in range(config.layers):
        bh = _gates(arrays[f"{k}.bh"], config.cell)
        out[f"rnn.weight_ih_l{k}"] = _gates(arrays[f"{k}.Wxh"], config.cell)
        out[f"rnn.weight_hh_l{k}"] = _gates(arrays[f"{k}.Whh"], config.cell)
        out[f"rnn.bias_ih_l{k}"] = bh.copy()
        bias_hh = np.zeros_like(bh)
        if config.cell == "gru":
            bias_hh[2 * config.hidden :] = arrays[f"{k}.bhn"]
        out[f"rnn.bias_hh_l{k}"] = bias_hh
    out["head.weight"] = arrays["Why"].copy()
    out["head.bias"] = arrays["by"].copy()
    return out


def from_torch(arrays, config):
    """The inverse of to_torch, for any weights in torch's layout: torch's
    two biases add up into rnnpipe's one (the GRU's n rows of bias_hh are
    bhn), which is exact, as only their sum enters the cell."""
    out, H = {}, config.hidden
    for k in range(config.layers):
        bias_ih, bias_hh = arrays[f"rnn.bias_ih_l{k}"], arrays[f"rnn.bias_hh_l{k}"]
        out[f"{k}.Wxh"] = _gates(arrays[f"rnn.weight_ih_l{k}"], config.cell).copy()
        out[f"{k}.Whh"] = _gates(arrays[f"rnn.weight_hh_l{k}"], config.cell).copy()
        if config.cell == "gru":
            bh = bias_ih.copy()
            bh[: 2 * H] += bias_hh[: 2 * H]
            out[f"{k}.bh"], out[f"{k}.bhn"] = bh, bias_hh[2 * H :].copy()
        else:
            out[f"{k}.bh"] = _gates(bias_ih + bias_hh, config.cell)
    out["Why"] = arrays["head.weight"].copy()
    out["by"] = arrays["head.bias"].copy()
    return out


def slot(state, name):
    """One optimiser slot's arrays of state, by parameter name."""
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


class Net(nn.Module):
    """torch.nn.RNN / LSTM / GRU over one-hot characters under a linear head:
    rnnpipe's network with torch's names (the export's state_dict)."""

    def __init__(self, config, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        dtype = DTYPES[config.dtype]
        # torch draws initial weights that the model's own replace at once: from a forked generator, so
        # that making an engine leaves the process's random numbers as they were
        with torch.random.fork_rng(devices=[]):
            self.rnn = MODULES[config.cell](vocab_size, config.hidden, config.layers, dropout=config.dropout,
                                            dtype=dtype)  # fmt: skip
            self.head = nn.Linear(config.hidden, vocab_size, dtype=dtype)

    def forward(self, X, state):
        """X: (time, streams) indices; returns logits (time * streams, V) and the state after."""
        x = F.one_hot(X, self.vocab_size).to(self.head.weight.dtype)
        hs, state = self.rnn(x, state)
        return self.head(hs.reshape(-1, hs.shape[-1])), state


def state_in(state, cell, dev, dtype):
    """rnnpipe's state (per layer, a tuple of (streams, hidden) arrays) as torch's."""
    parts = [torch.from_numpy(np.stack([layer[i] for layer in state])).to(dev, dtype) for i in range(len(state[0]))]
    return tuple(parts) if cell == "lstm" else parts[0]


def state_out(state, cell):
    """torch's state as rnnpipe's, numpy arrays (on the host)."""
    parts = state if cell == "lstm" else (state,)
    host = [p.detach().cpu().numpy() for p in parts]
    return [tuple(p[k].copy() for p in host) for k in range(host[0].shape[0])]
