"""FID and IS of a Trainer's samples, deterministic and independent of how many ranks share it:
fixed chunks, each with its own noise seed and balanced labels, taken by the ranks in turn and
pooled on rank 0; the reference statistics of training data likewise (docs/scaling.md)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..data import decode_latents, from_model_range, load_vae
from ..faults import fault_point
from ..io import atomic_write
from ..metrics import (FeatureStats, get_backend, inception_score_from_logits, load_samples,
                       pool_statistics, reference_features, stats_distance)
from ..metrics.coverage import coverage_scores
from ..metrics.extract import extract
from ..metrics.scores import IS_SPLITS, warn_if_rank_deficient
from .config import SweepConfig


def chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of max(1, n // chunk) near-equal chunks, each of >= min(n, chunk) samples."""
    count = max(1, n // chunk)
    edges = [round(i * n / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def chunk_seed(seed: int, index: int) -> int:
    """The noise seed of evaluation chunk `index` (the same for every model and step)."""
    return seed * 100_003 + index


def balanced_labels(start: int, stop: int, num_classes: int) -> Tensor:
    return torch.arange(start, stop) % num_classes


def vae_source(config: SweepConfig, meta: dict) -> str:
    """The VAE that decodes a latent set's samples: config.vae, else the one its meta.json names."""
    source = config.vae or meta.get("vae")
    if not source:
        raise ValueError("decoding latent samples needs a VAE: the latent folder's meta.json "
                         "names none; pass vae= / --vae (hub id or folder)")
    return source


def _npz_rows(path: Path, name: str) -> int:
    """Length of array `name` in an .npz, from its header only (ADM's arr_0 images are 2 GB)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        shape, _, _ = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                       else np.lib.format.read_array_header_2_0(member))
    return int(shape[0]) if shape else 0


class Evaluator:
    """evaluator(trainer) -> metrics dict on rank 0 (None on other ranks); under DDP every rank
    builds and calls it (both collective). config.reference: see docs/scaling.md."""

    def __init__(self, config: SweepConfig, trainer, *, cache_dir: str | os.PathLike | None = None):
        self.config, self.trainer = config, trainer
        self.rank, self.world = ((dist.get_rank(), dist.get_world_size())
                                 if dist.is_available() and dist.is_initialized() else (0, 1))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.backend = get_backend(config.backend, weights=config.backend_weights,
                                   device=trainer.device)
        # Precision/recall and KID need the real features: only the embedded digits' are kept
        # (with their statistics, on rank 0); the fake features travel with the chunks.
        self.coverage = config.reference == "data" and config.dataset == "digits"
        self.reference_features = None
        self.reference = self._reference_statistics()     # rank 0's (None elsewhere)

    # --- pixels ---

    @functools.cached_property
    def vae(self):
        source = vae_source(self.config, getattr(self.trainer.data, "meta", {}))
        return load_vae(source).to(self.trainer.device).eval()

    def decode(self, latents: Tensor, batch_size: int = 32) -> Tensor:
        """Scaled latents -> [0, 1] pixels on the CPU, through the VAE."""
        device, scale = self.trainer.device, self.trainer.data.scale_factor
        return torch.cat([from_model_range(decode_latents(self.vae, part.to(device), scale))
                          .float().cpu() for part in latents.split(batch_size)])

    def to_pixels(self, x: Tensor) -> Tensor:
        """Samples or data items in model space (latents, or pixels in [-1, 1]) as [0, 1] pixels."""
        return self.decode(x) if self.trainer.data.kind == "latents" else from_model_range(x)

    # --- reference ---

    def _reference_statistics(self) -> FeatureStats | None:
        """The reference's statistics on rank 0, None on the other ranks (collective)."""
        cfg, data = self.config, self.trainer.data
        if cfg.reference != "data" or cfg.dataset == "digits":   # small or precomputed: rank 0
            if self.rank != 0:
                return None
            if cfg.reference == "data":
                stats, self.reference_features = reference_features("digits", "train",
                                                                    data.size, self.backend)
                return stats
            return self._statistics_from_file(Path(cfg.reference).expanduser())
        count = min(len(data), cfg.reference_samples or cfg.fid_samples)
        key = {"dataset": cfg.dataset, "data_path": str(cfg.data_path), "size": data.size,
               "count": count, "seed": cfg.seed, "backend": self.backend.cache_tag,
               "vae": cfg.vae or getattr(data, "meta", {}).get("vae")}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = (self.cache_dir / f"{cfg.dataset}-{self.backend.name}-{digest}.npz"
                if self.cache_dir is not None else None)
        cached = [path is not None and path.is_file()]
        if self.world > 1:                      # rank 0 decides: every rank must agree
            dist.broadcast_object_list(cached, src=0)
        if cached[0]:
            if self.rank != 0:
                return None
            with np.load(path, allow_pickle=False) as f:
                return FeatureStats(mu=f["mu"], sigma=f["sigma"], n=int(f["n"]),
                                    backend=self.backend.cache_tag, source=str(f["source"]))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))

        def chunk_statistics(index: int, start: int, stop: int) -> FeatureStats:
            items = torch.stack([data[int(i)][0] for i in order[start:stop]])
            return extract(self.to_pixels(items), self.backend,
                           name="reference", logits=False, warn_rank=False)[0]

        parts = self._on_ranks(chunk_bounds(count, cfg.eval_chunk), chunk_statistics)
        if parts is None:
            return None
        stats = pool_statistics(parts, source=f"{cfg.dataset}:train[{count} random, "
                                              f"seed {cfg.seed}]")
        if path is not None:
            atomic_write(path, lambda f: np.savez(f, mu=stats.mu, sigma=stats.sigma,
                                                  n=np.int64(stats.n),
                                                  source=np.array(stats.source)))
        return stats

    def _on_ranks(self, chunks: list[tuple[int, int]], compute) -> list | None:
        """compute(index, start, stop) of every chunk, ranks taking turns (all on rank 0)."""
        mine = [(index, compute(index, *chunks[index]))
                for index in range(self.rank, len(chunks), self.world)]
        if self.world > 1:
            gathered = [None] * self.world if self.rank == 0 else None
            dist.gather_object(mine, gathered, dst=0)
            if self.rank != 0:
                return None
            mine = [part for rank_parts in gathered for part in rank_parts]
        return [result for _, result in sorted(mine, key=lambda part: part[0])]

    def _statistics_from_file(self, path: Path) -> FeatureStats:
        if not path.exists():
            raise FileNotFoundError(f"reference {str(path)!r} does not exist (give an .npz with "
                                    "mu and sigma, an .npz of images or a folder of PNGs)")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "mu" in f and "sigma" in f:
                    n = int(f["n"]) if "n" in f else _npz_rows(path, "arr_0") if "arr_0" in f else 0
                    if f["mu"].shape[-1] != self.backend.num_features:
                        raise ValueError(f"{path} holds {f['mu'].shape[-1]}-dimensional "
                                         f"statistics; the {self.backend.name} backend has "
                                         f"{self.backend.num_features} features")
                    return FeatureStats(mu=f["mu"].astype(np.float64),
                                        sigma=f["sigma"].astype(np.float64), n=n, source=path.name)
        return extract(load_samples(path), self.backend, name="reference", logits=False,
                       source=path.name)[0]

    # --- samples ---

    def __call__(self, trainer=None) -> dict | None:
        trainer = trainer or self.trainer
        cfg = self.config

        def chunk_scores(index: int, start: int, stop: int) -> tuple:   # stats, logits, features
            labels = balanced_labels(start, stop, trainer.data.num_classes)
            x = trainer.generate(labels, steps=cfg.sample_steps, method=cfg.sample_method,
                                 cfg=float(cfg.cfg), seed=chunk_seed(cfg.seed, index),
                                 batch_size=cfg.sample_batch, guidance=cfg.cfg_guidance)
            parts: list | None = [] if self.coverage else None
            stats, logits = extract(self.to_pixels(x), self.backend,
                                    name=f"samples[{start}:{stop}]", warn_rank=False,
                                    features_out=parts)
            fault_point("evaluation")
            return stats, logits, (torch.cat(parts) if parts is not None else None)

        parts = self._on_ranks(chunk_bounds(cfg.fid_samples, cfg.eval_chunk), chunk_scores)
        if parts is None:
            return None
        stats, logits, features = zip(*parts)
        fake = pool_statistics(list(stats), source="samples")
        warn_if_rank_deficient("samples", fake.n, self.backend.num_features)
        is_mean, is_std = inception_score_from_logits(torch.cat(logits), seed=cfg.seed,
                                                      splits=min(IS_SPLITS, fake.n))
        coverage = (coverage_scores(self.reference_features, torch.cat(features), self.backend,
                                    seed=cfg.seed) if self.coverage else {})
        return {**self.backend.labels, "fid": stats_distance(self.reference, fake),
                "is_mean": is_mean, "is_std": is_std, "n_fake": fake.n,
                "n_real": self.reference.n, "reference": self.reference.source, **coverage}
