"""rnnpipe: a character-level recurrent network in pure numpy."""

from .config import SEED, Config
from .model import Diverged, Model
from .modelfile import ModelFormatError
from .train import Progress, Stop

__all__ = ["Config", "SEED", "Model", "ModelFormatError", "Diverged", "Progress", "Stop"]
__version__ = "0.1.0"
