"""rnnpipe: a character-level recurrent network in pure numpy.

Names are imported on first use, so `rnnpipe --help` starts without numpy.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config",
    "SEED": "config",
    "Model": "model",
    "Diverged": "model",
    "ModelFormatError": "modelfile",
    "Progress": "train",
    "Display": "progress",
    "Stop": "errors",
    "Options": "train",
    "SettingError": "errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
