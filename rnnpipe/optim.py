"""Parameter updates. Optimiser state is a flat dict of arrays named
"<slot>.<parameter>" so the model file stores it like the weights.

For speed the update works on all parameters at once. A model keeps its
parameters in one flat buffer and each slot of its optimiser state in one
flat buffer of its own, laid out alike (Buffers, made by the model whenever
its arrays are made: new, loaded, grown, restored); its params and opt_state
dicts hold views into them. An update is then about ten numpy calls whatever
the number of parameters, instead of ten per parameter, which at the seed's
sizes (5 small arrays) is most of an update's cost. step() updates any other
dicts of arrays in place through flat copies: the same numbers, slower.

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
    """Update params and state (any dicts of arrays) in place from grads, as
    Buffers.step does: through flat copies of them, the results written
    back into the same arrays. Returns False, changing nothing, if a
    gradient is NaN or infinite."""
    buffers = Buffers(config.optimizer, params, state)
    if not buffers.step(config, grads, t, seq_length, lr):
        return False
    for arrays, updated in ((params, buffers.params), (state, buffers.state)):
        for k, v in updated.items():
            np.copyto(arrays[k], v)
    return True


class Views(dict):
    """Arrays by name that are views into an owner's flat buffers (Buffers).
    Setting a name writes the new values into its view, as writing the array
    in place does, so the buffers stay the one home of every array and every
    holder of the dict sees the owner's updates; a new shape needs new
    Buffers (the model's: assign model.params or model.opt_state whole)."""

    def __setitem__(self, name, value):
        view = self[name]
        if np.shape(value) != view.shape:
            raise ValueError(f"{name} has shape {view.shape}, not {np.shape(value)}: replace the whole dict to reshape")
        view[...] = value

    def update(self, *args, **changes):
        for name, value in dict(*args, **changes).items():
            self[name] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def __reduce__(self):  # a copy (copy.deepcopy, pickle) is a plain dict: no owner holds it
        return dict, (dict(self),)


class Buffers:
    """A model's parameters and optimiser state, laid out for the update:
    the parameters end to end in one flat buffer (flat), each slot of the
    state ("mem"; or Adam's "m" and "v") in one flat buffer of its own in the
    same order (slots), the counters (COUNTERS) as arrays of their own.
    params and state are Views of them under the model file's names, in the
    order given. Made from copies of the arrays given: the owner holds the
    only references to its buffers, and no one else's dict is touched."""

    def __init__(self, optimizer, params, state):
        self.optimizer = optimizer
        names = tuple(params)
        self.flat, self.params = _pack(params, names)
        self.slots, packed = {}, {}
        for slot in SLOTS[optimizer]:
            self.slots[slot], views = _pack(state, [f"{slot}.{k}" for k in names], self.params)
            packed.update(views)
        self.state = Views((k, packed[k] if k in packed else np.array(v)) for k, v in state.items())

    def __reduce__(self):  # copied (copy.deepcopy, pickle) as new buffers of the same arrays
        return Buffers, (self.optimizer, dict(self.params), dict(self.state))

    def step(self, config, grads, t, seq_length, lr=None):
        """Update the parameters in place from grads (of the seed's loss:
        summed over time, averaged over streams). t is the update's number,
        from 1; lr, when given, replaces config.lr for this update (a
        schedule's rate). Returns False, changing nothing, if a gradient is
        NaN or infinite."""
        lr = config.lr if lr is None else lr
        g = np.concatenate([grads[k].reshape(-1) for k in self.params])
        if not np.isfinite(g).all():  # one check over the packed gradient
            return False
        if config.weight_decay:
            self.flat *= shrink(lr, config.weight_decay)
        if self.optimizer == "adagrad":
            _adagrad(self.flat, g, self.slots["mem"], lr, config.clip)
        else:
            rows = _vocab_rows(self.params, self.state.get(ADDED), t, self.flat.dtype)
            _adam(self.flat, g, self.slots["m"], self.slots["v"], lr, config.clip, t, seq_length, rows)
        return True

    def put(self, params, state):
        """Write params and state (name -> array, as a snapshot of these
        holds them) into these arrays in place; an array the vocabulary has
        grown since keeps its new rows and columns."""
        for mine, saved in ((self.params, params), (self.state, state)):
            for name, array in saved.items():
                overlay(mine[name], array)


def overlay(array, saved):
    """Copy saved into array in place: all of it, or where array has grown
    since saved was taken, its leading rows and columns."""
    if array.shape == saved.shape:
        array[...] = saved
    else:
        array[tuple(slice(0, n) for n in saved.shape)] = saved


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
    for k, p in params.items():  # the order Buffers lays them out in
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


def _pack(arrays, names, like=None):
    """(one new flat buffer holding arrays[name] for each name in order,
    Views of it by name); like: arrays of the same shapes in the same order
    (the parameters, for the optimiser's slots)."""
    if like is not None:
        for k, want in zip(names, like.values(), strict=True):
            if arrays[k].shape != want.shape:
                raise ValueError(f"optimiser state {k} has shape {arrays[k].shape}, its parameter {want.shape}")
    dtype = np.result_type(*(arrays[k] for k in names))
    flat = np.empty(sum(arrays[k].size for k in names), dtype)
    views, start = Views(), 0
    for k in names:
        a = arrays[k]
        view = flat[start : start + a.size].reshape(a.shape)
        view[...] = a
        dict.__setitem__(views, k, view)
        start += a.size
    return flat, views


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
