"""The training sets through one entry point, load_dataset(name, ...) -> ImageDataset, and the
order of their batches: shuffled, sharded over DDP ranks, resumable (docs/data.md)."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice, check_positive_int
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
        raise ValueError(f"hflip applies to image folders ('folder'), not {name!r}; for latents "
                         "flip before encoding (experiments/encode_latents.py --hflip)")
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


class ShardedBatchSampler:
    """Batches of dataset indices for one rank, epoch after epoch; state_dict() resumes them."""

    def __init__(self, dataset_size: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        check_positive_int("dataset_size", dataset_size)
        check_positive_int("batch_size", batch_size)
        check_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.batches_per_epoch = dataset_size // world_size // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"the dataset ({dataset_size} items) is smaller than one batch of "
                             f"{batch_size} per rank on {world_size} rank(s)")
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_state = self.generator.get_state()
        perm = torch.randperm(self.dataset_size, generator=self.generator)
        mine = perm[self.rank::self.world_size][: self.batches_per_epoch * self.batch_size]
        self._batches = mine.view(self.batches_per_epoch, self.batch_size)

    def remaining(self) -> Tensor:
        """The batches of the current epoch not consumed yet, (k, batch_size)."""
        return self._batches[self.position:]

    def advance(self) -> None:
        """Mark one batch consumed (moving to the next epoch after the last one)."""
        self.position += 1
        if self.position == self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()

    def next_batch(self) -> Tensor:
        batch = self._batches[self.position]
        self.advance()
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "generator": self._epoch_state,
                "dataset_size": self.dataset_size, "batch_size": self.batch_size,
                "world_size": self.world_size, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        for key in ("dataset_size", "batch_size", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot resume the data order: the checkpoint has {key}="
                                 f"{state[key]}, this run has {getattr(self, key)}")
        self.epoch, self.position = state["epoch"], state["position"]
        self.generator.set_state(state["generator"])
        self._start_epoch()
