"""Long short-term memory cell, gates fused into one matrix product.

Rows of Wxh, Whh and bh are the gates in the order i, f, o, g: input, forget,
output (sigmoids, contiguous so one call squashes all three) and the tanh
candidate. Weights and bias start as PyTorch's do (see init), which learns
faster per update than zero biases with a forget-gate bias of 1 (measured in
bench/per_iteration.py). See rnn.py for the interface every cell shares and the speed rules it follows.
"""

import numpy as np

from .workspace import empty, zeros

GATES = 4
SIGMOID_GATES = 3  # i, f, o: their rows of xw come halved (see halved_sigmoid_columns)


def init(rng, n_in, hidden, dtype, k_in=None):
    # PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) for every weight; torch's two
    # biases (bias_ih + bias_hh) are drawn so too, and bh is their sum
    k = 1.0 / np.sqrt(hidden)
    k_in = k_in or k  # net.INPUT_SCALE for the first layer's one-hot input
    return {
        "Wxh": rng.uniform(-k_in, k_in, (4 * hidden, n_in)).astype(dtype),
        "Whh": rng.uniform(-k, k, (4 * hidden, hidden)).astype(dtype),
        "bh": (rng.uniform(-k, k, 4 * hidden) + rng.uniform(-k, k, 4 * hidden)).astype(dtype),
    }


def zero_state(batch, hidden, dtype):
    return (np.zeros((batch, hidden), dtype), np.zeros((batch, hidden), dtype))


def halved_sigmoid_columns(Whh, n_sigmoid):
    """Whh^T with the sigmoid gates' columns halved, as a contiguous copy.

    sigmoid(x) = (tanh(x / 2) + 1) / 2 (a form that raises no overflow
    warnings for large |x|, in float32 too). With the sigmoid gates' columns
    of Whh^T halved here and their rows of xw halved by net.py (in the small
    weight table, before the chunk is gathered from it), a step needs one
    tanh over all its gates and then `* 0.5 + 0.5` on the sigmoid ones.
    Halving is exact in floating point, so the gates are bit for bit what
    the formula gives. The copy pays for itself too: OpenBLAS multiplies by
    a contiguous matrix up to 2x faster than by a transposed view here.
    """
    WhhT = np.ascontiguousarray(Whh.T)
    WhhT[:, :n_sigmoid] *= 0.5
    return WhhT


def prepare(p):
    """What forward() derives from the weights alone (see net.prepare)."""
    H = p["Whh"].shape[1]
    return {"WhhT": halved_sigmoid_columns(p["Whh"], 3 * H)}


def forward(p, xw, state, prepared=None, work=None):
    T, B, G = xw.shape
    H = G // 4
    WhhT = (prepared or prepare(p))["WhhT"]
    hs = empty(work, "hs", (T + 1, B, H), xw.dtype)
    cs = empty(work, "cs", (T + 1, B, H), xw.dtype)
    acts = empty(work, "acts", (T, B, G), xw.dtype)  # gate activations i, f, o, g
    tanh_cs = empty(work, "tanh_cs", (T, B, H), xw.dtype)
    hs[0], cs[0] = state
    i, f, o, g = (acts[:, :, k * H : (k + 1) * H] for k in range(4))  # (T, B, H) views
    ig = empty(work, "ig", (B, H), xw.dtype)
    # tanh to sigmoid for i, f, o (* 0.5 + 0.5) and nothing for g (* 1 + 0),
    # as two operations over whole contiguous rows: faster than the same on
    # the strided (B, 3H) slice, which numpy does row by row
    scale = np.full(G, 0.5, xw.dtype)
    shift = np.full(G, 0.5, xw.dtype)
    scale[3 * H :], shift[3 * H :] = 1, 0
    dot, tanh, multiply, add = np.dot, np.tanh, np.multiply, np.add
    for t in range(T):
        a = acts[t]
        dot(hs[t], WhhT, out=a)
        a += xw[t]
        tanh(a, out=a)
        multiply(a, scale, out=a)
        add(a, shift, out=a)
        c = cs[t + 1]
        multiply(f[t], cs[t], out=c)
        multiply(i[t], g[t], out=ig)
        c += ig
        tanh(c, out=tanh_cs[t])
        multiply(o[t], tanh_cs[t], out=hs[t + 1])
    return hs[1:], (hs[T].copy(), cs[T].copy()), (hs, cs, acts, tanh_cs)


def units(cache):
    """Each unit's activation at each step, (time, batch, hidden), for
    pictures of what units track: tanh of the cell state, the long memory
    that Karpathy et al. (2015) found quote and line-length cells in."""
    return cache[3]


def backward(p, dhs, cache, work=None):
    hs, cs, acts, tanh_cs = cache
    T, B, H = dhs.shape
    Whh = p["Whh"]
    i, f, o, g = (acts[:, :, k * H : (k + 1) * H] for k in range(4))
    # Each gate's pre-activation gradient is the gradient on c (on h for o)
    # times a factor known from the forward pass alone:
    #   di = dc * g * i(1-i)   df = dc * c_prev * f(1-f)
    #   do = dh * tanh(c) * o(1-o)   dg = dc * i * (1-g^2)
    # so the factors are computed for the whole chunk before the loop, and
    # each step only multiplies them in place. `q` becomes the gradient.
    q = empty(work, "q", acts.shape, acts.dtype)
    # s(1-s) over all four gates, contiguous (faster than the strided i, f, o
    # slice alone); the g gate's is overwritten below
    np.subtract(1, acts, out=q)
    q *= acts
    q[:, :, :H] *= g
    q[:, :, H : 2 * H] *= cs[:-1]
    q[:, :, 2 * H : 3 * H] *= tanh_cs
    qg = q[:, :, 3 * H :]
    np.multiply(g, g, out=qg)
    np.subtract(1, qg, out=qg)
    qg *= i
    # and dh reaches c through h = o * tanh(c): dc += dh * o * (1 - tanh(c)^2)
    dc_dh = np.multiply(tanh_cs, tanh_cs, out=empty(work, "dc_dh", tanh_cs.shape, tanh_cs.dtype))
    np.subtract(1, dc_dh, out=dc_dh)
    dc_dh *= o

    q4 = q.reshape(T, B, 4, H)
    dh = zeros(work, "dh", (B, H), dhs.dtype)
    dc = zeros(work, "dc", (B, H), dhs.dtype)
    dc_b = dc[:, None, :]  # broadcasts over the i and f gates together
    tmp = empty(work, "tmp", (B, H), dhs.dtype)
    dot, multiply = np.dot, np.multiply
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        multiply(dh, dc_dh[t], out=tmp)
        dc += tmp
        q4[t, :, :2] *= dc_b  # di, df
        q4[t, :, 3] *= dc  # dg
        q4[t, :, 2] *= dh  # do
        dc *= f[t]
        dot(q[t], Whh, out=dh)
    dWhh = q.reshape(T * B, 4 * H).T @ hs[:-1].reshape(T * B, H)
    return q, {"Whh": dWhh}
