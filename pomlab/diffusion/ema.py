"""Exponential moving average of the weights, the copy used for sampling.

Built on torch.optim.swa_utils.AveragedModel (the first update copies the weights, like DiT's
`update_ema(ema, model, decay=0)`), with an optional decay warm-up
decay_n = min(decay, (1 + n) / (10 + n)) so that short runs get a useful average too.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class EMA(AveragedModel):
    """ema = EMA(model, decay); ema.update_parameters(model) after each step; ema.module samples."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"ema decay must be a number in [0, 1], got {decay!r}")
        self.decay, self.warmup = float(decay), bool(warmup)
        super().__init__(model, multi_avg_fn=self._lerp, use_buffers=True)
        self.module.requires_grad_(False).eval()
        self._count: int | None = None     # host copy of n_averaged, read once (after a load)

    def decay_at(self, n_averaged: int) -> float:
        """The decay applied when folding in update number n_averaged (1 for the first after the copy)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + n_averaged) / (10.0 + n_averaged))

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """AveragedModel's update without its two host syncs per step (reading n_averaged on
        the device): the count is kept on the host and written back to the buffer, which
        checkpoints carry."""
        if self._count is None:
            self._count = int(self.n_averaged)
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach().to(a.device) for a, t in
                   zip(averaged, [*model.parameters(), *model.buffers()], strict=True)]
        if self._count == 0:                      # the first update copies, like DiT's start
            torch._foreach_copy_(averaged, current)
        else:
            self._lerp(averaged, current, self._count)
        self._count += 1
        self.n_averaged.fill_(self._count)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._count = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def _lerp(self, averaged: list, current: list, n_averaged: int) -> None:
        weight = 1.0 - self.decay_at(n_averaged)
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for a, c in zip(averaged, current):   # integer buffers: keep the latest value
            if not a.is_floating_point():
                a.copy_(c)

    def train(self, mode: bool = True):
        # The averaged copy never trains (no label dropout while sampling).
        super().train(mode)
        self.module.eval()
        return self
