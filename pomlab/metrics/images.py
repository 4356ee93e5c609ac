"""Checks and conversions for the images every metric takes: float (N, C, H, W) in [0, 1]."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# ITU-R BT.601 luma weights; they sum to 1, so grey repeated into RGB maps back exactly.
_LUMA = (0.299, 0.587, 0.114)


def check_images(name: str, images, *, min_count: int = 1) -> Tensor:
    """Validate float images (N, C, H, W), C in {1, 3}, finite, in [0, 1] (a tensor or numpy
    array); return them as a tensor."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of float images (N, C, H, W) in [0, 1], "
                        f"got {type(images).__name__}")
    if not images.dtype.is_floating_point:
        hint = " (uint8 images: divide by 255 first)" if images.dtype == torch.uint8 else ""
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], "
                        f"got dtype {images.dtype}{hint}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if c not in (1, 3):
        hint = (" (it looks channels-last: use images.permute(0, 3, 1, 2))"
                if images.shape[-1] in (1, 3) else "")
        raise ValueError(f"{name} must have 1 (grey) or 3 (RGB) channels in dim 1, got shape "
                         f"{tuple(images.shape)}{hint}")
    if h < 1 or w < 1:
        raise ValueError(f"{name} has an empty image size {h}x{w}")
    if n < min_count:
        raise ValueError(f"{name} must hold at least {min_count} images, got {n}")
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values (of {images.numel()}); "
                         "metrics are not computed on broken samples")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        if lo >= -1.0 and hi <= 1.0 and lo < 0.0:
            hint = "; images in [-1, 1] map to [0, 1] with ((x + 1) / 2).clamp(0, 1)"
        elif 2.0 < hi <= 255.0 and lo >= 0.0:
            hint = "; images in [0, 255] must be divided by 255"
        else:
            hint = "; clamp samples with .clamp(0, 1)"
        raise ValueError(f"{name} must have values in [0, 1], found range [{lo:.4g}, {hi:.4g}]{hint}")
    return images


def to_grey(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma; grey input passes through."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def to_rgb(images: Tensor) -> Tensor:
    """(N, 1, H, W) grey -> (N, 3, H, W); RGB input passes through."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
