"""Small sequence-to-sequence models for the theory studies: embed (+ positions), ``depth``
residual MixerBlocks around "pom", "mha", "none" (token-wise MLP blocks, the control that can
compute nothing contextual) or a user's factory ``width -> mixer``, LayerNorm, linear head."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..checks import check_positive_int
from ..nn import MixerBlock, make_mixer


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def default_heads(width: int) -> int:
    """MHA heads when none are given: the most heads of at least 16 features that divide width
    (at least one)."""
    return max(h for h in range(1, max(1, width // 16) + 1) if width % h == 0)


class ToySeqModel(nn.Module):
    """Token-wise embed, ``depth`` residual mixer blocks (``mixer(width)`` once per block when
    ``mixer`` is a factory), token-wise head. ``tokens`` is needed only with ``positional``."""

    def __init__(self, in_dim: int, out_dim: int, *,
                 mixer: str | Callable[[int], nn.Module] = "pom", width: int = 32, depth: int = 2,
                 degree: int = 2, expand: int = 2, heads: int | None = None,
                 positional: bool = False, tokens: int | None = None, mlp_ratio: float = 2.0):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width),
                            ("depth", depth)):
            check_positive_int(name, value)
        heads = default_heads(width) if heads is None else heads
        self.mixer_kind = mixer if isinstance(mixer, str) else getattr(mixer, "__name__", "custom")
        self.width, self.depth = width, depth
        self.embed = nn.Linear(in_dim, width)
        self.pos = None
        if positional:
            if tokens is None:
                raise ValueError("tokens must be given when positional=True")
            self.pos = nn.Parameter(torch.randn(check_positive_int("tokens", tokens), width) * 0.5)
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
