"""CIFAR-10 through torchvision, from files already on disk (nothing is downloaded)."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice

CIFAR10_CLASSES = 10
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def load_cifar10(root: str | os.PathLike, split: str = "train") -> tuple[Tensor, Tensor]:
    """Images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64 of the "train" (50000) or
    "heldout" (the 10000 test images) split; `root` holds the extracted cifar-10-batches-py/."""
    check_choice("split", split, ("train", "heldout"))
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as err:
        raise ImportError("the CIFAR-10 dataset needs torchvision (pip install torchvision); "
                          "the embedded 'digits' dataset needs nothing") from err
    try:
        data = CIFAR10(str(root), train=split == "train", download=False)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"CIFAR-10 files not found under {str(root)!r}: download {CIFAR10_URL} and extract it "
            f"there (giving {os.path.join(str(root), 'cifar-10-batches-py')})") from err
    images = torch.from_numpy(np.ascontiguousarray(data.data)).permute(0, 3, 1, 2).float() / 255.0
    return images.contiguous(), torch.tensor(data.targets, dtype=torch.int64)
