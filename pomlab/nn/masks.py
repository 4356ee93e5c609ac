"""Masks for PoM and MHA, and their one canonical form.

Convention everywhere: True (or 1) means the query may see that context token.
Every accepted mask is turned into a boolean tensor of shape (B or 1, M or 1, N)
so that PoM and MHA share one definition of what a mask means.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def causal(n_query: int, n_context: int | None = None, device=None) -> Tensor:
    """(M, N) bool mask: query j sees context tokens 0..j (top-left aligned, like SDPA)."""
    n_context = n_query if n_context is None else n_context
    _check_count("n_query", n_query)
    _check_count("n_context", n_context)
    return torch.ones(n_query, n_context, dtype=torch.bool, device=device).tril()


def block_causal(frames: int, tokens_per_frame: int, device=None) -> Tensor:
    """(N, N) bool mask, N = frames * tokens_per_frame: frame t sees every token of frames <= t.

    Pass it to a mixer as a per-query mask with a batch axis: ``mask=block_causal(T, P)[None]``.
    """
    _check_count("frames", frames)
    _check_count("tokens_per_frame", tokens_per_frame)
    frame_of_token = torch.arange(frames * tokens_per_frame, device=device) // tokens_per_frame
    return frame_of_token[:, None] >= frame_of_token[None, :]


@dataclass(frozen=True)
class BlockCausal:
    """``block_causal(frames, tokens_per_frame)`` as a description instead of an (N, N) tensor.

    Accepted wherever a mask is: the reference and MHA materialise it; PoM's fast path runs
    it as per-frame sums and a prefix sum, so a long video never allocates the N x N mask.
    """

    frames: int
    tokens_per_frame: int

    def __post_init__(self):
        _check_count("frames", self.frames)
        _check_count("tokens_per_frame", self.tokens_per_frame)

    @property
    def tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    def dense(self, device=None) -> Tensor:
        return block_causal(self.frames, self.tokens_per_frame, device=device)

    def check(self, n_query: int, n_context: int) -> None:
        if n_query != self.tokens or n_context != self.tokens:
            raise ValueError(f"mask: BlockCausal({self.frames}, {self.tokens_per_frame}) covers "
                             f"{self.tokens} tokens, but there are {n_query} queries and "
                             f"{n_context} context tokens")


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def canonical(mask, batch: int, n_query: int, n_context: int, device) -> Tensor | None:
    """Validate ``mask`` and return it as a bool tensor (B|1, M|1, N), or None for no mask.

    Accepted: None; the string "causal"; a ``BlockCausal`` description; a (B, N) padding mask
    over the context tokens; a (B, M, N) or (1, M, N) per-query mask. Values must be bool, or
    integers in {0, 1} (float masks are refused: in attention code they usually mean additive
    biases).
    """
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f'mask must be None, "causal", a BlockCausal or a tensor, got the '
                             f'string {mask!r}')
        return causal(n_query, n_context, device=device)[None]
    if isinstance(mask, BlockCausal):
        mask.check(n_query, n_context)
        return mask.dense(device)[None]
    if not isinstance(mask, Tensor):
        raise TypeError(f'mask must be None, "causal", a BlockCausal or a torch.Tensor, got '
                        f'{type(mask).__name__}')
    if mask.dtype != torch.bool:
        if mask.dtype.is_floating_point or mask.dtype.is_complex:
            raise TypeError(
                f"mask must be a bool (or 0/1 integer) tensor, got dtype {mask.dtype}; "
                "True/1 marks the context tokens a query may see"
            )
        if ((mask != 0) & (mask != 1)).any():
            raise ValueError("mask: an integer mask must hold only 0 and 1")
        mask = mask != 0
    if mask.dim() == 2:
        if tuple(mask.shape) != (batch, n_context):
            raise ValueError(
                f"mask: a 2-D mask is a padding mask of shape (batch, context tokens) = "
                f"({batch}, {n_context}), got {tuple(mask.shape)}; for a per-query mask such as "
                "block_causal(...) add a batch axis: mask[None]"
            )
        mask = mask[:, None, :]
    elif mask.dim() == 3:
        if mask.shape[0] not in (1, batch) or tuple(mask.shape[1:]) != (n_query, n_context):
            raise ValueError(
                f"mask: a 3-D mask must have shape (batch or 1, queries, context tokens) = "
                f"({batch} or 1, {n_query}, {n_context}), got {tuple(mask.shape)}"
            )
    else:
        raise ValueError(
            f"mask must be 2-D (batch, tokens) or 3-D (batch, queries, tokens), got {mask.dim()}-D"
        )
    return mask.to(device)
