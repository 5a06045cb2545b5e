"""The network: stacked recurrent layers under a linear softmax head.

Parameters live in one flat dict: "0.Wxh", "0.Whh", "0.bh" (and "0.bhn" for
a GRU) for layer 0, "1.Wxh" ... for the layers above, and "Why", "by" for the
head. Matrices keep the seed's column-vector orientation (Wxh is hidden x
inputs, Why is vocab x hidden); the code multiplies row vectors by their
transposes, made contiguous once per chunk where OpenBLAS is faster so
(see prepare and the cells' prepare).

Inputs are character indices. Layer 0 picks columns of Wxh instead of
multiplying one-hot vectors, and everything but the recurrence is one
vectorised operation over the whole chunk (time x batch).
"""

import numpy as np

from . import gru, lstm, rnn, workspace

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}

# alphabet size up to which the input weights' gradient has a bin for every
# character (see _scatter_columns)
DENSE_MAX = 256


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


# The first layer's input is one-hot, so each column of its Wxh is a
# character's embedding, already projected onto the gates. Drawn like the
# other weights, uniform(-1/sqrt(hidden), 1/sqrt(hidden)), it gives the gates
# sqrt(hidden) times less signal (a fourteenth at 192 units) than PyTorch's
# nn.Embedding (N(0, 1)) and the input weights after it give, and the
# network is slow to learn which character it is reading: 2.92 held-out
# bits/char after 60 s on the Russian corpus against 2.30 with
# uniform(-1, 1), which matches that variance (docs/benchmarks.md, "Time to
# quality"). The seed's rnn keeps its own draw.
INPUT_SCALE = 1.0


def init(config, vocab_size, rng):
    cell, H, dtype = CELLS[config.cell], config.hidden, config.dtype
    params, n_in, k_in = {}, vocab_size, INPUT_SCALE
    for layer in range(config.layers):
        for name, value in cell.init(rng, n_in, H, dtype, k_in).items():
            params[f"{layer}.{name}"] = value
        n_in, k_in = H, None  # a layer above reads hidden states, not characters
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


def _projection(p, layer, n_halved):
    """The weights of Wxh x + bh arranged for a chunk: for layer 0 the
    (inputs, gates) table Wxh^T + bh whose rows the indices pick; above it
    Wxh^T and bh. The first n_halved gate rows (a cell's sigmoid gates, see
    lstm.py) are halved, an exact scaling done on the small weights rather
    than on the large projected chunk."""
    if layer == 0:
        # adding the bias to the small table, in C order so each row is
        # contiguous, saves a pass over the large result
        table = np.add(p["Wxh"].T, p["bh"], order="C")
        if n_halved:
            table[:, :n_halved] *= 0.5
        return table
    W, b = p["Wxh"].T, p["bh"]
    if n_halved:
        W, b = W.copy(), b.copy()
        W[:, :n_halved] *= 0.5
        b[:n_halved] *= 0.5
    return W, b


def _project(projection, layer, x, work=None):
    """Wxh x + bh for a whole chunk, x indices (layer 0) or activations; an
    array the cell may overwrite."""
    if layer == 0:
        G = projection.shape[1]
        return np.take(projection, x, axis=0, out=workspace.empty(work, "xw", x.shape + (G,), projection.dtype))
    W, b = projection
    xw = workspace.empty(work, "xw", x.shape[:-1] + (W.shape[1],), x.dtype)
    # one product over the whole chunk (T * B rows), not one per time step
    np.dot(x.reshape(-1, x.shape[-1]), W, out=xw.reshape(-1, W.shape[1]))
    xw += b
    return xw


def prepare(params, config):
    """Everything forward() derives from the weights alone, per layer. The
    weights change at every training step, so training prepares them anew
    for each chunk; sampling prepares once and then runs one character at a
    time, where rearranging the weights would cost more than the step."""
    cell = CELLS[config.cell]
    out = []
    for layer in range(config.layers):
        p = _layer(params, layer)
        out.append((p, _projection(p, layer, cell.SIGMOID_GATES * config.hidden), cell.prepare(p)))
    return out


