"""Gated recurrent unit, in the form cuDNN and PyTorch use.

Rows of Wxh, Whh and bh are the gates r (reset), z (update), n (candidate):

    r = sigmoid(xr + Whr h)          z = sigmoid(xz + Whz h)
    n = tanh(xn + r * (Whn h + bhn)) h' = (1 - z) * n + z * h

where x* are rows of Wxh x + bh. bhn sits inside the reset product, so it
cannot be folded into bh. See rnn.py for the interface every cell shares and
the speed rules it follows.
"""

import numpy as np

from .lstm import halved_sigmoid_columns
from .workspace import empty, zeros

GATES = 3
SIGMOID_GATES = 2  # r, z: their rows of xw come halved (see lstm.halved_sigmoid_columns)


def init(rng, n_in, hidden, dtype, k_in=None):
    k = 1.0 / np.sqrt(hidden)
    k_in = k_in or k  # net.INPUT_SCALE for the first layer's one-hot input
    return {
        "Wxh": rng.uniform(-k_in, k_in, (3 * hidden, n_in)).astype(dtype),
        "Whh": rng.uniform(-k, k, (3 * hidden, hidden)).astype(dtype),
        "bh": np.zeros(3 * hidden, dtype),
        "bhn": np.zeros(hidden, dtype),
    }


def zero_state(batch, hidden, dtype):
    return (np.zeros((batch, hidden), dtype),)


def prepare(p):
    """What forward() derives from the weights alone (see net.prepare)."""
    # r and z columns halved so one tanh call gives both sigmoids (lstm.py)
    H = p["Whh"].shape[1]
    return {"WhhT": halved_sigmoid_columns(p["Whh"], 2 * H)}


def forward(p, xw, state, prepared=None, work=None):
    T, B, G = xw.shape
    H = G // 3
    WhhT = (prepared or prepare(p))["WhhT"]
    bhn = p["bhn"]
    hs = empty(work, "hs", (T + 1, B, H), xw.dtype)
    acts = empty(work, "acts", (T, B, G), xw.dtype)  # r, z, n after their squashing
    hns = empty(work, "hns", (T, B, H), xw.dtype)  # Whn h + bhn, needed for dr
    hw = empty(work, "hw", (B, G), xw.dtype)
    hs[0] = state[0]
    rz, r, z, n = acts[:, :, : 2 * H], acts[:, :, :H], acts[:, :, H : 2 * H], acts[:, :, 2 * H :]
    xrz, xn = xw[:, :, : 2 * H], xw[:, :, 2 * H :]
    hw_rz, hw_n = hw[:, : 2 * H], hw[:, 2 * H :]
    dot, tanh, add, multiply, subtract = np.dot, np.tanh, np.add, np.multiply, np.subtract
    for t in range(T):
        s = rz[t]
        dot(hs[t], WhhT, out=hw)
        add(xrz[t], hw_rz, out=s)
        tanh(s, out=s)
        s *= 0.5
        s += 0.5
        add(hw_n, bhn, out=hns[t])
        nt = n[t]
        multiply(r[t], hns[t], out=nt)
        nt += xn[t]
        tanh(nt, out=nt)
        # h' = n + z * (h - n)
        h = hs[t + 1]
        subtract(hs[t], nt, out=h)
        h *= z[t]
        h += nt
    return hs[1:], (hs[T].copy(),), (hs, acts, hns)


def units(cache):
    """Each unit's activation at each step, (time, batch, hidden): the hidden
    state, the GRU's only state (see lstm.units)."""
    return cache[0][1:]


def backward(p, dhs, cache, work=None):
    hs, acts, hns = cache
    T, B, H = dhs.shape
    Whh = p["Whh"]
    r, z, n = acts[:, :, :H], acts[:, :, H : 2 * H], acts[:, :, 2 * H :]
    # dhw, the gradient on Whh h (+ bhn in the n rows), is dr, dz, dn * r;
    # dns holds dn. Both start as the factors known from the forward pass:
    #   dn = dh * (1-z)(1-n^2)        (gradient on n's pre-activation)
    #   dz = dh * (h - n) z(1-z)      dr = dn * hns r(1-r)
    # computed for the whole chunk at once, in the arrays that become the
    # gradients, so that no chunk-sized temporaries come and go (each is a
    # megabyte or more, which the allocator returns to the system and
    # faults in again, page by page, on the next chunk)
    dhw = empty(work, "dhw", acts.shape, acts.dtype)
    dns = np.multiply(n, n, out=empty(work, "dns", n.shape, n.dtype))
    np.subtract(1, dns, out=dns)
    qz, qr = dhw[:, :, H : 2 * H], dhw[:, :, :H]
    np.subtract(1, z, out=qr)  # 1 - z, for a moment
    dns *= qr
    np.subtract(hs[:-1], n, out=qz)
    qz *= z
    qz *= qr
    np.subtract(1, r, out=qr)
    qr *= r
    qr *= hns
    dh = zeros(work, "dh", (B, H), dhs.dtype)
    back = empty(work, "back", (B, H), dhs.dtype)
    dot, multiply = np.dot, np.multiply
    for t in range(T - 1, -1, -1):
        dw, dn = dhw[t], dns[t]
        dh += dhs[t]
        dn *= dh
        dw[:, H : 2 * H] *= dh  # dz
        dw[:, :H] *= dn  # dr
        multiply(dn, r[t], out=dw[:, 2 * H :])
        dot(dw, Whh, out=back)
        dh *= z[t]
        dh += back
    dWhh = dhw.reshape(T * B, 3 * H).T @ hs[:-1].reshape(T * B, H)
    dbhn = dhw[:, :, 2 * H :].sum(axis=(0, 1))
    # dhw is done with: its r and z rows are the gradient on xw's too, so it
    # becomes that gradient with dn in the n rows, without a copy
    dxw = dhw
    dxw[:, :, 2 * H :] = dns
    return dxw, {"Whh": dWhh, "bhn": dbhn}
