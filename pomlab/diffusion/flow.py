"""Flow matching (rectified flow): x_t = (1 - t) x + t eps, target velocity eps - x, MSE.

t = 0 is data and t = 1 is noise; sampling integrates dx/dt = v from t = 1 down to t = 0.
Optional resolution shift (the authors'): t' = s t / (1 + (s - 1) t), s = sqrt(side / 32),
applied to the training times and to the sampling grid alike.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_positive_int
from .guidance import Denoiser, check_sampler_inputs, guided
from .samplers import ODE_METHODS, integrate

SHIFT_REFERENCE_SIDE = 32


def shift_for_side(side: int) -> float:
    """The authors' shift for a latent (or pixel) grid of this side: sqrt(side / 32)."""
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise ValueError(f"side must be a positive int, got {side!r}")
    return math.sqrt(side / SHIFT_REFERENCE_SIDE)


def shift_time(t: Tensor, shift: float) -> Tensor:
    """t' = s t / (1 + (s - 1) t): a monotone map of [0, 1] onto itself (s > 1 favours noise)."""
    # clamp: for s < 1, rounding can put t' = 1 a few ulps above 1, outside the models' range
    return (shift * t / (1.0 + (shift - 1.0) * t)).clamp(0.0, 1.0)


class FlowMatching:
    """The flow-matching process: loss, time grid and samplers (Euler, Heun)."""

    kind = "flow"
    default_method = "heun"
    methods = ODE_METHODS

    def __init__(self, shift: float | None = None):
        if shift is not None and not (isinstance(shift, (int, float)) and math.isfinite(shift)
                                      and shift > 0):
            raise ValueError(f"shift must be None or a positive finite number, got {shift!r}")
        self.shift = None if shift is None or shift == 1 else float(shift)

    def __repr__(self) -> str:
        return f"FlowMatching(shift={self.shift})"

    def config(self) -> dict:
        return {"kind": self.kind, "shift": self.shift}

    def warp(self, t: Tensor) -> Tensor:
        return t if self.shift is None else shift_time(t, self.shift)

    @staticmethod
    def interpolate(x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        t = t.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return (1.0 - t) * x + t * noise

    def loss(self, model: Denoiser, x: Tensor, y: Tensor, *, noise: Tensor | None = None,
             t: Tensor | None = None) -> Tensor:
        """Mean squared error between model(x_t, t, y) and eps - x (t ~ U(0, 1), then shifted).

        Noise and times come from torch's global RNG when not given (so checkpoints that store
        the RNG state resume exactly).
        """
        noise = torch.randn_like(x) if noise is None else noise
        t = self.warp(torch.rand(x.shape[0], device=x.device)) if t is None else t
        pred = model(self.interpolate(x, noise, t), t, y)
        return (pred.float() - (noise - x).float()).square().mean()

    def times(self, steps: int) -> list[float]:
        """The sampling grid 1 -> 0 (steps + 1 points), uniform then shifted."""
        grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        return self.warp(grid).tolist()

    @torch.no_grad()
    def sample(self, model: Denoiser, noise: Tensor, y: Tensor, *, steps: int = 50,
               method: str = "heun", cfg: float = 1.0, null_class: int | None = None,
               generator: torch.Generator | None = None, guidance: str = "standard",
               guided_channels: int | None = None) -> Tensor:
        """Integrate from pure noise at t = 1 to data at t = 0 (deterministic; generator unused).
        cfg is read in the `guidance` convention ("standard" or "authors", see guidance.py)."""
        check_sampler_inputs(model, noise, y)
        denoise = guided(model, cfg, null_class, convention=guidance,
                         guided_channels=guided_channels)
        check_positive_int("steps", steps)
        ones = torch.ones(noise.shape[0], device=noise.device, dtype=noise.dtype)
        return integrate(method, lambda x, t: denoise(x, ones * t, y), noise, self.times(steps))