def forward(params, config, X, state, rng=None, prepared=None, work=None):
    """Run a chunk of indices X (time, batch) through the layers.

    Returns the top layer's outputs, the state after the chunk and what the
    backward pass needs. With `rng` and dropout > 0 the activations between
    layers are dropped (inverted dropout, so evaluation needs no rescaling).
    `prepared` is prepare(params, config), for a caller that runs many short
    chunks with the same weights; `work` is net.loss's workspace.for_layers.
    """
    cell = CELLS[config.cell]
    x, caches, new_state = X, [], []
    work = work or [None] * config.layers
    for layer, (p, projection, cell_prep) in enumerate(prepared or prepare(params, config)):
        mask = None
        if layer > 0 and rng is not None and config.dropout > 0:
            keep = 1.0 - config.dropout
            mask = (rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
            x = x * mask
        xw = _project(projection, layer, x, work[layer])
        hs, st, cache = cell.forward(p, xw, state[layer], cell_prep, work[layer])
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
    # the chunk's arrays live in this thread's workspace (workspace.py), and
    # nothing returned points into it
    work = workspace.for_layers(config.layers)
    hs, new_state, caches = forward(params, config, X, state, rng, work=work)
    # log_softmax's steps, keeping exp(z) for the gradient instead of
    # taking exp(log p) again: -log p[y] = log sum exp(z) - z[y]
    z = logits(params, hs)
    z -= z.max(axis=1, keepdims=True)
    dy = np.exp(z)
    norm = dy.sum(axis=1, keepdims=True)
    rows, y = np.arange(T * B), Y.reshape(-1)
    total = float(np.log(norm).sum(dtype=np.float64) - z[rows, y].sum(dtype=np.float64)) / B

    dy /= norm  # softmax probabilities; their gradient is p - onehot
    dy[rows, y] -= 1
    if B > 1:
        dy /= B
    H = hs.shape[2]
    grads = {"Why": dy.T @ hs.reshape(T * B, H), "by": dy.sum(axis=0)}
    dhs = (dy @ params["Why"]).reshape(T, B, H)

    cell = CELLS[config.cell]
    for layer in reversed(range(config.layers)):
        p, x, mask, cache = caches[layer]
        dxw, rec = cell.backward(p, dhs, cache, work[layer])
        G = dxw.shape[2]
        flat = dxw.reshape(T * B, G)
        for name, g in rec.items():
            grads[f"{layer}.{name}"] = g
        if layer == 0:
            grads["0.Wxh"] = _scatter_columns(X.reshape(-1), flat, V)
            # every input adds its row once, so the bias's gradient is also
            # the sum of Wxh's columns: add up whichever has fewer numbers
            if T * B > V:
                grads["0.bh"] = grads["0.Wxh"].sum(axis=1)
            else:
                grads["0.bh"] = flat.sum(axis=0)
        else:
            grads[f"{layer}.bh"] = flat.sum(axis=0)
            grads[f"{layer}.Wxh"] = flat.T @ x.reshape(T * B, -1)
            dhs = (flat @ p["Wxh"]).reshape(T, B, -1)
            if mask is not None:
                dhs *= mask
    return total, grads, new_state


def _scatter_columns(ix, rows, n):
    """Sum rows[k] into column ix[k] of a (G, n) matrix, duplicates added:
    the gradient of a gather of Wxh's columns.

    Up to DENSE_MAX distinct characters it is one matrix product with a 0/1
    matrix of (character, position) pairs, which BLAS does about 3x faster
    than np.bincount over (character, unit) pairs (bench: 6.6 against 21 ms
    for 65 characters x 1,600 positions x 1,024 gate units). This one-hot
    matrix is the gradient's, built per chunk; the forward pass still picks
    columns instead of multiplying by one-hot inputs. A large alphabet first
    maps the chunk's characters to their distinct ones, and beyond DENSE_MAX
    of those the bincount (summing in float64) is the cheaper.
    """
    G = rows.shape[1]
    cols = None
    if n > DENSE_MAX:
        cols, ix = np.unique(ix, return_inverse=True)
    k = n if cols is None else len(cols)
    if k <= DENSE_MAX:
        onehot = np.zeros((k, len(ix)), rows.dtype)
        onehot[ix, np.arange(len(ix))] = 1
        sums = rows.T @ onehot.T  # as fast as (onehot @ rows).T, and C-ordered like Wxh
    else:
        bins = (ix[:, None] * G + np.arange(G)).ravel()
        sums = np.bincount(bins, weights=rows.ravel(), minlength=k * G).reshape(-1, G).T.astype(rows.dtype)
    if cols is None:
        return sums
    out = np.zeros((G, n), rows.dtype)
    out[:, cols] = sums
    return out


def grow(params, config, n_new, rng):
    """Params for a vocabulary n_new characters larger. New input columns are
    drawn like the cell's initial weights; new output rows start at zero
    weight and the lowest bias the head has, so the model gives a character it
    has never seen no more probability than its rarest known one."""
    out = dict(params)
    G = params["0.Wxh"].shape[0]
    dtype = params["0.Wxh"].dtype
    if config.cell == "rnn":
        cols = rng.standard_normal((G, n_new)) * 0.01
    else:
        cols = rng.uniform(-INPUT_SCALE, INPUT_SCALE, (G, n_new))
    out["0.Wxh"] = np.concatenate([params["0.Wxh"], cols.astype(dtype)], axis=1)
    out["Why"] = np.concatenate([params["Why"], np.zeros((n_new, params["Why"].shape[1]), dtype)])
    out["by"] = np.concatenate([params["by"], np.full(n_new, params["by"].min() - np.log(n_new), dtype)])
    return out
