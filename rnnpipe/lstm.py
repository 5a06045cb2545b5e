"""Long short-term memory cell, gates fused into one matrix product.

Rows of Wxh, Whh and bh are the gates in the order i, f, o, g: input, forget,
output (sigmoids, contiguous so one call squashes all three) and the tanh
candidate. The forget-gate bias starts at 1 so that early training remembers.
See rnn.py for the interface every cell shares.
"""

import numpy as np

GATES = 4


def init(rng, n_in, hidden, dtype):
    # PyTorch's and Keras's uniform(-1/sqrt(H), 1/sqrt(H))
    k = 1.0 / np.sqrt(hidden)
    bh = np.zeros(4 * hidden, dtype)
    bh[hidden : 2 * hidden] = 1.0
    return {
        "Wxh": rng.uniform(-k, k, (4 * hidden, n_in)).astype(dtype),
        "Whh": rng.uniform(-k, k, (4 * hidden, hidden)).astype(dtype),
        "bh": bh,
    }


def zero_state(batch, hidden, dtype):
    return (np.zeros((batch, hidden), dtype), np.zeros((batch, hidden), dtype))


def sigmoid(x, out):
    # tanh form: no overflow warnings for large |x|, in float32 too
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def forward(p, xw, state):
    T, B, G = xw.shape
    H = G // 4
    WhhT = p["Whh"].T
    hs = np.empty((T + 1, B, H), xw.dtype)
    cs = np.empty((T + 1, B, H), xw.dtype)
    acts = np.empty((T, B, G), xw.dtype)  # gate activations i, f, o, g
    tanh_cs = np.empty((T, B, H), xw.dtype)
    hs[0], cs[0] = state
    for t in range(T):
        a = acts[t]
        np.matmul(hs[t], WhhT, out=a)
        a += xw[t]
        sigmoid(a[:, : 3 * H], out=a[:, : 3 * H])
        np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c = cs[t + 1]
        np.multiply(f, cs[t], out=c)
        c += i * g
        np.tanh(c, out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])
    return hs[1:], (hs[T].copy(), cs[T].copy()), (hs, cs, acts, tanh_cs)


def backward(p, dhs, cache):
    hs, cs, acts, tanh_cs = cache
    T, B, H = dhs.shape
    Whh = p["Whh"]
    dacts = np.empty_like(acts)  # gradient on the gate pre-activations
    dh = np.zeros((B, H), dhs.dtype)
    dc = np.zeros((B, H), dhs.dtype)
    for t in reversed(range(T)):
        a, da = acts[t], dacts[t]
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        dh += dhs[t]
        tc = tanh_cs[t]
        dc += dh * o * (1 - tc * tc)
        da[:, 2 * H : 3 * H] = dh * tc  # do
        da[:, :H] = dc * g  # di
        da[:, H : 2 * H] = dc * cs[t]  # df
        da[:, 3 * H :] = dc * i  # dg
        da[:, : 3 * H] *= a[:, : 3 * H] * (1 - a[:, : 3 * H])
        da[:, 3 * H :] *= 1 - g * g
        dc *= f
        np.matmul(da, Whh, out=dh)
    dWhh = dacts.reshape(T * B, 4 * H).T @ hs[:-1].reshape(T * B, H)
    return dacts, {"Whh": dWhh}
