"""Image datasets as the models see them: (image in [-1, 1], class label) with the attributes the
trainer needs; small sets live in memory (`tensors`, indexed directly), large ones load per item."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ..checks import check_choice, check_ids, check_positive_int

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def to_model_range(images01: Tensor) -> Tensor:
    """[0, 1] pixels -> [-1, 1]."""
    return images01 * 2.0 - 1.0


def from_model_range(images: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] pixels (clamped)."""
    return ((images + 1.0) * 0.5).clamp(0.0, 1.0)


def resize_square(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of [0, 1] images (N, C, H, W) to size x size, antialiased when shrinking."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=h > size or w > size).clamp(0.0, 1.0)


class ImageDataset(Dataset):
    """Base: (x, y) items with x (channels, size, size) in model space, y an int label."""

    name: str = "images"
    kind: str = "pixels"          # "pixels" ([-1, 1]) or "latents" (scaled VAE latents)
    tensors: tuple[Tensor, Tensor] | None = None      # (all images, all labels) when in memory
    num_classes: int
    channels: int
    size: int

    def describe(self) -> str:
        return (f"{self.name}: {len(self)} {self.kind} items, {self.channels}x{self.size}x{self.size}, "
                f"{self.num_classes} classes")


class TensorImageDataset(ImageDataset, TensorDataset):
    """An in-memory set: images in [0, 1] (N, C, H, W) are stored in model space [-1, 1]."""

    def __init__(self, images01: Tensor, labels: Tensor, num_classes: int, name: str):
        if (images01.dim() != 4 or len(images01) != len(labels) or len(labels) == 0
                or images01.shape[-1] != images01.shape[-2]):
            raise ValueError(f"{name}: need square images (N, C, H, H) and N labels with N >= 1, "
                             f"got {tuple(images01.shape)} and {tuple(labels.shape)}")
        labels = check_ids("labels", labels, num_classes, f"class ids in [0, {num_classes})")
        TensorDataset.__init__(self, to_model_range(images01.float()).contiguous(),
                               labels.long().contiguous())          # once, here: not per batch
        self.images, self.labels = self.tensors
        self.num_classes, self.name = int(num_classes), name
        self.channels, self.size = images01.shape[1], images01.shape[-1]


class ImageFolder(ImageDataset):
    """root/<class>/<images at any depth>, classes in name order, loaded lazily: shorter side to
    `size` (bicubic), centre crop (ADM/DiT); hflip mirrors with p = 1/2 (torch's global RNG)."""

    def __init__(self, root: str | os.PathLike, size: int, channels: int = 3, hflip: bool = False):
        check_positive_int("image_size", size)
        check_choice("channels", channels, (1, 3))
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a folder")
        classes = []
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                           and p.is_file() and not p.name.startswith("."))
            if files:
                classes.append((sub.name, files))
        if not classes:
            raise ValueError(f"no images found under {str(root)!r}: expected class subfolders "
                             f"root/<class>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)}")
        self.class_names = [name for name, _ in classes]
        self.files = [f for _, files in classes for f in files]
        self.labels = torch.tensor([i for i, (_, files) in enumerate(classes) for _ in files])
        if not isinstance(hflip, bool):
            raise TypeError(f"hflip must be a bool, got {type(hflip).__name__}")
        self.num_classes, self.channels, self.size, self.hflip = len(classes), channels, size, hflip
        self.name = f"folder:{root}" + (" (random hflip)" if hflip else "")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            im = im.convert("L" if self.channels == 1 else "RGB")
            w, h = im.size
            scale = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))),
                           Image.Resampling.BICUBIC, reducing_gap=3.0)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).reshape(self.size, self.size, self.channels).permute(2, 0, 1)
        if self.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return to_model_range(x.contiguous()), self.labels[i]
