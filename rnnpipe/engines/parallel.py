"""Every core for the numpy engine: each update's streams cut into shards
that worker processes compute at once, with the maths of one core.

Processes, not threads. On 2 cores, the default GRU's update (32 streams,
22 ms) ran 1.1-1.3x as fast on two threads sharing the streams: a step is
thousands of small numpy calls, each holding the GIL for its setup, so the
threads mostly wait for each other. Forked processes share nothing but a
block of memory, and ran it 1.7-1.8x as fast (docs/benchmarks.md, "Every
core"). OpenBLAS's own threads are no better: they gain little on these
small products and collapse when another program is busy (--threads).

An update (Pool.loss, which Model.step calls in place of net.loss):
1. The main process writes the weights, the chunk and the streams' state
   into memory shared with the workers (an anonymous mapping made before
   they were forked: no file, nothing left behind), then one ticket per
   shard into a pipe.
2. The workers and the main process itself take tickets until none are
   left, each computing net.loss on its shard's streams and writing the
   shard's gradient and loss, weighted by its share of the streams, and its
   new state into the shard's own slot.
3. The main process adds the slots up in shard order; the optimiser update
   stays in it (Model.step), as does everything else a run does.

The layout (layout()): B streams are cut into min(B, SHARDS_PER_WORKER *
workers) shards of consecutive streams, as even as can be. It depends on the
batch and the number of workers asked for, never on which process takes a
ticket, so a run is bit-identical for a given number of workers however busy
the machine is, and within float rounding of one worker's (one worker
computes the whole batch at once, as before). More shards than processes let
a process slowed by another program do fewer of them: with a core busy, a
run on both was never slower than on one quiet core (docs/benchmarks.md).

Dropout (layers > 1, dropout > 0): the main process draws the uniform
numbers from the model's generator in the order one core draws them (for
each layer above the first, one (time, streams, hidden) array), and each
shard takes its streams' part; so the masks are one core's, whatever the
number of workers.

The workers: forked at the run's first update (again if the vocabulary
grows), they hold no file of the main process's (not the model's lock, not
its input), ignore SIGINT and SIGTERM (the main process alone handles them,
session.Interrupt), use one BLAS thread, and die with it: PR_SET_PDEATHSIG,
and the ticket pipe's end of file. One that dies (killed) leaves its shards
to the main process, which goes on alone with the same layout. Linux only
(fork, sched_getaffinity, prctl): elsewhere one worker.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import select
import signal
import sys
import time
import warnings

import numpy as np

from ..cells import net

SHARDS_PER_WORKER = 2  # shards per process where the recurrent weights fit CACHE_BYTES: a slowed process does fewer
CACHE_BYTES = 512 * 1024  # recurrent weights up to this size are read from a core's cache at every step
SHARD_UNITS = 1024  # a shard's least streams x hidden units: below, numpy's cost per call outweighs its work
MAX_SHARDS = 255  # a ticket is one byte
SHARE, ALONE = "share", "alone"  # the two ways an update is computed (Pool.measure)
WINDOW = 16  # updates in each measurement of a way's speed
PROBE = 50  # windows, at most, between measurements of the way not chosen
CHANGE = 0.25  # a change of speed that has the way not chosen measured again


def available():
    """Whether this platform can fork workers."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def count(workers=None):
    """How many workers a run uses: workers, or None for every core this
    process may use (so `taskset -c 0` means one); one where workers cannot be."""
    if not available():
        return 1
    return len(os.sched_getaffinity(0)) if workers is None else workers


