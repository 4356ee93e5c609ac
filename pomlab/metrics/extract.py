"""One pass of a backend over an image set: feature statistics (and logits) in batches."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from ..checks import check_positive_int
from .backends import FeatureBackend, get_backend
from .images import check_images
from .scores import FeatureStats, warn_if_rank_deficient


def extract(images: Tensor, backend: FeatureBackend, *, name: str = "images", logits: bool = True,
            batch_size: int | None = None, progress: bool = False, source: str = "",
            warn_rank: bool = True, features_out: list | None = None
            ) -> tuple[FeatureStats, Tensor | None]:
    """Features' mean and covariance (float64 sums over the batches) and, if asked, the logits
    (N, classes) on the CPU; features_out receives each batch's features (CPU float32)."""
    from tqdm.auto import tqdm

    images = check_images(name, images, min_count=2)
    if warn_rank:
        warn_if_rank_deficient(name, len(images), backend.num_features)
    batch_size = check_positive_int("batch_size", batch_size or backend.default_batch_size)
    dim, device = backend.num_features, backend.device
    total = torch.zeros(dim, dtype=torch.float64, device=device)
    scatter = torch.zeros(dim, dim, dtype=torch.float64, device=device)     # sum of x x^T
    all_logits = []
    for start in tqdm(range(0, len(images), batch_size), disable=not progress,
                      desc=f"{backend.name} features ({name})"):
        with torch.no_grad():
            features = backend(images[start:start + batch_size].to(device, torch.float32))
            if not bool(torch.isfinite(features).all()):
                raise RuntimeError(f"{backend.name} backend: non-finite features for {name}")
            wide = features.double()
            total += wide.sum(dim=0)
            scatter += wide.t().mm(wide)
            if features_out is not None:
                features_out.append(features.float().cpu())
            if logits:
                all_logits.append(backend.head(features).float().cpu())
    n = len(images)
    mean = total / n
    covariance = (scatter - n * torch.outer(mean, mean)) / (n - 1)
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
