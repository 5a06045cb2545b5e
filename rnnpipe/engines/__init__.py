"""Which engine makes the updates: numpy (the default, always there) or
torch (the optional extra). Nothing here imports torch until a command asks
for the torch engine, so a plain install never needs it."""

import contextlib
import sys

from ..errors import Missing, Unavailable  # noqa: F401  (raised here, caught by the faces as engines.Unavailable)

ENGINES = ("numpy", "torch")
INSTALL = "pip install 'rnnpipe[torch]'"
TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process it starts


def torch_engine():
    """rnnpipe.engines.torchnet, importing torch; Missing (one line, naming the
    extra) when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Missing(f"--engine torch needs PyTorch, which is not installed: {INSTALL}") from None
    from . import torchnet

    return torchnet


def described(engine, world=None):
    """The engine (None: numpy) and device making a model's updates, as `rnnpipe info` says them
    (the model file's state.engine); world: the ddp.World of several ranks, or None."""
    if engine is None:
        return "numpy"
    return f"torch {engine.device}" + (f", {world.size} processes under torchrun" if world else "")


def launched(environ=None):
    """Whether torchrun (or a launcher setting its variables) started this
    process: then training joins its ranks (ddp.py)."""
    import os

    environ = os.environ if environ is None else environ
    return all(v in environ for v in TORCHRUN)


@contextlib.contextmanager
def blas_threads(n):
    """A context that lets numpy's BLAS use n threads (numpy must be
    imported), and torch's CPU operations too when torch is in use: on a
    busy 2-core machine torch's second thread made the torch engine 10x
    slower, as a second BLAS thread does numpy (docs/benchmarks.md)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # only when a command asked for it: never imported here
    with threadpool_limits(limits=n, user_api="blas"):
        if torch is None:
            yield
            return
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)
