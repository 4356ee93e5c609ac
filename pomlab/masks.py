"""Public home of the masks (``pomlab.masks.block_causal``); defined in pomlab/nn/masks.py."""
from .nn.masks import BlockCausal, block_causal, canonical, causal

__all__ = ["block_causal", "BlockCausal", "causal", "canonical"]
