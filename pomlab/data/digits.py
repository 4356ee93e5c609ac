"""The embedded default dataset: scikit-learn's handwritten digits (8x8, 10 classes, offline), with
one fixed stratified split, so every classifier, FID reference and sweep sees the same images."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..checks import check_choice, check_positive_int
from .images import resize_square

NUM_CLASSES = 10
NATIVE_SIZE = 8
SPLITS = ("train", "heldout", "all")


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    train, heldout = train_test_split(index, test_size=0.2, random_state=0, stratify=labels)
    splits = {"train": np.sort(train), "heldout": np.sort(heldout), "all": index}
    return bunch.images.astype(np.float32) / 16.0, labels, splits     # pixels 0..16 -> [0, 1]


def load_digits(split: str = "train", size: int = NATIVE_SIZE, channels: int = 1
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, channels, size, size) float32 in [0, 1] and labels (N,) int64. split: "train"
    (1437 images), "heldout" (360) or "all" (1797); channels 3 repeats the grey."""
    check_choice("split", split, SPLITS)
    check_positive_int("size", size)
    check_choice("channels", channels, (1, 3))
    images, labels, splits = _raw()
    keep = splits[split]
    x = resize_square(torch.from_numpy(images[keep]).unsqueeze(1), size)
    return x.repeat(1, channels, 1, 1).contiguous(), torch.from_numpy(labels[keep]).clone()
