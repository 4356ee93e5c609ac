"""Training objectives and samplers: flow matching (Euler/Heun), epsilon diffusion (MSE or ADM's
hybrid loss; DDIM, ancestral DDPM with learned variance on respaced steps), classifier-free
guidance in two named conventions, and the EMA of weights."""
from __future__ import annotations

from .ema import EMA
from .flow import FlowMatching, shift_for_side, shift_time
from .gaussian import GaussianDiffusion, discretized_gaussian_nll, normal_kl, respaced_steps
from .generate import generate, sampling_mode
from .guidance import (CONVENTIONS, check_convention, guidance_label, guided, guided_prediction,
                       paper_guidance_scale, standard_scale)
from .samplers import ddim, ddpm, euler, heun, posterior

PROCESSES = ("flow", "diffusion", "hybrid")


def make_process(kind: str = "flow", **options):
    """"flow" -> FlowMatching(shift=None), "diffusion" -> GaussianDiffusion(1000 linear steps),
    "hybrid" -> the same with ADM's hybrid loss (learn_sigma models: epsilon and variance).

    `options` go to the constructor; the dict returned by a process's .config() rebuilds it:
    make_process(**process.config()).
    """
    if kind == "flow":
        return FlowMatching(**options)
    if kind == "diffusion":
        return GaussianDiffusion(**options)
    if kind == "hybrid":
        return GaussianDiffusion(hybrid=True, **options)
    raise ValueError(f"loss/process must be one of {PROCESSES}, got {kind!r}")


__all__ = ["EMA", "FlowMatching", "GaussianDiffusion", "make_process", "PROCESSES",
           "guided", "guided_prediction", "paper_guidance_scale", "shift_for_side", "shift_time",
           "euler", "heun", "ddim", "ddpm", "posterior", "generate", "sampling_mode", "CONVENTIONS", "check_convention",
           "guidance_label", "standard_scale", "respaced_steps", "normal_kl",
           "discretized_gaussian_nll"]
