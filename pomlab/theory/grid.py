"""Quantised grids of token sequences: the finite input sets of the contextual-mapping proofs.

A grid point of [0, 1)^d with `levels` levels per coordinate is g / levels, g in
{0..levels-1}^d; its token id is sum_j g_j levels^j (Yun et al.'s u^T L_{:,i}, in integers).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_positive_int


@dataclass(frozen=True)
class SequenceGrid:
    """Sequences of grid points: `points` (N, tokens, dim) and their token `ids` (N, tokens)."""

    points: Tensor
    ids: Tensor
    levels: int
    dim: int
    tokens: int
    exhaustive: bool

    @property
    def alphabet(self) -> int:
        return self.levels ** self.dim

    def __len__(self) -> int:
        return self.points.shape[0]


def sequence_grid(levels: int, tokens: int, dim: int = 1, max_sequences: int = 20000,
                  seed: int = 0, dtype: torch.dtype = torch.float64) -> SequenceGrid:
    """Every sequence of `tokens` grid points of [0, 1)^dim, or a seeded random sample of
    `max_sequences` of them when there are more (then `exhaustive` is False)."""
    for name, value in (("levels", levels), ("tokens", tokens), ("dim", dim),
                        ("max_sequences", max_sequences)):
        check_positive_int(name, value)
    alphabet = levels ** dim
    total = alphabet ** tokens
    if total <= max_sequences:
        ids = torch.tensor(list(itertools.product(range(alphabet), repeat=tokens)),
                           dtype=torch.long).reshape(total, tokens)
    else:
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(alphabet, (max_sequences, tokens), generator=gen)
    digits = torch.stack([(ids // levels ** j) % levels for j in range(dim)], dim=-1)
    return SequenceGrid(points=digits.to(dtype) / levels, ids=ids, levels=levels, dim=dim,
                        tokens=tokens, exhaustive=total <= max_sequences)
