"""Sequence blocks with a mixer slot: the Polymorpher is the block with PoM in it."""
from __future__ import annotations

from torch import Tensor, nn

from ..checks import check_positive_int
from .attention import MHA
from .pom import PoM

MIXERS = ("pom", "mha", "none")


def make_mixer(kind: str, dim: int, *, heads: int = 1, degree: int = 2, expand: int = 2,
               polynomial: str = "products", bias: bool = True) -> nn.Module | None:
    """Build the token mixer for a block: "pom", "mha" or "none" (token-wise only, no mixing)."""
    if kind == "pom":
        return PoM(dim, degree=degree, expand=expand, bias=bias, polynomial=polynomial)
    if kind == "mha":
        return MHA(dim, heads, bias=bias)
    if kind == "none":
        return None
    raise ValueError(f"mixer must be one of {MIXERS}, got {kind!r}")


class MLP(nn.Module):
    """Token-wise feed-forward network (names as in DiT/timm: fc1, fc2)."""

    def __init__(self, dim: int, hidden: int, approximate: str = "tanh"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    """Pre-norm residual block: Y = X + mixer(LN(X)); out = Y + MLP(LN(Y)).

    ``mixer`` may be None (a token-wise block with no mixing, the control in theory studies).
    """

    def __init__(self, dim: int, mixer: nn.Module | None, mlp_ratio: float = 4.0):
        super().__init__()
        check_positive_int("dim", dim)
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(round(dim * mlp_ratio)))

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        if self.mixer is not None:
            x = x + self.mixer(self.norm1(x), context=context, mask=mask)
        return x + self.mlp(self.norm2(x))


class Polymorpher(MixerBlock):
    """The paper's Polymorpher block: PoM then a feed-forward network, both residual, pre-norm."""

    def __init__(self, dim: int, degree: int = 2, expand: int = 2, mlp_ratio: float = 4.0,
                 polynomial: str = "products"):
        super().__init__(dim, PoM(dim, degree=degree, expand=expand, polynomial=polynomial),
                         mlp_ratio=mlp_ratio)