def layout(B, workers, config):
    """The shards' (first, end) stream ranges for a batch of B streams: a
    function of the batch, the number of workers and the model's size alone."""
    G = net.CELLS[config.cell].GATES * config.hidden
    fits = config.hidden * G * np.dtype(config.dtype).itemsize <= CACHE_BYTES
    K = min(B, MAX_SHARDS, (SHARDS_PER_WORKER if fits else 1) * workers, B * config.hidden // SHARD_UNITS)
    K = max(K, 1)
    q, r = divmod(B, K)
    return [(k * q + min(k, r), (k + 1) * q + min(k + 1, r)) for k in range(K)]


@contextlib.contextmanager
def cores(model, workers):
    """While training model: model.pool is a Pool of count(workers) workers,
    or None for one (or the torch engine, which is left alone)."""
    n = 1 if model.engine is not None else count(workers)
    if n == 1:
        yield
        return
    model.pool = Pool(n)
    try:
        yield
    finally:
        model.pool.close()
        model.pool = None


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


class Pool:
    """Workers - 1 forked processes and this one, computing net.loss over
    shards of the streams (see the module's docstring)."""

    def __init__(self, workers):
        self.workers = workers
        self.space = None
        self.children = {}  # pid -> the read end of its pipe of finished shards
        self.tickets = None  # (read, write) ends of the ticket pipe
        self.lost = False  # a worker died: the main process computes every shard from then on
        self.way = SHARE  # how the next updates are computed: shared, or every shard here (ALONE)
        self.per_char = {SHARE: None, ALONE: None}  # each way's latest seconds per character
        self.window = [0, 0, 0.0]  # updates, characters, seconds of the window being measured
        self.windows = 0
        self.probing, self.since = False, 0  # measuring the way not chosen; windows since it was
        self.steps = {SHARE: 0, ALONE: 0}
        self.seconds = {"put": 0.0, "own": 0.0, "wait": 0.0, "total": 0.0}  # where the main process's time went

    def loss(self, params, config, X, Y, state, rng=None):
        """net.loss, computed by the pool."""
        T, B = X.shape
        shards = layout(B, self.workers, config)
        if len(shards) == 1:
            return net.loss(params, config, X, Y, state, rng)
        try:
            if self.space is None or not self.space.fits(params, config, T, B):
                self.start(params, config, T, B)
            return self.update(params, X, Y, state, rng, len(shards))
        except BaseException:
            self.close()  # an update cut short leaves tickets and slots half done: start afresh
            raise

    def update(self, params, X, Y, state, rng, K):
        s, clock = self.space, time.perf_counter
        t0 = clock()
        s.put(params, X, Y, state, rng)
        t1 = clock()
        way = ALONE if self.lost else self.way
        todo = set(range(K))
        if way == ALONE:
            for k in range(K):
                s.compute(k)
            todo.clear()
        else:
            os.write(self.tickets[1], bytes(range(K)))
            while True:  # take tickets as the workers do
                try:
                    got = os.read(self.tickets[0], 1)
                except BlockingIOError:
                    break
                s.compute(got[0])
                todo.discard(got[0])
        t2 = clock()
        self.wait(todo)
        t3 = clock()
        out = s.total(K, X.shape[1])
        t4 = clock()
        for name, t in (("put", t1 - t0), ("own", t2 - t1), ("wait", t3 - t2), ("total", t4 - t3)):
            self.seconds[name] += t
        self.steps[way] += 1
        if not self.lost:
            self.measure(t4 - t0, X.size)
        return out

    def measure(self, seconds, chars):
        """Count an update into the window; at its end, choose the way the
        next window computes: the faster one, after measuring the other
        (probing) when the chosen one's speed has changed by CHANGE (a core
        has become busy, or free) and at least every PROBE windows. Both
        ways give the same bits."""
        w = self.window
        w[:] = w[0] + 1, w[1] + chars, w[2] + seconds
        if w[0] < WINDOW:
            return
        rate, way = w[2] / w[1], self.way
        self.window, self.windows = [0, 0, 0.0], self.windows + 1
        if self.windows == 1:
            return  # the first window holds the workers' start and first allocations
        other = ALONE if way == SHARE else SHARE
        before, self.per_char[way] = self.per_char[way], rate
        if self.probing:  # both ways just measured
            self.way, self.probing, self.since = min(self.per_char, key=self.per_char.get), False, 0
            return
        self.since += 1
        if self.per_char[other] is None or self.since >= PROBE or abs(rate / before - 1) > CHANGE:
            self.way, self.probing = other, True

    def wait(self, todo):
        """Until the workers have finished the shards in todo; a shard a
        worker failed on is computed here (raising its error here, where it
        is shown), and so is every one left when a worker dies."""
        poller = select.poll()
        fds = {fd: pid for pid, fd in self.children.items()}
        for fd in fds:
            poller.register(fd, select.POLLIN)
        while todo:
            for fd, _ in poller.poll():
                data = os.read(fd, 512)
                if not data:  # the worker died
                    self.lost = True
                    self.stop()
                    for k in sorted(todo):
                        self.space.compute(k)
                    return
                for k, ok in zip(data[::2], data[1::2], strict=True):
                    if not ok:
                        self.space.compute(k)
                    todo.discard(k)

    def start(self, params, config, T, B):
        """Make the shared memory for chunks up to (T, B) and fork the workers."""
        self.stop()
        T, B = max(T, config.seq_length), max(B, config.batch_size)
        self.space = Space(params, config, T, B, self.workers)
        if self.lost:
            return
        read, write = os.pipe()
        os.set_blocking(read, False)
        self.tickets = (read, write)
        for _ in range(self.workers - 1):
            done_read, done_write = os.pipe()
            pid = _fork(self.space, read, done_write)
            os.close(done_write)
            self.children[pid] = done_read

    def stop(self):
        """End the workers (they hold nothing to save) and close the pipes."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid, fd in self.children.items():
            os.close(fd)
            with contextlib.suppress(ChildProcessError):  # reaped by someone else's handler
                os.waitpid(pid, 0)
        self.children = {}
        if self.tickets is not None:
            for fd in self.tickets:
                os.close(fd)
            self.tickets = None

    def close(self):
        self.stop()
        self.space = None


def _fork(space, tickets, done):
    """Fork a worker serving space; returns its pid in the main process."""
    from threadpoolctl import threadpool_limits

    parent = os.getpid()
    prctl = _prctl()
    # blocked across the fork and never unblocked in the worker: the main process alone takes them
    old = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
    try:
        # the worker's BLAS keeps the one thread it is forked with; and the worker calls nothing that takes a
        # lock another thread of this process (a notebook kernel's) could hold, so fork's warning does not apply
        with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _worker(space, tickets, done, parent, prctl)  # never returns
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid


def _prctl():
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PR_SET_PDEATHSIG = 1


def _worker(space, tickets, done, parent, prctl):
    status = 0
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, signal.SIG_IGN)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the main process died before prctl took
            return
        for fd in os.listdir("/proc/self/fd"):  # not the lock, the input, the other workers' pipes
            if int(fd) > 2 and int(fd) not in (tickets, done):
                with contextlib.suppress(OSError):
                    os.close(int(fd))
        poller = select.poll()
        poller.register(tickets, select.POLLIN)
        while True:
            poller.poll()
            try:
                got = os.read(tickets, 1)
            except BlockingIOError:  # another process took it
                continue
            if not got:  # the main process closed the pipe, or died
                return
            ok = 1
            try:
                space.compute(got[0])
            except Exception:  # the main process computes it again, and shows the error
                ok = 0
            os.write(done, bytes((got[0], ok)))
    except BaseException:
        status = 1
    finally:
        os._exit(status)
