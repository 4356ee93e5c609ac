"""One pass of a backend over an image set: feature statistics (and logits) in batches."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_positive_int
from .backends import FeatureBackend, get_backend
from .images import check_images
from .scores import FeatureStats, warn_if_rank_deficient


class GivenFeatures(nn.Module):
    """Identity "feature extractor" for torchmetrics' metrics, which are given features: the
    backend runs once per batch and its features feed FID, IS, KID alike."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def extract(images: Tensor, backend: FeatureBackend, *, name: str = "images", logits: bool = True,
            batch_size: int | None = None, progress: bool = False, source: str = "",
            warn_rank: bool = True, features_out: list | None = None
            ) -> tuple[FeatureStats, Tensor | None]:
    """Features' mean and covariance (float64, accumulated by torchmetrics'
    FrechetInceptionDistance) and, if asked, the logits (N, classes) on the CPU. features_out:
    a list that receives each batch's features (CPU float32), for precision/recall and KID."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from tqdm.auto import tqdm

    images = check_images(name, images, min_count=2)
    if warn_rank:
        warn_if_rank_deficient(name, len(images), backend.num_features)
    batch_size = check_positive_int("batch_size", batch_size or backend.default_batch_size)
    device = backend.device
    accumulator = FrechetInceptionDistance(feature=GivenFeatures(backend.num_features),
                                           sync_on_compute=False).to(device)   # local, even under DDP
    all_logits = []
    for start in tqdm(range(0, len(images), batch_size), disable=not progress,
                      desc=f"{backend.name} features ({name})"):
        with torch.no_grad():
            features = backend(images[start:start + batch_size].to(device, torch.float32))
            if not bool(torch.isfinite(features).all()):
                raise RuntimeError(f"the {backend.name} backend produced non-finite features "
                                   f"for {name}")
            accumulator.update(features, real=True)
            if features_out is not None:
                features_out.append(features.float().cpu())
            if logits:
                all_logits.append(backend.head(features).float().cpu())
    n = int(accumulator.real_features_num_samples)
    mean = accumulator.real_features_sum / n
    covariance = (accumulator.real_features_cov_sum - n * torch.outer(mean, mean)) / (n - 1)
    stats = FeatureStats(mu=mean.cpu().numpy().astype(np.float64),
                         sigma=covariance.cpu().numpy().astype(np.float64), n=n,
                         backend=backend.cache_tag, source=source or name)
    return stats, (torch.cat(all_logits) if logits else None)


def feature_statistics(images: Tensor, backend: str | FeatureBackend = "digits", *,
                       batch_size: int | None = None, device: str | torch.device | None = None,
                       weights: str | os.PathLike | None = None, progress: bool = False,
                       source: str = "") -> FeatureStats:
    """Mean and covariance (float64) of a backend's features over float images (N, C, H, W) in [0, 1]."""
    backend = get_backend(backend, weights=weights, device=device)
    return extract(images, backend, logits=False, batch_size=batch_size, progress=progress,
                   source=source)[0]
