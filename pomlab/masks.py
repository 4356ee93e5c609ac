"""Public home of the masks (``pomlab.masks.block_causal``); defined in pomlab/nn/masks.py."""
from .nn.masks import BlockCausal, block_causal, canonical, causal  # noqa: F401
