"""Where a step of `rnnpipe train --engine torch` goes, alone or under
torchrun: timers around the engine's pieces, each rank printing, at exit,
the median wall-clock and CPU milliseconds of each per step and the first
call's (issue 22: why 2 CPU ranks ran at 0.46x of one process).

    python bench/ddp_probe.py train -m m.msgpack --engine torch --device cpu --max-time 10 TEXT
    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        bench/ddp_probe.py train -m m.msgpack --engine torch --device cpu --max-time 10 TEXT
    python -m torch.distributed.run --standalone --nproc_per_node 2 bench/ddp_probe.py --allreduce

Arguments after the script's name are `rnnpipe`'s. CPU time is the whole
process's (every thread); wall time well above CPU time in a piece with no
collective in it (the forward pass) means the process was waiting for a
core, not for another rank. --allreduce times gloo's all_reduce alone, both
ranks ready (a barrier first), at the sizes a step sends: the stop flags,
the state and loss of 16 streams of the default GRU, and the gradients of
the default GRU and of lstm 256 (65 characters).
"""

import atexit
import os
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from rnnpipe.cli import main
from rnnpipe.engines import ddp, torchnet

CALLS = {}  # label -> [(wall, cpu) per call]


def timed(owner, name, label):
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            CALLS.setdefault(label, []).append((time.perf_counter() - wall, time.process_time() - cpu))

    setattr(owner, name, wrapper)


timed(torchnet.Engine, "step", "step, all of it")
timed(torchnet.Engine, "_load", "  first step only: build the engine (and its DDP module)")
timed(DistributedDataParallel, "__init__", "    DistributedDataParallel()")
timed(torchnet.Net, "forward", "  forward")
timed(torch.Tensor, "backward", "  backward (with DDP's all-reduce)")
timed(ddp.World, "gather_state", "  all_gather of the streams' state and loss")
timed(ddp.World, "any", "  all_reduce of the stop flags")


@atexit.register
def report():
    rank = os.environ.get("RANK", "alone")
    lines = [f"rank {rank}: torch threads at exit {torch.get_num_threads()}, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS')}, {len(os.listdir('/proc/self/task'))} OS threads"]  # fmt: skip
    lines.append(f"  {'ms per call':58s} {'median wall':>11s} {'median cpu':>10s} {'first wall':>10s} "
                 f"{'first cpu':>9s} {'calls':>6s}")  # fmt: skip
    for label, calls in CALLS.items():
        rest = calls[1:] or calls
        wall = sorted(w for w, _ in rest)[len(rest) // 2]
        cpu = sorted(c for _, c in rest)[len(rest) // 2]
        lines.append(f"  {label:58s} {wall * 1e3:11.2f} {cpu * 1e3:10.2f} {calls[0][0] * 1e3:10.1f} "
                     f"{calls[0][1] * 1e3:9.1f} {len(calls):6d}")  # fmt: skip
    print("\n".join(lines), file=sys.stderr, flush=True)


def allreduce():
    import torch.distributed as dist

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    for n in (2, 16 * 192 + 1, 161_729, 347_457):
        t = torch.ones(n)
        for _ in range(5):
            dist.all_reduce(t)
        walls = []
        for _ in range(100):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            walls.append(time.perf_counter() - start)
        walls.sort()
        if dist.get_rank() == 0:
            print(f"all_reduce of {n:7,d} floats ({n * 4 / 1e6:4.2f} MB): median {walls[50] * 1e3:.2f} ms, "
                  f"90th percentile {walls[90] * 1e3:.2f} ms; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1:] == ["--allreduce"]:
        atexit.unregister(report)
        allreduce()
    else:
        sys.exit(main(sys.argv[1:]))
