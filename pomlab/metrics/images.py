"""The images every metric takes, float (N, C, H, W) in [0, 1]: checks, conversions, and loading
saved samples (a folder of PNGs or an .npz array)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

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
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite values (of {images.numel()}); "
                         "metrics are not computed on broken samples")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        hint = ("; images in [-1, 1] map to [0, 1] with ((x + 1) / 2).clamp(0, 1)"
                if lo >= -1.0 and hi <= 1.0 else "; images in [0, 255] must be divided by 255"
                if lo >= 0.0 and 2.0 < hi <= 255.0 else "; clamp samples with .clamp(0, 1)")
        raise ValueError(f"{name} must have values in [0, 1], found range [{lo:.4g}, {hi:.4g}]{hint}")
    return images


def to_grey(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma; grey input passes through."""
    if images.shape[1] == 1:
        return images
    # ITU-R BT.601 luma weights: they sum to 1, so grey repeated into RGB maps back exactly
    weights = images.new_tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def to_rgb(images: Tensor) -> Tensor:
    """(N, 1, H, W) grey -> (N, 3, H, W); RGB input passes through."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def load_samples(path: str | os.PathLike, key: str | None = None) -> Tensor:
    """Images from a folder of PNGs (by name, one size, grey or RGB) or an .npz's one array (or
    `key`): uint8 / 255 or float in [0, 1], laid out (N, H, W), (N, C, H, W) or (N, H, W, C)."""
    path = Path(path).expanduser()
    if path.is_dir():
        from PIL import Image

        arrays = []
        for file in sorted(p for p in path.iterdir() if p.suffix.lower() == ".png"):
            with Image.open(file) as image:
                arrays.append(np.asarray(image.convert("L" if image.mode in ("1", "L", "LA")
                                                       else "RGB")))
        if not arrays:
            raise ValueError(f"no PNG images in {path}")
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"PNG images in {path} differ in size or mode: "
                             f"{sorted({a.shape for a in arrays})}")
        return _to_images(np.stack(arrays), str(path))
    if not (path.is_file() and path.suffix == ".npz"):
        raise ValueError(f"samples must be a folder of PNG images or an .npz file, got {path}"
                         + ("" if path.exists() else " (it does not exist)"))
    with np.load(path, allow_pickle=False) as data:
        names = list(data.keys())
        if key is None:
            preferred = [k for k in ("images", "samples", "arr_0") if k in names]
            if len(names) != 1 and not preferred:
                raise ValueError(f"{path} holds several arrays {names}: name one with key=/--key")
            key = names[0] if len(names) == 1 else preferred[0]
        if key not in names:
            raise ValueError(f"{path} has no array {key!r} (it holds {names})")
        return _to_images(data[key], f"{path}[{key}]")


def _to_images(array: np.ndarray, where: str) -> Tensor:
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)                  # channels-last -> (N, C, H, W)
    if array.ndim != 4:
        raise ValueError(f"{where}: expected images (N, H, W), (N, C, H, W) or (N, H, W, C), "
                         f"got shape {array.shape}")
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    if np.issubdtype(array.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    raise ValueError(f"{where}: expected uint8 or float images, got dtype {array.dtype}")
