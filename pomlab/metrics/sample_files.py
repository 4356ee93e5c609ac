"""Saved samples -> float images (N, C, H, W) in [0, 1]: a folder of PNGs or an .npz array."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png",)


def load_samples(path: str | os.PathLike, key: str | None = None) -> Tensor:
    """Images from a folder of PNG files (sorted by name, all one size; grey or RGB) or from an
    .npz file holding one image array (or the array `key`): uint8 arrays are divided by 255,
    float arrays must already be in [0, 1]; layouts (N, H, W), (N, C, H, W) and (N, H, W, C)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _load_png_folder(path)
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path, key)
    raise ValueError(f"samples must be a folder of PNG images or an .npz file, got {path}"
                     + ("" if path.exists() else " (it does not exist)"))


def _load_png_folder(folder: Path) -> Tensor:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no PNG images in {folder}")
    arrays = []
    for file in files:
        with Image.open(file) as image:
            mode = "L" if image.mode in ("1", "L", "LA") else "RGB"
            arrays.append(np.asarray(image.convert(mode)))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"PNG images in {folder} differ in size or mode: {sorted(shapes)}")
    return _to_images(np.stack(arrays), str(folder))


def _load_npz(file: Path, key: str | None) -> Tensor:
    with np.load(file, allow_pickle=False) as data:
        names = list(data.keys())
        if key is None:
            preferred = [k for k in ("images", "samples", "arr_0") if k in names]
            if len(names) != 1 and not preferred:
                raise ValueError(f"{file} holds several arrays {names}: name one with key=/--key")
            key = names[0] if len(names) == 1 else preferred[0]
        if key not in names:
            raise ValueError(f"{file} has no array {key!r} (it holds {names})")
        return _to_images(data[key], f"{file}[{key}]")


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
