"""The seed's vanilla RNN cell: h = tanh(Wxh x + Whh h + bh).

Every cell module has the same functions: init, zero_state, prepare, forward
and backward. The network (net.py) owns the input projection, so a cell sees
`xw`, the chunk's inputs already multiplied by Wxh with bh added, shaped
(time, batch, gates * hidden), with the rows of its first SIGMOID_GATES gates
halved (lstm.py says why); the cell runs only the recurrence, the one part
that must loop over time steps.

Speed rules every cell follows (docs/benchmarks.md has the measurements):
each step is a handful of numpy calls writing into preallocated slabs with
`out=`, and anything that does not depend on the previous step is computed
for the whole chunk at once, outside the loop. At the seed's sizes a step's
cost is call overhead, not arithmetic, hence np.dot rather than np.matmul in
the loops (same BLAS call, a third less overhead: 1.1 vs 1.7 us for 1 x 100
by 100 x 100) and each step's slices made once, before the loop.
"""

import numpy as np

from .workspace import empty, zeros

GATES = 1  # rows of Wxh and Whh per hidden unit
SIGMOID_GATES = 0  # gates whose rows of xw net.py halves (see lstm.py)


def init(rng, n_in, hidden, dtype, k_in=None):
    """Weights N(0, 1) * 0.01 and zero bias, drawn in the seed's order
    (k_in, the gated cells' input scale, does not apply: this is the seed's cell)."""
    return {
        "Wxh": (rng.standard_normal((hidden, n_in)) * 0.01).astype(dtype),
        "Whh": (rng.standard_normal((hidden, hidden)) * 0.01).astype(dtype),
        "bh": np.zeros(hidden, dtype),
    }


def zero_state(batch, hidden, dtype):
    return (np.zeros((batch, hidden), dtype),)


def prepare(p):
    """What forward() derives from the weights alone; net.prepare says when."""
    # OpenBLAS multiplies by a contiguous matrix up to 2x faster than by a
    # transposed view at these sizes; one copy per chunk pays for itself
    return {"WhhT": np.ascontiguousarray(p["Whh"].T)}


def forward(p, xw, state, prepared=None, work=None):
    """Run the recurrence over a chunk; returns (hs, last state, cache).
    prepared is prepare(p), when the caller has it; work is a workspace
    (workspace.py) that net.loss lends for the chunk's arrays."""
    T, B, H = xw.shape
    hs = empty(work, "hs", (T + 1, B, H), xw.dtype)  # hs[0] is the incoming state
    hs[0] = state[0]
    WhhT = (prepared or prepare(p))["WhhT"]
    dot, tanh, add = np.dot, np.tanh, np.add
    h_prev, h_next, xs = hs[0], list(hs[1:]), list(xw)
    for t in range(T):
        h = h_next[t]
        dot(h_prev, WhhT, out=h)
        add(h, xs[t], out=h)
        tanh(h, out=h)
        h_prev = h
    return hs[1:], (hs[T].copy(),), hs


def units(cache):
    """Each unit's activation at each step, (time, batch, hidden): the hidden
    state (see lstm.units)."""
    return cache[1:]


def backward(p, dhs, hs, work=None):
    """Backpropagate through time. dhs is the loss gradient on each output h
    from above; returns the gradient on xw and on the recurrent weights."""
    T, B, H = dhs.shape
    Whh = p["Whh"]
    # tanh' = 1 - h^2 for every step at once, before the loop
    draw = np.multiply(hs[1:], hs[1:], out=empty(work, "draw", (T, B, H), dhs.dtype))
    np.subtract(1, draw, out=draw)
    dh = zeros(work, "dh", (B, H), dhs.dtype)
    dot, multiply, add = np.dot, np.multiply, np.add
    ds, dhs_t = list(draw), list(dhs)
    for t in range(T - 1, -1, -1):
        add(dh, dhs_t[t], out=dh)
        d = ds[t]  # becomes the gradient before the tanh, in place
        multiply(d, dh, out=d)
        dot(d, Whh, out=dh)
    # one product over the whole chunk instead of one per step
    dWhh = draw.reshape(T * B, H).T @ hs[:-1].reshape(T * B, H)
    return draw, {"Whh": dWhh}
