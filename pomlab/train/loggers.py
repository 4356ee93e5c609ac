"""What a run shows while it trains: PNG sample grids and, with logger="tensorboard", event files
in out/tensorboard (loss, lr, gradient norm, throughput, sample grids, the sweeps' FID/IS)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from ..data import from_model_range


def grid_image(samples: Tensor, rows: int, kind: str = "pixels", min_tile: int = 64) -> np.ndarray:
    """(rows*cols, C, H, W) model-space samples -> uint8 (H', W', 3) grid, one row per class.
    Latents (no VAE here) show their first three channels mapped from [-3, 3] to [0, 1]."""
    x = from_model_range(samples) if kind == "pixels" else ((samples[:, :3] + 3) / 6).clamp(0, 1)
    if x.shape[1] < 3:                                        # grey; 2 channels: add the first
        x = x[:, [0, 0, 0] if x.shape[1] == 1 else [0, 1, 0]]
    x = x.float().cpu()
    pad = max(1, math.ceil(min_tile / x.shape[-1]))          # the upscaling factor, and the gap
    x = x.repeat_interleave(pad, -1).repeat_interleave(pad, -2)
    n, c, h, w = x.shape
    tiles = F.pad(x, (pad, 0, pad, 0), value=1.0)            # white gap left of and above each
    grid = tiles.reshape(rows, n // rows, c, h + pad, w + pad).permute(2, 0, 3, 1, 4)
    canvas = F.pad(grid.reshape(c, rows * (h + pad), -1), (0, pad, 0, pad), value=1.0)
    return (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """A figure, written in place (a torn grid loses no work: the next one replaces it)."""
    from PIL import Image
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return Path(path)


class Logger:
    """scalars(step, values, prefix), image(tag, step, HWC uint8): no-ops for csv, off rank 0."""

    def __init__(self, kind: str, folder: str | os.PathLike | None):
        self.writer = None
        if kind == "tensorboard" and folder is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ImportError("logger 'tensorboard' needs the tensorboard extra: pip install "
                                  "'pomlab[tensorboard]' (or pip install tensorboard)") from None
            self.writer = SummaryWriter(str(Path(folder) / "tensorboard"))

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(prefix + key, value, step)
            self.writer.flush()

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
