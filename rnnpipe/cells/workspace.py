"""Arrays kept from one training chunk to the next.

A training step allocates tens of megabytes of chunk-sized arrays (gate
activations, their gradients) and frees them at its end. The C allocator
returns blocks that large to the system, so the next step faults every page
back in: up to a fifth of a GRU step's time went to the kernel
(docs/benchmarks.md). net.loss therefore keeps its arrays in a workspace,
one per thread and per layer, and the next chunk of the same shape reuses
them. Only net.loss uses one: what it returns never points into it, so a
caller cannot tell, while forward() on its own (evaluation, sampling)
allocates afresh as before.
"""

import threading

import numpy as np

_local = threading.local()


def for_layers(n):
    """This thread's workspace: a dict of arrays for each of n layers."""
    spaces = getattr(_local, "spaces", None)
    if spaces is None:
        spaces = _local.spaces = []
    while len(spaces) < n:
        spaces.append({})
    return spaces[:n]


def empty(work, name, shape, dtype):
    """np.empty(shape, dtype), or with a workspace the array kept under name
    when it has that shape and dtype (its contents are whatever they were)."""
    if work is None:
        return np.empty(shape, dtype)
    a = work.get(name)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = work[name] = np.empty(shape, dtype)
    return a


def zeros(work, name, shape, dtype):
    a = empty(work, name, shape, dtype)
    a.fill(0)
    return a
