"""The seed's vanilla RNN cell: h = tanh(Wxh x + Whh h + bh).

Every cell module has the same four functions. The network (net.py) owns the
input projection, so a cell sees `xw`, the chunk's inputs already multiplied by
Wxh with bh added, shaped (time, batch, gates * hidden); the cell runs only the
recurrence, the one part that must loop over time steps.
"""

import numpy as np

GATES = 1  # rows of Wxh and Whh per hidden unit


def init(rng, n_in, hidden, dtype):
    """Weights N(0, 1) * 0.01 and zero bias, drawn in the seed's order."""
    return {
        "Wxh": (rng.standard_normal((hidden, n_in)) * 0.01).astype(dtype),
        "Whh": (rng.standard_normal((hidden, hidden)) * 0.01).astype(dtype),
        "bh": np.zeros(hidden, dtype),
    }


def zero_state(batch, hidden, dtype):
    return (np.zeros((batch, hidden), dtype),)


def forward(p, xw, state):
    """Run the recurrence over a chunk; returns (hs, last state, cache)."""
    T, B, H = xw.shape
    hs = np.empty((T + 1, B, H), xw.dtype)  # hs[0] is the incoming state
    hs[0] = state[0]
    WhhT = p["Whh"].T
    for t in range(T):
        np.matmul(hs[t], WhhT, out=hs[t + 1])
        hs[t + 1] += xw[t]
        np.tanh(hs[t + 1], out=hs[t + 1])
    return hs[1:], (hs[T].copy(),), hs


def backward(p, dhs, hs):
    """Backpropagate through time. dhs is the loss gradient on each output h
    from above; returns the gradient on xw and on the recurrent weights."""
    T, B, H = dhs.shape
    Whh = p["Whh"]
    draw = np.empty_like(dhs)  # gradient before the tanh, one slab per step
    dh = np.zeros((B, H), dhs.dtype)
    for t in reversed(range(T)):
        dh += dhs[t]
        h = hs[t + 1]
        np.multiply(dh, 1 - h * h, out=draw[t])
        np.matmul(draw[t], Whh, out=dh)
    # one product over the whole chunk instead of one per step
    dWhh = draw.reshape(T * B, H).T @ hs[:-1].reshape(T * B, H)
    return draw, {"Whh": dWhh}
