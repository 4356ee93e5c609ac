"""One entry point for every training set: load_dataset(name, ...) -> ImageDataset; CIFAR-10."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice
from .digits import NUM_CLASSES as DIGITS_CLASSES, load_digits
from .images import ImageDataset, ImageFolder, TensorImageDataset, resize_square
from .latents import LatentShards

DATASETS = ("digits", "folder", "cifar10", "latents")
DATASETS_ON_DISK = ("folder", "cifar10", "latents")          # the datasets read from a root folder
DEFAULT_SIZE_CHANNELS = {"digits": (16, 1), "cifar10": (32, 3), "folder": (256, 3)}
CIFAR10_CLASSES = 10
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def load_dataset(name: str, *, root: str | os.PathLike | None = None, split: str = "train",
                 image_size: int | None = None, channels: int | None = None,
                 hflip: bool = False) -> ImageDataset:
    """name: one of DATASETS (docs/training.md, "Datasets"); split: "train" or "heldout" (digits,
    cifar10; folders and latents are one split, "train")."""
    check_choice("dataset", name, DATASETS)
    if hflip and name != "folder":
        raise ValueError(f"hflip (random horizontal flips) applies to image folders "
                         f"(dataset 'folder'), not {name!r}; for latents flip before encoding "
                         "(experiments/encode_latents.py --hflip)")
    if name == "digits" and root is not None:
        raise ValueError(f"dataset 'digits' is embedded and reads no folder, got root (--data-path) "
                         f"{str(root)!r}: use dataset folder, cifar10 or latents to read it")
    if name in DATASETS_ON_DISK and root is None:
        raise ValueError(f"dataset {name!r} needs a root folder (--data-path)")
    if name in ("folder", "latents") and split != "train":
        raise ValueError(f"dataset {name!r} has one split, 'train' (the whole folder); "
                         f"got split={split!r}")
    if name == "latents":
        data = LatentShards(root)
        if image_size not in (None, data.size) or channels not in (None, data.channels):
            raise ValueError(f"latent set {str(root)!r} is {data.channels}x{data.size}x{data.size}; "
                             f"got image_size={image_size}, channels={channels}")
        return data
    default_size, default_channels = DEFAULT_SIZE_CHANNELS[name]
    size = default_size if image_size is None else image_size
    channels = default_channels if channels is None else channels
    if name == "folder":
        return ImageFolder(root, size, channels, hflip=hflip)
    if name == "digits":
        return TensorImageDataset(*load_digits(split, size, channels), DIGITS_CLASSES, "digits")
    check_choice("channels", channels, (1, 3))
    images, labels = load_cifar10(root, split)
    images = images.mean(1, keepdim=True) if channels == 1 else images
    return TensorImageDataset(resize_square(images, size), labels, CIFAR10_CLASSES, "cifar10")


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
