"""The embedded default dataset: scikit-learn's real handwritten digits (8x8, 10 classes).

It ships inside scikit-learn, so every machine has it offline. The train/held-out split is
fixed (stratified, seed 0, 20% held out) so that every classifier, FID reference and sweep in
the project sees the same images.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

NUM_CLASSES = 10
NATIVE_SIZE = 8
SPLITS = ("train", "heldout", "all")
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32) / 16.0          # pixel values 0..16 -> [0, 1]
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, held_idx = train_test_split(index, test_size=HELDOUT_FRACTION,
                                           random_state=SPLIT_SEED, stratify=labels)
    split_of = np.zeros(len(labels), dtype=np.int8)
    split_of[held_idx] = 1
    return images, labels, split_of


def load_digits(split: str = "train", size: int = NATIVE_SIZE, channels: int = 1
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, channels, size, size) float32 in [0, 1] and labels (N,) int64.

    split: "train" (1437 images), "heldout" (360) or "all" (1797).
    size: output side in pixels (bilinear resize from 8x8, antialiased when shrinking).
    channels: 1 (grey) or 3 (grey repeated, for RGB feature extractors).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    images, labels, split_of = _raw()
    keep = np.ones_like(split_of, dtype=bool) if split == "all" else split_of == SPLITS.index(split)
    x = torch.from_numpy(images[keep]).unsqueeze(1)
    if size != NATIVE_SIZE:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < NATIVE_SIZE).clamp(0.0, 1.0)
    return x.repeat(1, channels, 1, 1).contiguous(), torch.from_numpy(labels[keep]).clone()
