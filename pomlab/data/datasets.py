"""One entry point for every training set: load_dataset(name, ...) -> ImageDataset."""
from __future__ import annotations

import os

from ..checks import check_choice
from .cifar import CIFAR10_CLASSES, load_cifar10
from .digits import NUM_CLASSES as DIGITS_CLASSES, load_digits
from .images import ImageDataset, ImageFolder, TensorImageDataset, resize_square
from .latents import LatentShards

DATASETS = ("digits", "folder", "cifar10", "latents")
DATASETS_ON_DISK = ("folder", "cifar10", "latents")          # the datasets read from a root folder
DEFAULT_SIZE = {"digits": 16, "cifar10": 32, "folder": 256}


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
    size = DEFAULT_SIZE[name] if image_size is None else image_size
    if name == "folder":
        return ImageFolder(root, size, 3 if channels is None else channels, hflip=hflip)
    if name == "digits":
        images, labels = load_digits(split, size, 1 if channels is None else channels)
        return TensorImageDataset(images, labels, DIGITS_CLASSES, "digits")
    check_choice("channels", 3 if channels is None else channels, (1, 3))
    images, labels = load_cifar10(root, split)
    if channels == 1:
        images = images.mean(1, keepdim=True)
    return TensorImageDataset(resize_square(images, size), labels, CIFAR10_CLASSES, "cifar10")
