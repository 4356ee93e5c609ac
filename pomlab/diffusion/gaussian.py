"""Epsilon-prediction diffusion on a 1000-step schedule (DiT's setup): the epsilon MSE loss or
ADM's hybrid loss with a learned variance, and DDIM / ancestral DDPM samplers.

Schedule: betas linear from 1e-4 to 0.02 over 1000 steps (DDPM / ADM / DiT "linear"),
computed in float64. The model sees the integer step divided by num_steps, so its time input
is in [0, 1) like the flow model's (DiT's released weights take the integer step: a model
loaded with `load_dit_checkpoint` on t / 1000 equals the official one on t).

Learned variance (Nichol & Dhariwal 2021, "learned range", what DiT trains): a model with
2C output channels predicts [eps, v]; with frac = (v + 1) / 2 its reverse-step variance is

    log sigma_t^2 = frac * log beta_t + (1 - frac) * log beta~_t

where beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) is the posterior variance, clipped at
t = 0 to beta~_1 (so its log is finite). The hybrid loss is

    loss = mean (eps - eps_hat)^2 + (num_steps / 1000) * L_t                     (vlb_weight 0.001)

with L_t the per-step VLB term in bits per dimension, computed on the *stop-gradded* mean (the
variance alone learns from it): KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0, the
discretised Gaussian decoder NLL of x_0 (bins of width 2/255 on [-1, 1]) at t = 0. This is
ADM's λ L_vlb with λ = 0.001 and L_vlb = sum_t L_t estimated by num_steps * L_t at a uniform t:
λ * num_steps = num_steps / 1000, ADM's RESCALED_MSE factor; at num_steps = 1000 (DiT) it is 1,
so DiT's plain MSE-plus-VB loss is the same number. The decoder uses the exact normal CDF
(ADM uses a tanh approximation of it, which differs by < 1e-3 in probability).

Respacing ("250", DiT's sampling): a subset S of the training steps, evenly spaced and rounded,
with new betas 1 - abar_s / abar_prev(s) along S, so abar is unchanged on S; the model is called
at the original step s.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_positive_int
from .guidance import Denoiser, check_sampler_inputs, guided
from .samplers import ddim, ddpm, posterior

VARIANCES = ("learned", "small", "large")
VLB_WEIGHT = 0.001


def respaced_steps(num_steps: int, count: int) -> list[int]:
    """count training steps evenly spaced over [0, num_steps - 1], rounded, increasing (ADM's
    `space_timesteps(num_steps, str(count))` for one section)."""
    check_positive_int("steps", count)
    if count > num_steps:
        raise ValueError(f"steps must be <= num_steps={num_steps}, got {count}")
    if count == 1:
        return [0]
    stride = (num_steps - 1) / (count - 1)
    return [round(i * stride) for i in range(count)]


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2).square() * torch.exp(-logvar2))


def discretized_gaussian_nll(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """-log P(x) elementwise (nats) of data in [-1, 1] quantised to 256 levels under
    N(mean, e^(2 log_scale)); the end bins extend to infinity."""
    centered, inv = x - mean, torch.exp(-log_scale)
    cdf_plus = torch.special.ndtr(inv * (centered + 1.0 / 255))
    cdf_min = torch.special.ndtr(inv * (centered - 1.0 / 255))
    tiny = 1e-12
    log_probs = torch.where(
        x < -0.999, cdf_plus.clamp(min=tiny).log(),
        torch.where(x > 0.999, (1.0 - cdf_min).clamp(min=tiny).log(),
                    (cdf_plus - cdf_min).clamp(min=tiny).log()))
    return -log_probs


class GaussianDiffusion:
    """The diffusion process: epsilon MSE or hybrid loss; DDIM ("ddim", eta 0 by default) or
    ancestral DDPM ("ddpm", learned or fixed variance) sampling on respaced steps."""

    kind = "diffusion"
    default_method = "ddim"
    methods = ("ddim", "ddpm")

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 hybrid: bool = False, vlb_weight: float = VLB_WEIGHT):
        check_positive_int("num_steps", num_steps)
        if not (0 < beta_start <= beta_end < 1):
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        if not isinstance(hybrid, bool):
            raise TypeError(f"hybrid must be a bool, got {type(hybrid).__name__}")
        if not (isinstance(vlb_weight, (int, float)) and math.isfinite(vlb_weight)
                and vlb_weight >= 0):
            raise ValueError(f"vlb_weight must be a number >= 0, got {vlb_weight!r}")
        self.num_steps, self.beta_start, self.beta_end = num_steps, float(beta_start), float(beta_end)
        self.hybrid, self.vlb_weight = hybrid, float(vlb_weight)
        self.betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        self.alpha_bars = torch.cumprod(1.0 - self.betas, dim=0)

    def __repr__(self) -> str:
        loss = f", hybrid loss (vlb_weight {self.vlb_weight:g})" if self.hybrid else ""
        return (f"GaussianDiffusion(num_steps={self.num_steps}, linear betas "
                f"{self.beta_start}..{self.beta_end}{loss})")

    def config(self) -> dict:
        d = {"kind": self.kind, "num_steps": self.num_steps, "beta_start": self.beta_start,
             "beta_end": self.beta_end}
        if self.hybrid:             # only then: older checkpoints' configs stay equal
            d.update(hybrid=True, vlb_weight=self.vlb_weight)
        return d

    def model_time(self, steps: Tensor) -> Tensor:
        return steps.float() / self.num_steps

    def q_sample(self, x: Tensor, noise: Tensor, steps: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps."""
        abar = self.alpha_bars.to(x.device)[steps].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return abar.sqrt() * x + (1.0 - abar).sqrt() * noise

    # --- the reverse step's Gaussian ---

    def _posterior_tensors(self, steps: Tensor, like: Tensor):
        """Per-sample posterior coefficients at integer training steps (B,), shaped (B, 1, ...)."""
        rows = [posterior(self.alpha_bars, int(s)) for s in steps.tolist()]
        shape = (-1, *([1] * (like.dim() - 1)))
        return [torch.tensor([r[i] for r in rows], dtype=torch.float64,
                             device=like.device).view(shape) for i in range(5)]

    def reverse_gaussian(self, output: Tensor, x_t: Tensor, steps: Tensor
                         ) -> tuple[Tensor, Tensor]:
        """(mean, log variance) of p(x_{t-1} | x_t) from a learned-variance output [eps, v]
        (B, 2C, ...) at training steps (B,), in float64."""
        c = x_t.shape[1]
        eps, v = output[:, :c].double(), output[:, c:].double()
        beta, coef_x0, coef_xt, _, log_small = self._posterior_tensors(steps, x_t)
        abar = self.alpha_bars.to(x_t.device)[steps].view(beta.shape)
        x0 = (x_t.double() - (1.0 - abar).sqrt() * eps) / abar.sqrt()
        frac = (v + 1.0) / 2.0
        log_var = frac * beta.log() + (1.0 - frac) * log_small
        return coef_x0 * x0 + coef_xt * x_t.double(), log_var

    def vlb_terms(self, output: Tensor, x0: Tensor, x_t: Tensor, steps: Tensor) -> Tensor:
        """L_t per sample (B,) in bits per dimension: the KL of the true posterior from the
        model's reverse Gaussian for t > 0, the discretised decoder NLL of x0 at t = 0."""
        mean, log_var = self.reverse_gaussian(output, x_t, steps)
        _, coef_x0, coef_xt, _, log_true = self._posterior_tensors(steps, x_t)
        true_mean = coef_x0 * x0.double() + coef_xt * x_t.double()
        dims = tuple(range(1, x0.dim()))
        kl = normal_kl(true_mean, log_true, mean, log_var).mean(dims) / math.log(2.0)
        nll = discretized_gaussian_nll(x0.double(), mean, 0.5 * log_var).mean(dims) / math.log(2.0)
        return torch.where(steps == 0, nll, kl)

    # --- training ---

    def loss(self, model: Denoiser, x: Tensor, y: Tensor, *, noise: Tensor | None = None,
             steps: Tensor | None = None) -> Tensor:
        """MSE between model(x_t, t / T, y) and eps, t uniform on {0..T-1} (global torch RNG);
        with hybrid=True the model outputs [eps, v] and the VLB term above is added."""
        noise = torch.randn_like(x) if noise is None else noise
        if steps is None:
            steps = torch.randint(0, self.num_steps, (x.shape[0],), device=x.device)
        x_t = self.q_sample(x, noise, steps)
        pred = model(x_t, self.model_time(steps), y)
        c = x.shape[1]
        if pred.shape[1] != (2 * c if self.hybrid else c):
            raise ValueError(f"the model outputs {pred.shape[1]} channels for {c}-channel data; "
                             + ("the hybrid loss needs learn_sigma=True (2C: eps and variance)"
                                if self.hybrid else "the epsilon MSE needs learn_sigma=False "
                                "(use the hybrid loss for a learned variance)"))
        mse = (pred[:, :c].float() - noise.float()).square().mean()
        if not self.hybrid:
            return mse
        frozen = torch.cat([pred[:, :c].detach(), pred[:, c:]], dim=1)   # only v learns from L_t
        vlb = self.vlb_terms(frozen, x, x_t, steps).mean()
        return mse + (self.vlb_weight * self.num_steps * vlb).to(mse.dtype)

    # --- sampling ---

    def timesteps(self, steps: int) -> list[int]:
        """steps integer timesteps from T-1 down to 0, evenly spaced (the "linspace" spacing;
        DDIM's grid). DDPM uses respaced_steps, ADM's rounding of the same grid."""
        check_positive_int("steps", steps)
        if steps > self.num_steps:
            raise ValueError(f"steps must be <= num_steps={self.num_steps}, got {steps}")
        grid = torch.linspace(self.num_steps - 1, 0, steps, dtype=torch.float64).round().long()
        return grid.tolist()

    @torch.no_grad()
    def sample(self, model: Denoiser, noise: Tensor, y: Tensor, *, steps: int = 50,
               method: str = "ddim", cfg: float = 1.0, null_class: int | None = None,
               generator: torch.Generator | None = None, eta: float = 0.0,
               guidance: str = "standard", guided_channels: int | None = None,
               variance: str | None = None) -> Tensor:
        """From x_T = noise to x_0 on `steps` respaced steps. method "ddim" (eta > 0 adds
        noise from generator) or "ddpm" (ancestral; variance "learned" for [eps, v] models,
        the default for them, else "small" = beta~ or "large" = beta). cfg is read in the
        `guidance` convention; guided_channels=3 is DiT's legacy forward_with_cfg."""
        if method not in self.methods:
            raise ValueError(f"the diffusion sampler must be one of {self.methods}, got {method!r}")
        if not math.isfinite(eta):
            raise ValueError(f"eta must be finite, got {eta!r}")
        check_sampler_inputs(model, noise, y)
        denoise = guided(model, cfg, null_class, convention=guidance,
                         guided_channels=guided_channels)
        ones = torch.ones(noise.shape[0], device=noise.device, dtype=noise.dtype)
        c = noise.shape[1]

        def output(x, s):
            return denoise(x, ones * (s / self.num_steps), y)

        if method == "ddim":
            return ddim(lambda x, s: output(x, s)[:, :c], noise, self.alpha_bars,
                        self.timesteps(steps), eta=eta, generator=generator)
        if variance is not None and variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
        return ddpm(output, noise, self.alpha_bars, respaced_steps(self.num_steps, steps)[::-1],
                    variance=variance, generator=generator)
