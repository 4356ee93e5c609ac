"""Mixers that each break one property of a wrapped ``pomlab.PoM`` (docs/properties.md)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn import masks
from ..nn.pom import PoM


class _Wrapped(nn.Module):
    def __init__(self, dim: int, **pom_kwargs):
        super().__init__()
        self.dim, self.pom = dim, PoM(dim, **pom_kwargs)

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        return self.pom(x, context=context, mask=mask)


class PositionalBias(_Wrapped):
    """PoM(X + E) with a learned absolute positional embedding E (up to ``max_tokens``)."""

    def __init__(self, dim: int, max_tokens: int = 64, **pom_kwargs):
        super().__init__(dim, **pom_kwargs)
        self.pos = nn.Parameter(torch.randn(max_tokens, dim))

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        return self.pom(x + self.pos[: x.shape[1]], context=context, mask=mask)


class LeakyCausal(_Wrapped):
    """PoM whose masks all let the token at position ``leak`` through."""

    def __init__(self, dim: int, leak: int = 5, **pom_kwargs):
        super().__init__(dim, **pom_kwargs)
        self.leak = leak

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        n_context = x.shape[1] if context is None else context.shape[1]
        m = masks.canonical(mask, x.shape[0], x.shape[1], n_context, x.device)
        if m is not None and self.leak < n_context:
            m = m.expand(x.shape[0], x.shape[1], n_context).clone()
            m[:, :, self.leak] = True
        return self.pom(x, context=context, mask=m)


class PositionWeightedContext(_Wrapped):
    """Cross-mixing on context tokens scaled by 1 + position / N: order matters."""

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        if context is not None:
            n = context.shape[1]
            weights = 1 + torch.arange(n, dtype=context.dtype, device=context.device) / n
            context = context * weights[:, None]
        return self.pom(x, context=context, mask=mask)


class ForgetfulStep(_Wrapped):
    """Correct forward; ``step`` mixes each block as if it were the first (state dropped)."""

    def step(self, x: Tensor, state=None):
        return self.pom.step(x, None)
