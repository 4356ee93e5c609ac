"""Exponential moving average of the weights, the copy used for sampling.

The first update copies the weights (DiT's `update_ema(ema, model, decay=0)`); later updates fold
the model in with decay_n = min(decay, (1 + n) / (10 + n)) when warmed up (short runs get a useful
average too), else the constant decay. The state dict keeps torch's AveragedModel layout
("module.*" and the "n_averaged" buffer), so checkpoints written with it load unchanged.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..checks import check_number


class EMA(nn.Module):
    """ema = EMA(model, decay); ema.update_parameters(model) after each step; ema.module samples."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True):
        super().__init__()
        self.decay = float(check_number("ema decay", decay, minimum=0.0, maximum=1.0))
        self.warmup = bool(warmup)
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))
        self.count = 0       # host copy of n_averaged: no device read per step
        self.register_load_state_dict_post_hook(
            lambda module, _: setattr(module, "count", int(module.n_averaged)))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def decay_at(self, n_averaged: int) -> float:
        """The decay applied when folding in update number n_averaged (1 for the first after the copy)."""
        return min(self.decay, (1.0 + n_averaged) / (10.0 + n_averaged)) if self.warmup else self.decay

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach().to(a.device) for a, t in
                   zip(averaged, [*model.parameters(), *model.buffers()], strict=True)]
        if self.count == 0:
            torch._foreach_copy_(averaged, current)
        else:
            floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
            if floats:
                torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats],
                                     1.0 - self.decay_at(self.count))
            for a, c in zip(averaged, current):   # integer buffers: keep the latest value
                if not a.is_floating_point():
                    a.copy_(c)
        self.count += 1
        self.n_averaged.fill_(self.count)

    def train(self, mode: bool = True):
        super().train(mode)
        self.module.eval()          # the averaged copy never trains (no label dropout)
        return self
