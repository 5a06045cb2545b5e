"""Gated recurrent unit, in the form cuDNN and PyTorch use.

Rows of Wxh, Whh and bh are the gates r (reset), z (update), n (candidate):

    r = sigmoid(xr + Whr h)          z = sigmoid(xz + Whz h)
    n = tanh(xn + r * (Whn h + bhn)) h' = (1 - z) * n + z * h

where x* are rows of Wxh x + bh. bhn sits inside the reset product, so it
cannot be folded into bh. See rnn.py for the interface every cell shares.
"""

import numpy as np

from .lstm import sigmoid

GATES = 3


def init(rng, n_in, hidden, dtype):
    k = 1.0 / np.sqrt(hidden)
    return {
        "Wxh": rng.uniform(-k, k, (3 * hidden, n_in)).astype(dtype),
        "Whh": rng.uniform(-k, k, (3 * hidden, hidden)).astype(dtype),
        "bh": np.zeros(3 * hidden, dtype),
        "bhn": np.zeros(hidden, dtype),
    }


def zero_state(batch, hidden, dtype):
    return (np.zeros((batch, hidden), dtype),)


def forward(p, xw, state):
    T, B, G = xw.shape
    H = G // 3
    WhhT, bhn = p["Whh"].T, p["bhn"]
    hs = np.empty((T + 1, B, H), xw.dtype)
    acts = np.empty((T, B, G), xw.dtype)  # r, z, n after their squashing
    hns = np.empty((T, B, H), xw.dtype)  # Whn h + bhn, needed for dr
    hw = np.empty((B, G), xw.dtype)
    hs[0] = state[0]
    for t in range(T):
        a = acts[t]
        np.matmul(hs[t], WhhT, out=hw)
        np.add(xw[t, :, : 2 * H], hw[:, : 2 * H], out=a[:, : 2 * H])
        sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        np.add(hw[:, 2 * H :], bhn, out=hns[t])
        np.multiply(r, hns[t], out=n)
        n += xw[t, :, 2 * H :]
        np.tanh(n, out=n)
        # h' = n + z * (h - n)
        h = hs[t + 1]
        np.subtract(hs[t], n, out=h)
        h *= z
        h += n
    return hs[1:], (hs[T].copy(),), (hs, acts, hns)


def backward(p, dhs, cache):
    hs, acts, hns = cache
    T, B, H = dhs.shape
    Whh = p["Whh"]
    dxw = np.empty_like(acts)  # gradient on xw: r, z, n pre-activations
    dhw = np.empty_like(acts)  # gradient on Whh h (+ bhn for the n rows)
    dh = np.zeros((B, H), dhs.dtype)
    for t in reversed(range(T)):
        a, dx, dw = acts[t], dxw[t], dhw[t]
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        dh += dhs[t]
        dn = dx[:, 2 * H :]
        np.multiply(dh, (1 - z) * (1 - n * n), out=dn)
        dx[:, H : 2 * H] = dh * (hs[t] - n) * z * (1 - z)  # dz
        dx[:, :H] = dn * hns[t] * r * (1 - r)  # dr
        dw[:, : 2 * H] = dx[:, : 2 * H]
        np.multiply(dn, r, out=dw[:, 2 * H :])
        dh *= z
        dh += dw @ Whh
    dWhh = dhw.reshape(T * B, 3 * H).T @ hs[:-1].reshape(T * B, H)
    dbhn = dhw[:, :, 2 * H :].sum(axis=(0, 1))
    return dxw, {"Whh": dWhh, "bhn": dbhn}
