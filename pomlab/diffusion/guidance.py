"""Classifier-free guidance under two named conventions, on all channels or the first few.

- "standard" (Ho & Salimans; DiT's `cfg_scale`): out = u + w (c - u); w = 1 is the conditional
  model, no guidance.
- "authors" (the PoM paper's HoMM samplers): out = c + w (c - u) = u + (1 + w)(c - u); w = 0 is
  no guidance, so the paper's "ω = 1" is the standard w = 2.

`guided_channels=k` guides only the first k output channels and passes the rest through from
the conditional branch: what DiT's `forward_with_cfg` does with k = 3 (on 4 latent channels plus
the learned variance), kept as an explicit legacy option; None (the default) guides every channel.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

# A denoiser as the samplers see it: (x, t, y) -> prediction with x's shape.
Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]

CONVENTIONS = ("standard", "authors")
PAPER_GUIDANCE = 4.0      # w at the reference scale s0
PAPER_REFERENCE_SIZE = 256


def check_sampler_inputs(model, noise: Tensor, y: Tensor) -> None:
    """A sampler's entry check, once per call: a model that offers ``check_batch`` (pomlab's
    image models: shapes, dtypes, class-id range; one host sync) checks the noise and labels it
    will be called with at every step (those calls then check only shapes)."""
    check_batch = getattr(model, "check_batch", None)
    if check_batch is not None:
        check_batch(noise, torch.ones(noise.shape[0], dtype=noise.dtype, device=noise.device), y)


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"guidance convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def standard_scale(scale: float, convention: str = "standard") -> float:
    """The scale in the standard convention: `scale` itself, or 1 + scale for "authors"."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"cfg scale must be a finite number, got {scale!r}")
    return float(scale) + (1.0 if check_convention(convention) == "authors" else 0.0)


def guidance_label(scale: float, convention: str = "standard",
                   guided_channels: int | None = None) -> str:
    """How results name a guidance setting, e.g. "cfg 1 (authors: c + w(c - u))"."""
    formula = {"standard": "u + w(c - u)", "authors": "c + w(c - u)"}[check_convention(convention)]
    channels = "" if guided_channels is None else f", first {guided_channels} channels"
    return f"cfg {scale:g} ({convention}: {formula}{channels})"


def paper_guidance_scale(image_size: float, *, base_scale: float = PAPER_GUIDANCE,
                         reference_size: float = PAPER_REFERENCE_SIZE) -> float:
    """The paper's high-resolution rule w = 4 * s / s0 (s the image side in pixels, s0 = 256).

    The paper's w is in the "authors" convention (pass convention="authors" with it)."""
    if not (isinstance(image_size, (int, float)) and math.isfinite(image_size) and image_size > 0):
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
    return base_scale * float(image_size) / float(reference_size)


def _check_channels(guided_channels: int | None) -> None:
    if guided_channels is not None and (isinstance(guided_channels, bool)
                                        or not isinstance(guided_channels, int)
                                        or guided_channels < 1):
        raise ValueError(f"guided_channels must be a positive int or None (all channels), "
                         f"got {guided_channels!r}")


def guided_prediction(model: Denoiser, x: Tensor, t: Tensor, y: Tensor, scale: float,
                      null_class: int, *, convention: str = "standard",
                      guided_channels: int | None = None) -> Tensor:
    """One batched call on [x, x] with labels [y, null]; returns the guided prediction.

    Always evaluates both branches (so scale = 1 checks the batching); use `guided` to skip
    the unconditional branch when it is not needed.
    """
    w = standard_scale(scale, convention)
    _check_channels(guided_channels)
    n = x.shape[0]
    null = torch.full_like(y, null_class)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
    cond, uncond = out[:n], out[n:]
    if guided_channels is None or guided_channels >= cond.shape[1]:
        return uncond + w * (cond - uncond)
    k = guided_channels
    return torch.cat([uncond[:, :k] + w * (cond[:, :k] - uncond[:, :k]), cond[:, k:]], dim=1)


def guided(model: Denoiser, scale: float, null_class: int | None, *,
           convention: str = "standard", guided_channels: int | None = None) -> Denoiser:
    """The denoiser a sampler should call: the model itself when the guidance is a no-op
    (standard w = 1, authors w = 0), so no extra cost."""
    w = standard_scale(scale, convention)
    _check_channels(guided_channels)
    if w == 1.0:
        return model
    if null_class is None:
        raise ValueError("classifier-free guidance needs null_class (the model's num_classes, "
                         "the index of its null label)")
    return lambda x, t, y: guided_prediction(model, x, t, y, scale, null_class,
                                             convention=convention,
                                             guided_channels=guided_channels)
