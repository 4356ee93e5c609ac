"""Token mixers (PoM, MHA), masks and sequence blocks."""
from . import masks
from .attention import MHA
from .blocks import MLP, MixerBlock, Polymorpher, make_mixer
from .pom import PoM, PoMState

__all__ = ["PoM", "PoMState", "MHA", "MLP", "MixerBlock", "Polymorpher", "make_mixer", "masks"]
