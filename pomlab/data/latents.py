"""Pre-encoded VAE latents (the paper-scale input of DiT/DiPoM) in float16 shards on disk,
written atomically, meta.json last, read memory-mapped; the folder layout is in docs/data.md."""
from __future__ import annotations

import bisect
import itertools
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from ..io import atomic_torch_save, atomic_write_json
from ..checks import check_ids, check_positive_int
from .images import ImageDataset

FORMAT = "pomlab-latents-v1"
SD_VAE_SCALE_FACTOR = 0.18215      # Stable Diffusion's VAE (and DiT's) latent scale
PRELOAD_BYTES = 1 << 30            # sets below 1 GiB are read fully into memory


class LatentShardWriter:
    """Collects (latents, labels) batches and writes fixed-size shards, then meta.json."""

    def __init__(self, root: str | os.PathLike, *, num_classes: int, scale_factor: float,
                 shard_size: int = 4096, **meta):
        check_positive_int("shard_size", shard_size)
        check_positive_int("num_classes", num_classes)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / "meta.json").exists():
            raise FileExistsError(f"{str(self.root)!r} already holds a latent set (meta.json); "
                                  "choose a new folder")
        self.shard_size, self.meta = shard_size, {"format": FORMAT, "num_classes": num_classes,
                                                  "scale_factor": float(scale_factor), **meta}
        self._latents, self._labels, self._pending = [], [], 0          # not written yet
        self.shards: list[dict] = []
        self.shape: tuple[int, ...] | None = None

    def add(self, latents: Tensor, labels: Tensor) -> None:
        if latents.dim() != 4 or latents.size(2) != latents.size(3) or len(latents) != len(labels):
            raise ValueError(f"need square latents (n, C, h, h) and n labels, got "
                             f"{tuple(latents.shape)} and {tuple(labels.shape)}")
        if self.shape not in (None, tuple(latents.shape[1:])):
            raise ValueError(f"latent shape changed from {self.shape} to {tuple(latents.shape[1:])}")
        if not torch.isfinite(latents).all():
            raise ValueError("latents contain NaN or inf")
        n = self.meta["num_classes"]
        check_ids("labels", labels, n, f"class ids in [0, {n})")
        self.shape = tuple(latents.shape[1:])
        self._latents.append(latents.detach().to("cpu", torch.float16))
        self._labels.append(labels.detach().to("cpu", torch.int64))
        self._pending += len(labels)
        while self._pending >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, count: int) -> None:
        latents, labels = torch.cat(self._latents), torch.cat(self._labels)
        name = f"shard_{len(self.shards):05d}.pt"
        atomic_torch_save({"latents": latents[:count].clone(), "labels": labels[:count].clone()},
                          self.root / name)
        self.shards.append({"file": name, "count": count})
        self._latents, self._labels = [latents[count:]], [labels[count:]]
        self._pending -= count

    def close(self) -> Path:
        if self._pending:
            self._flush(self._pending)
        if not self.shards:
            raise ValueError("no latents were added")
        return atomic_write_json(self.root / "meta.json", {
            **self.meta, "channels": self.shape[0], "size": self.shape[1],
            "count": sum(s["count"] for s in self.shards), "shards": self.shards})


class LatentShards(ImageDataset):
    """A latent folder as a dataset of (scaled latent float32 (C, h, w), label)."""

    kind = "latents"

    def __init__(self, root: str | os.PathLike, preload: bool | None = None):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{str(self.root)!r} is not a latent folder (no meta.json); "
                                    "make one with experiments/encode_latents.py")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(meta_path)!r}: unknown format {meta.get('format')!r}, "
                             f"expected {FORMAT!r}")
        self.meta, self.name = meta, f"latents:{self.root}"
        self.num_classes, self.channels, self.size, self.scale_factor = (
            meta["num_classes"], meta["channels"], meta["size"], meta["scale_factor"])
        self.counts = [s["count"] for s in meta["shards"]]
        self.starts = [0, *itertools.accumulate(self.counts)]
        self._shards: dict[int, dict] = {}
        nbytes = self.starts[-1] * self.channels * self.size * self.size * 2
        if preload or (preload is None and nbytes <= PRELOAD_BYTES):
            parts = [self._shard(i) for i in range(len(self.counts))]
            self.tensors = (torch.cat([p["latents"] for p in parts]).float(),
                            torch.cat([p["labels"] for p in parts]))
            self._shards.clear()

    def _shard(self, i: int) -> dict:
        if i not in self._shards:
            path = self.root / self.meta["shards"][i]["file"]
            try:
                shard = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            except (RuntimeError, OSError, EOFError) as err:
                raise ValueError(f"latent shard {str(path)!r} is missing or corrupt: {err}") from err
            if len(shard["labels"]) != self.counts[i]:
                raise ValueError(f"latent shard {str(path)!r} holds {len(shard['labels'])} items, "
                                 f"meta.json says {self.counts[i]}")
            self._shards[i] = shard
        return self._shards[i]

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i):
        if self.tensors is not None:
            return self.tensors[0][i], self.tensors[1][i]
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = bisect.bisect_right(self.starts, i) - 1
        shard = self._shard(s)
        return shard["latents"][i - self.starts[s]].float(), shard["labels"][i - self.starts[s]]


@torch.no_grad()
def encode_images(vae, images: Tensor, scale_factor: float = SD_VAE_SCALE_FACTOR, *,
                  sample: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """Images in [-1, 1] (N, 3, H, W) -> scaled latents: a posterior sample (DiT) or its mean."""
    dist = vae.encode(images).latent_dist
    latents = dist.sample(generator=generator) if sample else dist.mean
    return latents * scale_factor


@torch.no_grad()
def decode_latents(vae, latents: Tensor, scale_factor: float = SD_VAE_SCALE_FACTOR) -> Tensor:
    """Scaled latents -> images in [-1, 1] with the same VAE."""
    return vae.decode(latents / scale_factor).sample.clamp(-1.0, 1.0)


def load_vae(source: str, subfolder: str | None = None):
    """A diffusers AutoencoderKL from a hub id (e.g. stabilityai/sd-vae-ft-ema) or a local
    save_pretrained folder; used to encode latents and to decode samples for pixel metrics."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as err:
        raise ImportError("the VAE (encoding or decoding latents) needs diffusers: pip install "
                          "diffusers safetensors (or pip install 'pomlab[latents]')") from err
    try:
        return AutoencoderKL.from_pretrained(source, subfolder=subfolder)
    except OSError as err:
        raise FileNotFoundError(f"could not load a VAE from {source!r} (a hub id such as "
                                f"stabilityai/sd-vae-ft-ema, or a local save_pretrained folder): "
                                f"{err}") from err
