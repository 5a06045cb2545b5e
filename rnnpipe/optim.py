"""Parameter updates. Optimiser state is a flat dict of arrays named
"<slot>.<parameter>" so the model file stores it like the weights.

For speed the update works on all parameters at once: on its first step
with a given dict, step() copies the parameters, and each slot of the
optimiser state, into one flat buffer each and puts views of those buffers
back into the dicts under the same names. Every later update is then about
ten numpy calls whatever the number of parameters, instead of ten per
parameter, which at the seed's sizes (5 small arrays) is most of an update's
cost. A dict whose arrays are replaced (loading, growing the vocabulary) is
simply packed again on its next step.
"""

import weakref

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
    time, averaged over streams). t is the update's number, from 1.
    Returns False, changing nothing, if a gradient is NaN or infinite."""
    slots = SLOTS[config.optimizer]
    flat_params, flat_state = _packed(params, state, slots)
    g = np.concatenate([grads[k].reshape(-1) for k in params])
    if not np.isfinite(g).all():  # one check over the packed gradient
        return False
    if config.optimizer == "adagrad":
        _adagrad(flat_params, g, flat_state["mem"], config.lr, config.clip)
    else:
        _adam(flat_params, g, flat_state["m"], flat_state["v"], config.lr, config.clip, t, seq_length)
    return True


def _adagrad(p, g, mem, lr, clip):
    # exactly the seed: clip each gradient entry, then Adagrad
    np.clip(g, -clip, clip, out=g)
    step = g * g  # the one scratch array; `out=` everywhere else
    mem += step
    np.add(mem, ADAGRAD_EPS, out=step)
    np.sqrt(step, out=step)
    np.divide(g, step, out=step)
    step *= lr
    p -= step


def _adam(p, g, m, v, lr, clip, t, seq_length):
    # Adam sees the per-character mean gradient so that lr and the clip norm
    # mean the same at any seq_length; the whole gradient is scaled down
    # together when its global norm exceeds clip.
    norm = np.sqrt(float(np.dot(g, g))) / seq_length
    scale = (1.0 / seq_length) * (min(1.0, clip / norm) if norm > 0 else 1.0)
    b1, b2 = ADAM_BETAS
    step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    # m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2, then
    # p -= step_size m / (sqrt(v) + eps), with one scratch array
    g *= scale
    m *= b1
    v *= b2
    step = np.multiply(g, 1 - b1)
    m += step
    np.multiply(g, g, out=step)
    step *= 1 - b2
    v += step
    np.sqrt(v, out=step)
    step += ADAM_EPS
    np.divide(m, step, out=step)
    step *= step_size
    p -= step


# id of a flat parameter buffer -> (names, weak references to the views of
# it and of the state buffers that step() put in the dicts). An entry goes
# when its buffer is freed, so an id is never mistaken for a reused one.
_LAYOUTS = {}


def _packed(params, state, slots):
    """The flat buffers behind params and each slot of state, packing the
    dicts first unless they hold exactly the views of an earlier packing."""
    names = tuple(params)
    views = [params[k] for k in names] + [state[f"{s}.{k}"] for s in slots for k in names]
    buffer = views[0].base
    layout = _LAYOUTS.get(id(buffer)) if buffer is not None else None
    if (
        layout is not None
        and layout[0] == names
        and len(layout[1]) == len(views)
        and all(v is r() for v, r in zip(views, layout[1], strict=False))
    ):
        return buffer, {s: state[f"{s}.{names[0]}"].base for s in slots}
    flat_params = _pack(params, names)
    flat_state = {s: _pack(state, [f"{s}.{k}" for k in names]) for s in slots}
    views = [params[k] for k in names] + [state[f"{s}.{k}"] for s in slots for k in names]
    _LAYOUTS[id(flat_params)] = (names, [weakref.ref(v) for v in views])
    weakref.finalize(flat_params, _LAYOUTS.pop, id(flat_params), None)
    return flat_params, flat_state


def _pack(arrays, names):
    """Copy arrays[name] for each name into one new flat buffer, in order,
    and put views of it back into the dict; returns the buffer."""
    dtype = np.result_type(*(arrays[k] for k in names))
    flat = np.empty(sum(arrays[k].size for k in names), dtype)
    start = 0
    for k in names:
        a = arrays[k]
        view = flat[start : start + a.size].reshape(a.shape)
        view[...] = a
        arrays[k] = view
        start += a.size
    return flat


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
