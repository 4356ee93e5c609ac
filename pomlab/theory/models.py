"""Small sequence-to-sequence models for the theory studies: a mixer slot in residual blocks.

    x -> Linear embed (+ learned positional embedding) -> depth x MixerBlock(mixer) -> LN -> Linear

mixer = "pom" (Polymorpher blocks), "mha" (transformer blocks), "none" (token-wise MLP
blocks, no mixing at all: the control that cannot compute anything contextual), or a factory
``width -> module`` with pomlab's mixer signature (a user's own mixer, see pomlab.properties).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from typing import Callable

from ..nn import MixerBlock, make_mixer
from ..checks import check_positive_int

__all__ = ["ToySeqModel", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ToySeqModel(nn.Module):
    """Token-wise embed, ``depth`` residual mixer blocks, token-wise head.

    Args:
        in_dim, out_dim: token feature sizes of inputs and targets.
        mixer: "pom", "mha", "none", or a factory called as ``mixer(width)`` once per block.
        width, depth: hidden size and number of blocks.
        degree, expand: PoM hyper-parameters (ignored by other mixers).
        heads: MHA heads (default width // 16, at least 1).
        tokens: sequence length, needed only with ``positional=True`` (learned embedding).
        mlp_ratio: hidden size of each block's MLP over ``width``.
    """

    def __init__(self, in_dim: int, out_dim: int, *,
                 mixer: str | Callable[[int], nn.Module] = "pom", width: int = 32, depth: int = 2, degree: int = 2, expand: int = 2, heads: int | None = None,
                 positional: bool = False, tokens: int | None = None, mlp_ratio: float = 2.0):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width),
                            ("depth", depth)):
            check_positive_int(name, value)
        heads = max(1, width // 16) if heads is None else heads
        self.mixer_kind = mixer if isinstance(mixer, str) else getattr(mixer, "__name__", "custom")
        self.width, self.depth = width, depth
        self.embed = nn.Linear(in_dim, width)
        if positional:
            if tokens is None:
                raise ValueError("tokens must be given when positional=True")
            check_positive_int("tokens", tokens)
            self.pos = nn.Parameter(torch.randn(tokens, width) * 0.5)
        else:
            self.pos = None
        self.blocks = nn.ModuleList(
            MixerBlock(width, mixer(width) if callable(mixer) else
                       make_mixer(mixer, width, heads=heads, degree=degree, expand=expand),
                       mlp_ratio=mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_dim)

    def features(self, x: Tensor) -> Tensor:
        """Hidden token states after the mixer blocks: the model's context values."""
        h = self.embed(x)
        if self.pos is not None:
            if x.shape[1] != self.pos.shape[0]:
                raise ValueError(f"x has {x.shape[1]} tokens, the positional embedding "
                                 f"{self.pos.shape[0]}")
            h = h + self.pos
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.features(x)))
