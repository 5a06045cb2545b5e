"""Which engine makes the updates: numpy (the default, always there) or
torch (the optional extra). Nothing here imports torch until a command asks
for the torch engine, so a plain install never needs it."""

ENGINES = ("numpy", "torch")
INSTALL = "pip install 'rnnpipe[torch]'"
TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process it starts


class Unavailable(RuntimeError):
    """The engine asked for cannot run here; the message is one line."""


class Missing(Unavailable):
    """The torch engine was asked for and torch is not installed."""


def torchnet():
    """rnnpipe.torchnet, importing torch; Missing (one line, naming the
    extra) when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Missing(f"--engine torch needs PyTorch, which is not installed: {INSTALL}") from None
    from . import torchnet

    return torchnet


def launched(environ=None):
    """Whether torchrun (or a launcher setting its variables) started this
    process: then training joins its ranks (ddp.py)."""
    import os

    environ = os.environ if environ is None else environ
    return all(v in environ for v in TORCHRUN)
