"""How an update's streams are cut into shards, and the memory in which the
processes of engines.parallel compute them.

The layout (layout()) depends on the batch, the number of workers asked for
and the model's size, never on which process takes a shard, so a run is
bit-identical for a given number of workers however busy the machine is,
and within float rounding of one worker's (which computes the whole batch
at once, as before). Two shards a worker, so that a process slowed by
another program does fewer; one where the recurrent weights outgrow a
core's cache (every shard reads them at every step: on a 2-core machine 4
shards of a GRU 512 cost 1.73x the whole batch's CPU time, 2 shards 1.24x,
of an LSTM 256 1.41x and 1.08x, against 0.95x and 1.03x for the default GRU
192; bench/cores.py --shards); none below SHARD_UNITS streams x units a
shard, where numpy's cost per call outweighs the work (a GRU 64's 4 shards
cost 1.60x): a batch too small to split is computed as on one core.

A shard's gradient and loss are its streams' mean (net.loss), weighted by
its share of the streams; the main process adds them up in shard order.

Dropout (layers > 1, dropout > 0): the main process draws the uniform
numbers from the model's generator in the order one core draws them (for
each layer above the first, one (time, streams, hidden) array), and each
shard takes its streams' part, so the masks are one core's whatever the
number of workers.
"""

import math
import mmap

import numpy as np

from ..cells import net

SHARDS_PER_WORKER = 2  # shards per process where the recurrent weights fit CACHE_BYTES: a slowed process does fewer
CACHE_BYTES = 512 * 1024  # recurrent weights up to this size are read from a core's cache at every step
SHARD_UNITS = 1024  # a shard's least streams x hidden units: below, numpy's cost per call outweighs its work
MAX_SHARDS = 255  # a ticket is one byte


