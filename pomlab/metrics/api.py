"""FID, IS and the one-call evaluation used by training runs, sweeps and the command line."""
from __future__ import annotations

import os

import torch
from torch import Tensor

from .backends import FeatureBackend, get_backend
from .coverage import DEFAULT_K, KID_SUBSET_SIZE, KID_SUBSETS, coverage_scores
from .extract import extract
from .images import check_images
from .reference import reference_features
from .scores import IS_SPLITS, inception_score_from_logits, stats_distance


def fid(real: Tensor, fake: Tensor, backend: str | FeatureBackend = "digits", *,
        batch_size: int | None = None, device: str | torch.device | None = None,
        weights: str | os.PathLike | None = None, progress: bool = False) -> float:
    """FID between two sets of float images (N, C, H, W) in [0, 1], any size, 1 or 3 channels
    (backend="digits": digits-FID, never Inception FID)."""
    backend = get_backend(backend, weights=weights, device=device)
    real_stats, fake_stats = (extract(images, backend, name=name, logits=False,
                                      batch_size=batch_size, progress=progress)[0]
                              for name, images in (("real", real), ("fake", fake)))
    return stats_distance(real_stats, fake_stats)


def inception_score_with_std(images: Tensor, backend: str | FeatureBackend = "digits", *,
                             splits: int = IS_SPLITS, seed: int = 0, batch_size: int | None = None,
                             device: str | torch.device | None = None,
                             weights: str | os.PathLike | None = None, progress: bool = False
                             ) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` seeded random splits, from the backend's
    logits (digits backend: digits-IS, at most 10 = the class count)."""
    backend = get_backend(backend, weights=weights, device=device)
    _, logits = extract(images, backend, batch_size=batch_size, progress=progress, warn_rank=False)
    return inception_score_from_logits(logits, splits=splits, seed=seed)


def inception_score(images: Tensor, backend: str | FeatureBackend = "digits", **kwargs) -> float:
    """The mean Inception Score (see inception_score_with_std for the arguments and the std)."""
    return inception_score_with_std(images, backend, **kwargs)[0]


def evaluate(fake: Tensor, reference: str | Tensor = "digits", split: str = "train",
             backend: str | FeatureBackend = "digits", *, size: int | None = None,
             splits: int = IS_SPLITS, seed: int = 0, cache: bool = True,
             cache_dir: str | os.PathLike | None = None, batch_size: int | None = None,
             device: str | torch.device | None = None, weights: str | os.PathLike | None = None,
             progress: bool = False, coverage: bool = True, k: int = DEFAULT_K,
             kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE) -> dict:
    """FID and IS of `fake` in one pass over the samples, with coverage also precision/recall and
    KID: a flat, labelled dict (keys in docs/metrics.md). `reference`: a registered dataset, whose
    statistics and features are cached, loaded at `size` pixels (default: the side of the fake
    images), or real images (N, C, H, W) in [0, 1]."""
    fake = check_images("fake", fake, min_count=2)
    backend = get_backend(backend, weights=weights, device=device)
    options = dict(batch_size=batch_size, progress=progress)
    if isinstance(reference, str):
        if size is None and fake.shape[-1] != fake.shape[-2]:
            raise ValueError(f"fake images are not square ({fake.shape[-2]}x{fake.shape[-1]}): "
                             "pass size= for the reference images")
        size = int(fake.shape[-1]) if size is None else size
        ref, real_features = reference_features(reference, split, size, backend, coverage,
                                                cache=cache, cache_dir=cache_dir, **options)
    else:
        parts = [] if coverage else None
        ref, _ = extract(reference, backend, name="real", logits=False, features_out=parts,
                         **options)
        real_features = torch.cat(parts) if coverage else None
    fake_features: list | None = [] if coverage else None
    stats, logits = extract(fake, backend, name="fake", features_out=fake_features, **options)
    is_mean, is_std = inception_score_from_logits(logits, splits=splits, seed=seed)
    result = {"fid": stats_distance(ref, stats), "is_mean": is_mean, "is_std": is_std,
              **backend.labels, "n_fake": stats.n, "n_real": ref.n, "reference": ref.source,
              "image_size": f"{fake.shape[-2]}x{fake.shape[-1]}", "is_splits": splits}
    if coverage:
        result |= coverage_scores(real_features, torch.cat(fake_features), backend, k=k,
                                  seed=seed, kid_subsets=kid_subsets,
                                  kid_subset_size=kid_subset_size)
    return result


def describe(result: dict) -> str:
    """Labelled lines for an evaluate() result (FID, IS, and precision/recall and KID when
    present), e.g. for logs and the command line."""
    std = "" if result["is_std"] != result["is_std"] else f" ± {result['is_std']:.3f}"
    text = (f"{result['fid_name']} = {result['fid']:.4f}  ({result['n_fake']} fake "
            f"{result['image_size']} vs {result['reference']}, {result['n_real']} real; "
            f"backend {result['backend_tag']})\n"
            f"{result['is_name']} = {result['is_mean']:.4f}{std}  ({result['n_fake']} fake, "
            f"{result['is_splits']} splits)")
    if "precision" in result:
        text += (f"\n{result['pr_name']} = {result['precision']:.4f} / {result['recall']:.4f}"
                 f"\n{result['kid_name']} = {result['kid_mean']:.5f} ± {result['kid_std']:.5f}  "
                 f"(subsets of {result['kid_subset_size']})")
    return text
