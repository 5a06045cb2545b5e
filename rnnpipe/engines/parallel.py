"""Every core for the numpy engine: each update's streams cut into shards
that worker processes compute at once, with the maths of one core.

Processes, not threads. A step of the default GRU is thousands of small
numpy calls, each holding the GIL while it is set up, and two threads
sharing its streams ran only 1.11-1.32x as fast as one (a quiet moment,
load average 0.2). Forked processes share nothing but a block of memory:
with two, the main process and its worker took 15.3 and 15.0 ms of CPU
time per update, against 27.5 for the whole batch in one (bench/cores.py;
docs/benchmarks.md, "Every core"). OpenBLAS's own threads
gain little on these small products and collapse beside a busy program
(--threads).

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

How the streams are cut (shards.layout) depends on the batch, the number of
workers and the model's size alone, and the dropout masks are one core's
(shards.py): so a run is bit-identical for a given number of workers,
whoever computes which shard, and within float rounding of one worker's.

Two ways to compute an update, with the same bits: shared, or every shard
in the main process. The pool measures both now and then and keeps the
faster (Pool.measure), so that a machine too busy for the processes to meet
at every update costs at most the shards' own overhead over one core (the
default's 4 shards took 0.95-1.06x its whole batch's CPU time).

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
import os
import select
import signal
import sys
import time
import warnings

from ..cells import net
from .shards import Space, layout

SHARE, ALONE = "share", "alone"  # the two ways an update is computed (Pool.measure)
WINDOW = 16  # updates in each measurement of a way's speed
PROBE = 50  # windows, at most, between measurements of the way not chosen
CHANGE = 0.25  # a slowing of the chosen way that has the other measured again


def available():
    """Whether this platform can fork workers."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def count(workers=None):
    """How many workers a run uses: workers, or None for every core this
    process may use (so `taskset -c 0` means one); one where workers cannot be."""
    if not available():
        return 1
    return len(os.sched_getaffinity(0)) if workers is None else workers


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
        self.chosen = None  # the chosen way's seconds per character when it was chosen
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
        (probing) when the chosen one has become CHANGE slower than it was
        when chosen (a core has become busy), and at least every PROBE
        windows (one may have become free). Both ways give the same bits."""
        w = self.window
        w[:] = w[0] + 1, w[1] + chars, w[2] + seconds
        if w[0] < WINDOW:
            return
        rate, way = w[2] / w[1], self.way
        self.window, self.windows = [0, 0, 0.0], self.windows + 1
        if self.windows == 1:
            return  # the first window holds the workers' start and first allocations
        other = ALONE if way == SHARE else SHARE
        self.per_char[way] = rate
        if self.probing:  # both ways just measured
            self.way = min(self.per_char, key=self.per_char.get)
            self.probing, self.since, self.chosen = False, 0, self.per_char[self.way]
            return
        self.since += 1
        if self.per_char[other] is None or self.since >= PROBE or rate > self.chosen * (1 + CHANGE):
            self.way, self.probing = other, True

    def wait(self, todo):
        """Until the workers have finished the shards in todo; a shard a
        worker failed on is computed here (raising its error here, where it
        is shown), and so is every one left when a worker dies."""
        poller = select.poll()
        for fd in self.children.values():
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
            try:
                pid = _fork(self.space, read, done_write)
            except OSError:  # no more processes or memory for one: the shards are computed here
                os.close(done_read)
                self.lost = True
                self.stop()
                return
            finally:
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
        # the worker's BLAS keeps the one thread it is forked with: it never leaves this block, which would
        # give it back the main process's. And it calls nothing that takes a lock another thread of this
        # process (a notebook kernel's) could hold, so fork's warning about threads does not apply
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