def layout(B, workers, config):
    """The shards' (first, end) stream ranges for a batch of B streams: a
    function of the batch, the number of workers and the model's size alone."""
    G = net.CELLS[config.cell].GATES * config.hidden
    fits = config.hidden * G * np.dtype(config.dtype).itemsize <= CACHE_BYTES
    K = min(B, MAX_SHARDS, (SHARDS_PER_WORKER if fits else 1) * workers, B * config.hidden // SHARD_UNITS)
    K = max(K, 1)
    q, r = divmod(B, K)
    return [(k * q + min(k, r), (k + 1) * q + min(k + 1, r)) for k in range(K)]


class _Draws:
    """What net.forward asks of its rng for dropout, answered from the
    uniform numbers the main process drew for the whole batch: a shard's
    streams' part of each layer's array, in order."""

    def __init__(self, arrays, a, b):
        self.arrays, self.a, self.b = list(arrays), a, b

    def random(self, shape):
        u = self.arrays.pop(0)[:, self.a : self.b]
        assert u.shape == tuple(shape), (u.shape, shape)
        return u


class Space:
    """The memory the processes share, sized for a run's weights and for
    chunks up to (T, B); every array is a prefix of a flat region, so a
    shorter chunk is contiguous too."""

    def __init__(self, params, config, T, B, workers):
        self.config, self.workers = config, workers
        self.T, self.B = T, B
        self.K = len(layout(B, workers, config))
        self.dtype = np.dtype(config.dtype)
        self.names = [(k, v.shape) for k, v in params.items()]
        P = sum(v.size for v in params.values())
        H, L = config.hidden, config.layers
        n_state = len(net.zero_state(config, 1)[0])
        n_draws = L - 1 if config.dropout > 0 else 0
        parts = [("head", np.int64, 3), ("params", self.dtype, P), ("X", np.int64, T * B), ("Y", np.int64, T * B),
                 ("state_in", self.dtype, L * n_state * B * H), ("state_out", self.dtype, L * n_state * B * H),
                 ("draws", np.float64, max(n_draws * T * B * H, 1)), ("grads", self.dtype, self.K * P),
                 ("losses", np.float64, self.K)]  # fmt: skip
        offsets, size = {}, 0
        for name, dtype, n in parts:
            offsets[name] = size
            size += -(-n * np.dtype(dtype).itemsize // 64) * 64  # each region cache-line aligned
        self.map = mmap.mmap(-1, size)  # anonymous and shared: the workers forked after see the same pages
        for name, dtype, n in parts:
            setattr(self, name, np.frombuffer(self.map, dtype, n, offsets[name]))
        self.grads = self.grads.reshape(self.K, P)
        self.n_state, self.n_draws, self.P = n_state, n_draws, P
        self.sum = np.empty(P, self.dtype)  # the main process's, not shared

    def fits(self, params, config, T, B):
        return (
            [(k, v.shape) for k, v in params.items()] == self.names
            and config.dtype == self.config.dtype
            and (config.cell, config.hidden, config.layers, config.dropout)
            == (self.config.cell, self.config.hidden, self.config.layers, self.config.dropout)
            and T <= self.T
            and B <= self.B
        )

    def views(self, flat):
        """name -> array of flat (the weights, or a gradient slot)."""
        out, start = {}, 0
        for name, shape in self.names:
            n = math.prod(shape)
            out[name] = flat[start : start + n].reshape(shape)
            start += n
        return out

    def states(self, flat, B):
        """Per layer, the tuple of (B, hidden) state arrays in flat."""
        H, n = self.config.hidden, self.n_state
        size = B * H
        return [tuple(flat[(l * n + j) * self.B * H :][:size].reshape(B, H) for j in range(n))
                for l in range(self.config.layers)]  # fmt: skip

    def chunk(self, T, B):
        X, Y = self.X[: T * B].reshape(T, B), self.Y[: T * B].reshape(T, B)
        H = self.config.hidden
        draws = [self.draws[l * self.T * self.B * H :][: T * B * H].reshape(T, B, H) for l in range(self.n_draws)]
        return X, Y, draws

    def put(self, params, X, Y, state, rng):
        """The main process: this update's inputs, into the shared memory."""
        T, B = X.shape
        self.head[:] = T, B, rng is not None
        flat, start = self.params, 0
        for value in params.values():
            flat[start : start + value.size] = value.reshape(-1)
            start += value.size
        x, y, draws = self.chunk(T, B)
        x[...], y[...] = X, Y
        for into, layer in zip(self.states(self.state_in, B), state, strict=True):
            for a, s in zip(into, layer, strict=True):
                a[...] = s
        for d in draws if rng is not None else ():  # in one core's order (net.forward): by layer, whole batch
            rng.random(out=d)

    def compute(self, k):
        """Shard k of the update in the shared memory, into its slot."""
        T, B, drawn = (int(v) for v in self.head)
        a, b = layout(B, self.workers, self.config)[k]
        X, Y, draws = self.chunk(T, B)
        state = [tuple(s[a:b] for s in layer) for layer in self.states(self.state_in, B)]
        rng = _Draws(draws, a, b) if drawn else None
        loss, grads, new = net.loss(self.views(self.params), self.config, X[:, a:b], Y[:, a:b], state, rng)
        share = (b - a) / B
        for name, slot in self.views(self.grads[k]).items():
            np.multiply(grads[name], self.dtype.type(share), out=slot)
        self.losses[k] = loss * share
        for out, layer in zip(self.states(self.state_out, B), new, strict=True):
            for o, s in zip(out, layer, strict=True):
                o[a:b] = s

    def total(self, K, B):
        """(loss, grads, new state) of the whole batch: the slots added up in shard order."""
        g = self.grads
        np.add(g[0], g[1], out=self.sum)
        for k in range(2, K):
            self.sum += g[k]
        loss = 0.0
        for k in range(K):
            loss += float(self.losses[k])
        state = [tuple(s.copy() for s in layer) for layer in self.states(self.state_out, B)]
        return loss, self.views(self.sum), state
