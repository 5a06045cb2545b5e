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

Adam counts its updates per vocabulary slot. A character added to the
vocabulary after training began starts with zero moments, so its slices (its
column of "0.Wxh", its rows of "Why" and "by") get the bias correction of a
fresh Adam at their own count, t - added_at[i], where added_at is the update
count at which the slot was added (state "added_at", int64, one per slot).
Without it their first updates would be about 3x, and later up to 6.6x, the
step of a fresh Adam. While every slot has added_at 0 (a vocabulary that
never grew after the first update) the update is exactly the plain one.
"""

import math
import weakref

import numpy as np

SLOTS = {"adagrad": ("mem",), "adam": ("m", "v")}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
ADAGRAD_EPS = 1e-8  # the seed's
ADDED = "added_at"  # Adam: the update count at which each vocabulary slot was added
COUNTERS = (ADDED,)  # the state's integer arrays, one entry per vocabulary slot
# the parameters the vocabulary indexes, and the axis it indexes
VOCAB_AXES = {"0.Wxh": 1, "Why": 0, "by": 0}


def init(optimizer, params, iterations=0):
    """Zero state for params, made when iterations updates had been made."""
    state = {f"{slot}.{k}": np.zeros_like(v) for slot in SLOTS[optimizer] for k, v in params.items()}
    state.update({k: np.full(s, iterations, np.int64) for k, s in counters(optimizer, params["by"].shape[0]).items()})
    return state


def shapes(optimizer, param_shapes):
    """The moment arrays' shapes, "<slot>.<param>" -> shape (the params' dtype)."""
    return {f"{slot}.{k}": s for slot in SLOTS[optimizer] for k, s in param_shapes.items()}


def counters(optimizer, vocab_size):
    """The per-vocabulary-slot integer arrays (int64): name -> shape."""
    return {ADDED: (vocab_size,)} if optimizer == "adam" else {}


def step(config, params, grads, state, t, seq_length, lr=None):
    """Update params in place from grads (of the seed's loss: summed over
    time, averaged over streams). t is the update's number, from 1; lr, when
    given, replaces config.lr for this update (a schedule's rate).
    Returns False, changing nothing, if a gradient is NaN or infinite."""
    lr = config.lr if lr is None else lr
    slots = SLOTS[config.optimizer]
    flat_params, flat_state = _packed(params, state, slots)
    g = np.concatenate([grads[k].reshape(-1) for k in params])
    if not np.isfinite(g).all():  # one check over the packed gradient
        return False
    if config.weight_decay:
        flat_params *= shrink(lr, config.weight_decay)
    if config.optimizer == "adagrad":
        _adagrad(flat_params, g, flat_state["mem"], lr, config.clip)
    else:
        rows = _vocab_rows(params, state.get(ADDED), t, flat_params.dtype)
        _adam(flat_params, g, flat_state["m"], flat_state["v"], lr, config.clip, t, seq_length, rows)
    return True


def _vocab_rows(params, added, t, dtype):
    """None while every vocabulary slot has Adam's global count t (the common
    case: one cheap test); otherwise, for each parameter the vocabulary
    indexes, (its offset in the flat buffers, its shape, the index of its
    slices from the first slot with a count of its own, a factor for each of
    those slots shaped to broadcast over them).

    The plain update is step_size(t) m / (sqrt(v) + eps) with step_size(t) =
    lr sqrt(1 - b2^t) / (1 - b1^t); a slot with its own count t_i gets
    step_size(t_i) instead, the same update a fresh Adam of this form makes
    at its t_i-th step: the step is multiplied by step_size(t_i) /
    step_size(t), exactly 1 where t_i = t so those slots are untouched."""
    vocab = vocab_factor(added, t, dtype)
    if vocab is None:
        return None
    first, factor = vocab
    rows, start = [], 0
    for k, p in params.items():  # the order _packed lays them out in
        if k in VOCAB_AXES:
            axis = VOCAB_AXES[k]
            index, shape = [slice(None)] * p.ndim, [1] * p.ndim
            index[axis], shape[axis] = slice(first, None), -1
            rows.append((start, p.shape, tuple(index), factor.reshape(shape)))
        start += p.size
    return rows


def vocab_factor(added, t, dtype):
    """None while every vocabulary slot has Adam's global count t; otherwise
    (the first slot with a count of its own, the factor its step and every
    later slot's is multiplied by). The torch engine shares it, so both
    engines scale the same slots by the same numbers."""
    if added is None or not added.any():
        return None
    # a slot added at a later count than this update's (a rollback past its
    # growth rewound t) counts from this update, and is stored so, as the
    # model file does (modelfile.pack), so that resuming stays exact
    np.minimum(added, t - 1, out=added)
    first = int(np.flatnonzero(added)[0])  # slots are appended: usually the grown tail
    b1, b2 = ADAM_BETAS
    own = (t - added[first:]).astype(np.float64)
    size = np.sqrt(1 - b2**own) / (1 - b1**own)
    factor = np.where(own == t, 1.0, size / (np.sqrt(1 - b2**t) / (1 - b1**t))).astype(dtype)
    return first, factor


def shrink(lr, weight_decay):
    """What weight decay multiplies every weight by before an update:
    decoupled from the gradient (Loshchilov and Hutter's AdamW), so it is the
    same for every weight whatever the optimiser's scaling. Never below 0: a
    wild rate (which the divergence guard then lowers) must not flip every
    weight's sign and blow it up, which no rollback could then undo."""
    return max(0.0, 1.0 - lr * weight_decay)


def _adagrad(p, g, mem, lr, clip):
    # exactly the seed: clip each gradient entry, then Adagrad. Two ufuncs
    # rather than np.clip, whose Python wrapper costs more than the clipping
    # at the seed's 23k parameters (the gradient is finite here: checked)
    np.minimum(g, clip, out=g)
    np.maximum(g, -clip, out=g)
    step = g * g  # the one scratch array; `out=` everywhere else
    mem += step
    np.add(mem, ADAGRAD_EPS, out=step)
    np.sqrt(step, out=step)
    np.divide(g, step, out=step)
    step *= lr
    p -= step


def _adam(p, g, m, v, lr, clip, t, seq_length, rows=None):
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
    if rows is not None:  # vocabulary slots with their own count (_vocab_rows)
        for start, shape, index, factor in rows:
            view = step[start : start + math.prod(shape)].reshape(shape)[index]
            view *= factor  # in place: `step[...][index] *= ` would copy it back again
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


def grow(state, n_new, iterations):
    """Zero state for n_new new characters, added when iterations updates
    had been made: columns of 0.Wxh, rows of the head."""
    out = {}
    for k, v in state.items():
        if k == ADDED:
            out[k] = np.concatenate([v, np.full(n_new, iterations, v.dtype)])
            continue
        name = k.split(".", 1)[1]
        if name == "0.Wxh":
            v = np.concatenate([v, np.zeros((v.shape[0], n_new), v.dtype)], axis=1)
        elif name in ("Why", "by"):
            v = np.concatenate([v, np.zeros((n_new,) + v.shape[1:], v.dtype)])
        out[k] = v
    return out
