"""pomlab: the Polynomial Mixer (PoM), DiPoM and the experiments of the PoM paper."""
import importlib

from . import masks
from .nn import MHA, MixerBlock, Polymorpher, PoM, PoMState

__version__ = "0.1.0"
__all__ = ["PoM", "PoMState", "MHA", "MixerBlock", "Polymorpher", "masks"]

# Heavier subpackages load on first use, so `import pomlab` stays cheap.
_LAZY = {"models", "diffusion", "data", "metrics", "train", "scaling", "theory", "plotting",
         "figures", "results", "speed", "benchmark", "io", "video", "zoo", "properties", "testing"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pomlab' has no attribute {name!r}")
