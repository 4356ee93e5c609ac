"""Toy sequence-to-sequence tasks that need token mixing (a token-wise MLP cannot solve them):
each draws fresh input sequences and computes its target exactly (the table in docs/theory.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_choice, check_int, check_positive_int

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
    sq = torch.cdist(x, x) ** 2
    return torch.exp(-sq / (2 * KERNEL_WIDTH ** 2)).mean(-1, keepdim=True)


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
