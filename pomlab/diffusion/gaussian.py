"""Epsilon-prediction diffusion on a 1000-step schedule (DiT's setup) with a DDIM sampler.

Schedule: betas linear from 1e-4 to 0.02 over 1000 steps (DDPM / ADM / DiT "linear"),
computed in float64. The model sees the integer step divided by num_steps, so its time input
is in [0, 1) like the flow model's.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..nn._checks import check_positive_int
from .guidance import Denoiser, guided
from .samplers import ddim


class GaussianDiffusion:
    """The diffusion process: epsilon loss, DDIM sampling (method "ddim", eta 0 by default)."""

    kind = "diffusion"
    default_method = "ddim"
    methods = ("ddim",)

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        check_positive_int("num_steps", num_steps)
        if not (0 < beta_start <= beta_end < 1):
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.num_steps, self.beta_start, self.beta_end = num_steps, float(beta_start), float(beta_end)
        self.betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        self.alpha_bars = torch.cumprod(1.0 - self.betas, dim=0)

    def __repr__(self) -> str:
        return (f"GaussianDiffusion(num_steps={self.num_steps}, linear betas "
                f"{self.beta_start}..{self.beta_end})")

    def config(self) -> dict:
        return {"kind": self.kind, "num_steps": self.num_steps, "beta_start": self.beta_start,
                "beta_end": self.beta_end}

    def model_time(self, steps: Tensor) -> Tensor:
        return steps.float() / self.num_steps

    def q_sample(self, x: Tensor, noise: Tensor, steps: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps."""
        abar = self.alpha_bars.to(x.device)[steps].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return abar.sqrt() * x + (1.0 - abar).sqrt() * noise

    def loss(self, model: Denoiser, x: Tensor, y: Tensor, *, noise: Tensor | None = None,
             steps: Tensor | None = None) -> Tensor:
        """MSE between model(x_t, t / T, y) and eps, t uniform on {0..T-1} (global torch RNG)."""
        noise = torch.randn_like(x) if noise is None else noise
        if steps is None:
            steps = torch.randint(0, self.num_steps, (x.shape[0],), device=x.device)
        pred = model(self.q_sample(x, noise, steps), self.model_time(steps), y)
        return (pred.float() - noise.float()).square().mean()

    def timesteps(self, steps: int) -> list[int]:
        """steps integer timesteps from T-1 down to 0, evenly spaced (the "linspace" spacing)."""
        check_positive_int("steps", steps)
        if steps > self.num_steps:
            raise ValueError(f"steps must be <= num_steps={self.num_steps}, got {steps}")
        grid = torch.linspace(self.num_steps - 1, 0, steps, dtype=torch.float64).round().long()
        return grid.tolist()

    @torch.no_grad()
    def sample(self, model: Denoiser, noise: Tensor, y: Tensor, *, steps: int = 50,
               method: str = "ddim", cfg: float = 1.0, null_class: int | None = None,
               generator: torch.Generator | None = None, eta: float = 0.0) -> Tensor:
        """DDIM from x_T = noise to x_0 (eta > 0 adds fresh noise drawn from generator)."""
        if method != "ddim":
            raise ValueError(f"the diffusion sampler must be 'ddim', got {method!r}")
        if not math.isfinite(eta):
            raise ValueError(f"eta must be finite, got {eta!r}")
        denoise = guided(model, cfg, null_class)
        ones = torch.ones(noise.shape[0], device=noise.device, dtype=noise.dtype)
        return ddim(lambda x, s: denoise(x, ones * (s / self.num_steps), y), noise,
                    self.alpha_bars, self.timesteps(steps), eta=eta, generator=generator)
