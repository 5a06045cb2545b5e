"""Parameter updates. Optimiser state is a flat dict of arrays named
"<slot>.<parameter>" so the model file stores it like the weights."""

import numpy as np

SLOTS = {"adagrad": ("mem",), "adam": ("m", "v")}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
ADAGRAD_EPS = 1e-8  # the seed's


def init(optimizer, params):
    return {f"{slot}.{k}": np.zeros_like(v) for slot in SLOTS[optimizer] for k, v in params.items()}


def shapes(optimizer, param_shapes):
    return {f"{slot}.{k}": s for slot in SLOTS[optimizer] for k, s in param_shapes.items()}


def step(config, params, grads, state, t, seq_length):
    """Update params in place from grads (of the seed's loss: summed over
    time, averaged over streams). t is the update's number, from 1."""
    if config.optimizer == "adagrad":
        _adagrad(params, grads, state, config.lr, config.clip)
    else:
        _adam(params, grads, state, config.lr, config.clip, t, seq_length)


def _adagrad(params, grads, state, lr, clip):
    # exactly the seed: clip each gradient entry, then Adagrad
    for k, p in params.items():
        g, mem = grads[k], state[f"mem.{k}"]
        np.clip(g, -clip, clip, out=g)
        mem += g * g
        p -= lr * g / np.sqrt(mem + ADAGRAD_EPS)


def _adam(params, grads, state, lr, clip, t, seq_length):
    # Adam sees the per-character mean gradient so that lr and the clip norm
    # mean the same at any seq_length; the whole gradient is scaled down
    # together when its global norm exceeds clip.
    norm = np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())) / seq_length
    scale = (1.0 / seq_length) * (min(1.0, clip / norm) if norm > 0 else 1.0)
    b1, b2 = ADAM_BETAS
    step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    for k, p in params.items():
        g, m, v = grads[k], state[f"m.{k}"], state[f"v.{k}"]
        g *= scale
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        p -= step_size * m / (np.sqrt(v) + ADAM_EPS)


def grow(state, n_new):
    """Zero state for n_new new characters: columns of 0.Wxh, rows of the head."""
    out = {}
    for k, v in state.items():
        name = k.split(".", 1)[1]
        if name == "0.Wxh":
            v = np.concatenate([v, np.zeros((v.shape[0], n_new), v.dtype)], axis=1)
        elif name in ("Why", "by"):
            v = np.concatenate([v, np.zeros((n_new,) + v.shape[1:], v.dtype)])
        out[k] = v
    return out
