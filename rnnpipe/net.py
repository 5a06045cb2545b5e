"""The network: stacked recurrent layers under a linear softmax head.

Parameters live in one flat dict: "0.Wxh", "0.Whh", "0.bh" (and "0.bhn" for
a GRU) for layer 0, "1.Wxh" ... for the layers above, and "Why", "by" for the
head. Matrices keep the seed's column-vector orientation (Wxh is hidden x
inputs, Why is vocab x hidden); the code multiplies row vectors by their
transposes, which BLAS does without copying.

Inputs are character indices. Layer 0 picks columns of Wxh instead of
multiplying one-hot vectors, and everything but the recurrence is one
vectorised operation over the whole chunk (time x batch).
"""

import numpy as np

from . import gru, lstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}


def shapes(config, vocab_size):
    """The shape of every parameter, by name."""
    cell, H = CELLS[config.cell], config.hidden
    out, n_in = {}, vocab_size
    for layer in range(config.layers):
        out[f"{layer}.Wxh"] = (cell.GATES * H, n_in)
        out[f"{layer}.Whh"] = (cell.GATES * H, H)
        out[f"{layer}.bh"] = (cell.GATES * H,)
        if config.cell == "gru":
            out[f"{layer}.bhn"] = (H,)
        n_in = H
    out["Why"] = (vocab_size, H)
    out["by"] = (vocab_size,)
    return out


def init(config, vocab_size, rng):
    cell, H, dtype = CELLS[config.cell], config.hidden, config.dtype
    params, n_in = {}, vocab_size
    for layer in range(config.layers):
        for name, value in cell.init(rng, n_in, H, dtype).items():
            params[f"{layer}.{name}"] = value
        n_in = H
    if config.cell == "rnn":
        params["Why"] = (rng.standard_normal((vocab_size, H)) * 0.01).astype(dtype)
    else:
        k = 1.0 / np.sqrt(H)
        params["Why"] = rng.uniform(-k, k, (vocab_size, H)).astype(dtype)
    params["by"] = np.zeros(vocab_size, dtype)
    return params


def zero_state(config, batch):
    cell = CELLS[config.cell]
    return [cell.zero_state(batch, config.hidden, config.dtype) for _ in range(config.layers)]


def _layer(params, layer):
    prefix = f"{layer}."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def _project(p, layer, x):
    """Wxh x + bh for a whole chunk; x is indices (layer 0) or activations."""
    if layer == 0:
        # a gather of Wxh's columns; the transposed copy makes them contiguous
        return np.ascontiguousarray(p["Wxh"].T)[x] + p["bh"]
    return x @ p["Wxh"].T + p["bh"]


def forward(params, config, X, state, rng=None):
    """Run a chunk of indices X (time, batch) through the layers.

    Returns the top layer's outputs, the state after the chunk and what the
    backward pass needs. With `rng` and dropout > 0 the activations between
    layers are dropped (inverted dropout, so evaluation needs no rescaling).
    """
    cell = CELLS[config.cell]
    x, caches, new_state = X, [], []
    for layer in range(config.layers):
        mask = None
        if layer > 0 and rng is not None and config.dropout > 0:
            keep = 1.0 - config.dropout
            mask = (rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
            x = x * mask
        p = _layer(params, layer)
        hs, st, cache = cell.forward(p, _project(p, layer, x), state[layer])
        caches.append((p, x, mask, cache))
        new_state.append(st)
        x = hs
    return x, new_state, caches


def logits(params, hs):
    T, B, H = hs.shape
    return hs.reshape(T * B, H) @ params["Why"].T + params["by"]


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def loss(params, config, X, Y, state, rng=None):
    """The seed's lossFun over a batch of streams.

    X, Y are (time, batch) indices of inputs and targets. The loss is summed
    over time and averaged over streams, so with one stream it is exactly the
    seed's. Returns (loss, grads, state after the chunk).
    """
    T, B = X.shape
    V = params["by"].shape[0]
    hs, new_state, caches = forward(params, config, X, state, rng)
    logp = log_softmax(logits(params, hs))
    rows, y = np.arange(T * B), Y.reshape(-1)
    total = -float(logp[rows, y].sum(dtype=np.float64)) / B

    dy = np.exp(logp)  # softmax probabilities; their gradient is p - onehot
    dy[rows, y] -= 1
    dy /= B
    H = hs.shape[2]
    grads = {"Why": dy.T @ hs.reshape(T * B, H), "by": dy.sum(axis=0)}
    dhs = (dy @ params["Why"]).reshape(T, B, H)

    cell = CELLS[config.cell]
    for layer in reversed(range(config.layers)):
        p, x, mask, cache = caches[layer]
        dxw, rec = cell.backward(p, dhs, cache)
        G = dxw.shape[2]
        flat = dxw.reshape(T * B, G)
        for name, g in rec.items():
            grads[f"{layer}.{name}"] = g
        grads[f"{layer}.bh"] = flat.sum(axis=0)
        if layer == 0:
            grads["0.Wxh"] = _scatter_columns(X.reshape(-1), flat, V)
        else:
            grads[f"{layer}.Wxh"] = flat.T @ x.reshape(T * B, -1)
            dhs = (flat @ p["Wxh"]).reshape(T, B, -1)
            if mask is not None:
                dhs *= mask
    return total, grads, new_state


def _scatter_columns(ix, rows, n):
    """Sum rows[k] into column ix[k] of a (G, n) matrix, duplicates added.

    Sorting and np.add.reduceat does it in one pass; np.add.at is slower and
    a one-hot product wastes a multiply per vocabulary entry.
    """
    order = np.argsort(ix, kind="stable")
    uniq, starts = np.unique(ix[order], return_index=True)
    out = np.zeros((n, rows.shape[1]), rows.dtype)
    out[uniq] = np.add.reduceat(rows[order], starts, axis=0)
    return np.ascontiguousarray(out.T)


def grow(params, config, n_new, rng):
    """Params for a vocabulary n_new characters larger. New input columns are
    drawn like the cell's initial weights; new output rows start at zero
    weight and the lowest bias the head has, so the model gives a character it
    has never seen no more probability than its rarest known one."""
    out = dict(params)
    G, H = params["0.Wxh"].shape
    dtype = params["0.Wxh"].dtype
    if config.cell == "rnn":
        cols = rng.standard_normal((G, n_new)) * 0.01
    else:
        k = 1.0 / np.sqrt(H)
        cols = rng.uniform(-k, k, (G, n_new))
    out["0.Wxh"] = np.concatenate([params["0.Wxh"], cols.astype(dtype)], axis=1)
    out["Why"] = np.concatenate([params["Why"], np.zeros((n_new, params["Why"].shape[1]), dtype)])
    out["by"] = np.concatenate([params["by"], np.full(n_new, params["by"].min(), dtype)])
    return out
