"""Classifier-free guidance: v = v_u + w * (v_c - v_u) on all channels."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

# A denoiser as the samplers see it: (x, t, y) -> prediction with x's shape.
Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]

PAPER_GUIDANCE = 4.0      # w at the reference scale s0
PAPER_REFERENCE_SIZE = 256


def paper_guidance_scale(image_size: float, *, base_scale: float = PAPER_GUIDANCE,
                         reference_size: float = PAPER_REFERENCE_SIZE) -> float:
    """The paper's high-resolution rule w = 4 * s / s0 (s the image side in pixels, s0 = 256)."""
    if not (isinstance(image_size, (int, float)) and math.isfinite(image_size) and image_size > 0):
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
    return base_scale * float(image_size) / float(reference_size)


def guided_prediction(model: Denoiser, x: Tensor, t: Tensor, y: Tensor, scale: float,
                      null_class: int) -> Tensor:
    """One batched call on [x, x] with labels [y, null]; returns u + scale * (c - u).

    Always evaluates both branches (so scale = 1 checks the batching); use `guided` to skip
    the unconditional branch when it is not needed.
    """
    if not math.isfinite(scale):
        raise ValueError(f"guidance scale must be finite, got {scale!r}")
    n = x.shape[0]
    null = torch.full_like(y, null_class)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
    cond, uncond = out[:n], out[n:]
    return uncond + scale * (cond - uncond)


def guided(model: Denoiser, scale: float, null_class: int | None) -> Denoiser:
    """The denoiser a sampler should call: the model itself when scale == 1 (no extra cost)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"cfg scale must be a finite number, got {scale!r}")
    if scale == 1.0:
        return model
    if null_class is None:
        raise ValueError("classifier-free guidance (cfg != 1) needs null_class (the model's "
                         "num_classes, the index of its null label)")
    return lambda x, t, y: guided_prediction(model, x, t, y, scale, null_class)
