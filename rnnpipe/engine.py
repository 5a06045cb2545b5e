"""Which engine makes the updates: numpy (the default, always there) or
torch (the optional extra). Nothing here imports torch until a command asks
for the torch engine, so a plain install never needs it."""

ENGINES = ("numpy", "torch")
INSTALL = "pip install 'rnnpipe[torch]'"


class Missing(RuntimeError):
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
