"""Toy sequence-to-sequence tasks that need token mixing (a token-wise MLP cannot solve them;
each draws fresh inputs and computes its target exactly: the table in docs/theory.md), and the
small model trained on them: embed (+ positions), ``depth`` residual MixerBlocks around "pom",
"mha", "none" (token-wise MLP blocks: the control) or a user's factory ``width -> mixer``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_choice, check_int, check_positive_int
from ..nn import MixerBlock, make_mixer

SYMBOLS = 4
KERNEL_WIDTH = 0.5


@dataclass(frozen=True)
class ToyTask:
    name: str
    description: str
    in_dim: int
    out_dim: int
    positional: bool
    draw: Callable[[int, int, torch.Generator], Tensor]
    target: Callable[[Tensor], Tensor]

    def sample(self, batch: int, tokens: int, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """(x, y): (batch, tokens, in_dim) inputs and (batch, tokens, out_dim) targets."""
        check_positive_int("batch", batch)
        check_int("tokens", tokens, minimum=2)          # one token has nothing to mix with
        x = self.draw(batch, tokens, generator)
        return x, self.target(x)


def _uniform(dim: int, low: float, high: float):
    def draw(batch, tokens, gen):
        return low + (high - low) * torch.rand(batch, tokens, dim, generator=gen)
    return draw


def _symbols(batch, tokens, gen):
    return F.one_hot(torch.randint(SYMBOLS, (batch, tokens), generator=gen), SYMBOLS).float()


def _rank(x: Tensor) -> Tensor:
    v = x[..., 0]
    return (v[:, None, :] < v[:, :, None]).sum(-1, keepdim=True).to(x.dtype) / (x.shape[1] - 1)


def _count(x: Tensor) -> Tensor:
    return (x @ x.transpose(1, 2)).sum(-1, keepdim=True) / x.shape[1]


def _pairwise(x: Tensor) -> Tensor:
    return torch.exp(-torch.cdist(x, x) ** 2 / (2 * KERNEL_WIDTH ** 2)).mean(-1, keepdim=True)


TASKS: dict[str, ToyTask] = {t.name: t for t in [
    ToyTask("sort", "output i = i-th smallest input (needs positions)", 1, 1, True,
            _uniform(1, 0.0, 1.0), lambda x: x.sort(dim=1).values),
    ToyTask("rank", "per-token rank among the sequence", 1, 1, False,
            _uniform(1, 0.0, 1.0), _rank),
    ToyTask("count", "how many tokens equal this one", SYMBOLS, 1, False, _symbols, _count),
    ToyTask("center", "token minus the sequence mean", 2, 2, False,
            _uniform(2, -1.0, 1.0), lambda x: x - x.mean(1, keepdim=True)),
    ToyTask("set_max", "maximum of the set, at every token", 1, 1, False,
            _uniform(1, 0.0, 1.0), lambda x: x.amax(1, keepdim=True).expand_as(x)),
    ToyTask("pairwise", "Gaussian-kernel density of the other tokens at this one", 2, 1, False,
            _uniform(2, -1.0, 1.0), _pairwise),
]}


def get_task(name: str) -> ToyTask:
    return TASKS[check_choice("task", name, TASKS)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def default_heads(width: int) -> int:
    """MHA heads when none are given: the most heads of >= 16 features dividing width, or 1."""
    return max(h for h in range(1, max(1, width // 16) + 1) if width % h == 0)


class ToySeqModel(nn.Module):
    """Embed, ``depth`` residual mixer blocks, head; ``tokens`` is needed with ``positional``."""

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
