"""Training under torchrun: one process per rank, gradients averaged by
torch's DistributedDataParallel.

Every rank reads the whole text and cuts it exactly as one process would
(train.py), into config.batch_size streams: the batch size is the streams of
all ranks together, so a model's maths does not depend on how many ranks
train it. Rank r trains its share of them, np.array_split's r-th part (a
contiguous range: stateful truncated BPTT needs each stream whole, not a
shuffling sampler). Each rank's loss is weighted W / B per stream, so DDP's
average of the ranks' gradients is exactly the one-process gradient of the
whole batch; a rank left without a stream (a short block with fewer streams
than ranks) adds a zero gradient. After each chunk the ranks gather every
stream's state and the loss, so every rank holds the same state, loss and
training position as one process would: the divergence guard, vocabulary
growth and resume positions agree without further talk, and rank 0 saves a
model any number of ranks, or the numpy engine, continues exactly.

Two things are agreed by collectives: when to stop (any rank's time limit
or signal stops all after the same chunk) and the guard's comparison of
weights on recent text (every rank computes it on the same chunks; the
ranks' mean is used, so rounding that differs between machines cannot split
the decision).
"""

from __future__ import annotations

import gc
import importlib
import os

import numpy as np
import torch
import torch.distributed as dist

from . import TORCHRUN


class World:
    """This process's place among the ranks, and the collectives training needs."""

    def __init__(self, rank, size, device):
        self.rank, self.size, self.device = rank, size, device

    def share(self, B):
        """The streams [lo, hi) of B that this rank trains (np.array_split's)."""
        base, extra = divmod(B, self.size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def gather_state(self, loss, out, cell, B, has_streams):
        """(the chunk's loss over all ranks, every stream's state after the
        chunk as rnnpipe's numpy state) from each rank's loss and state."""
        parts = list(out) if cell == "lstm" else [out]
        L, _, H = parts[0].shape
        width = -(-B // self.size)  # the largest share
        flat = [loss.reshape(1).to(parts[0].dtype)]
        for p in parts:
            padded = p.new_zeros((L, width, H))
            if has_streams:
                padded[:, : p.shape[1]] = p.detach()
            flat.append(padded.reshape(-1))
        mine = torch.cat(flat)
        everyone = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(everyone, mine)
        host = torch.stack(everyone).cpu().numpy()
        total = float(host[:, 0].sum())
        states = []
        for k in range(len(parts)):
            block = host[:, 1 + k * L * width * H : 1 + (k + 1) * L * width * H].reshape(self.size, L, width, H)
            shares = [block[r, :, : self._size(r, B)] for r in range(self.size)]
            states.append(np.concatenate(shares, axis=1))
        return total, [tuple(s[layer].copy() for s in states) for layer in range(L)]

    def _size(self, r, B):
        base, extra = divmod(B, self.size)
        return base + (1 if r < extra else 0)

    def any(self, *flags):
        """Each flag, true on any rank (every rank gets the same answer)."""
        t = torch.tensor([float(bool(f)) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(x) for x in t.tolist()]

    def mean(self, value):
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        if self.device.type != "cpu":
            t = t.float()  # nccl on some devices lacks float64 reductions
        dist.all_reduce(t)
        return float(t.item()) / self.size

    def broadcast(self, obj):
        """Rank 0's obj on every rank (any picklable value)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type != "cpu" else None)
        return box[0]

    def gather(self, obj):
        """Every rank's obj, in rank order, on every rank."""
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def start(device_name=None):
    """Join torchrun's process group (gloo on a CPU, nccl on CUDA) and return
    this rank's World. Each rank on a machine takes GPU LOCAL_RANK."""
    rank, size, local = (int(os.environ[v]) for v in TORCHRUN)
    if device_name is None:
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    # DistributedDataParallel's constructor imports torch._dynamo (torch 2.13:
    # about 1 s of CPU), on the first training step, inside the run's clock
    # and --max-time; imported here, while joining, it is not
    importlib.import_module("torch._dynamo")

    return World(rank, size, device)


def stop():
    """Leave the process group. What still uses it (a DDP module, which an
    engine and its model keep in a reference cycle) goes first: gloo's
    threads destroyed after the group abort the process ("terminate called
    without an active exception", exit -6), seen on rank 1 about one run in
    four before this."""
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()
