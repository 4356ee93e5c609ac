"""Training objectives and samplers: flow matching (Euler/Heun), epsilon diffusion (DDIM),
classifier-free guidance and the EMA of weights."""
from __future__ import annotations

from .ema import EMA
from .flow import FlowMatching, shift_for_side, shift_time
from .gaussian import GaussianDiffusion
from .generate import generate, sampling_mode
from .guidance import guided, guided_prediction, paper_guidance_scale
from .samplers import ddim, euler, heun

PROCESSES = ("flow", "diffusion")


def make_process(kind: str = "flow", **options):
    """"flow" -> FlowMatching(shift=None), "diffusion" -> GaussianDiffusion(1000 linear steps).

    `options` go to the constructor; the dict returned by a process's .config() rebuilds it:
    make_process(**process.config()).
    """
    if kind == "flow":
        return FlowMatching(**options)
    if kind == "diffusion":
        return GaussianDiffusion(**options)
    raise ValueError(f"loss/process must be one of {PROCESSES}, got {kind!r}")


__all__ = ["EMA", "FlowMatching", "GaussianDiffusion", "make_process", "PROCESSES",
           "guided", "guided_prediction", "paper_guidance_scale", "shift_for_side", "shift_time",
           "euler", "heun", "ddim", "generate", "sampling_mode"]
