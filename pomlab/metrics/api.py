"""FID, IS and the one-call evaluation (training runs, sweeps, the command line), and the reference
sets they compare against, whose features and statistics are cached on disk (docs/metrics.md)."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice, check_positive_int
from ..data.digits import NATIVE_SIZE as DIGITS_NATIVE_SIZE, SPLITS as DIGITS_SPLITS, load_digits
from ..io import atomic_write
from .backends import FeatureBackend, get_backend
from .coverage import DEFAULT_K, KID_SUBSET_SIZE, KID_SUBSETS, coverage_scores
from .extract import extract
from .images import check_images
from .scores import IS_SPLITS, FeatureStats, inception_score_from_logits, stats_distance

CACHE_FORMAT = 1


# name -> (loader(split, size) -> float images (N, C, size, size) in [0, 1], native size, splits)
_DATASETS = {"digits": (lambda split, size: load_digits(split, size=size)[0], DIGITS_NATIVE_SIZE,
                        DIGITS_SPLITS)}


def register_reference_dataset(name: str, loader: Callable[[str, int], Tensor], *,
                               native_size: int, splits: tuple[str, ...]) -> None:
    """Make a dataset usable as `reference=name`: loader(split, size) returns its real images."""
    if not isinstance(name, str) or not name or any(c in name for c in ":@/\\"):
        raise ValueError(f"name must be a non-empty string without ':@/\\', got {name!r}")
    _DATASETS[name] = (loader, int(native_size), tuple(splits))


def reference_datasets() -> tuple[str, ...]:
    return tuple(_DATASETS)


def reference_label(reference: str, split: str, size: int) -> str:
    """How results name their reference set: dataset:split@size, e.g. digits:train@16."""
    return f"{reference}:{split}@{size}"


def reference_images(reference: str = "digits", split: str = "train", size: int | None = None
                     ) -> Tensor:
    """The real images of a registered dataset at `size` pixels (None: its native size)."""
    if reference not in _DATASETS:
        raise ValueError(f"reference must be one of {reference_datasets()}, got {reference!r} "
                         "(register others with register_reference_dataset)")
    loader, native_size, splits = _DATASETS[reference]
    check_choice("split", split, splits)
    return loader(split, check_positive_int("size", native_size if size is None else size))


def default_cache_dir() -> Path:
    root = os.environ.get("POMLAB_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "pomlab") / "metrics"


def reference_features(reference: str = "digits", split: str = "train", size: int | None = None,
                       backend: str | FeatureBackend = "digits", with_features: bool = True, *,
                       cache: bool = True, cache_dir: str | os.PathLike | None = None,
                       batch_size: int | None = None, device: str | torch.device | None = None,
                       weights: str | os.PathLike | None = None, progress: bool = False
                       ) -> tuple[FeatureStats, Tensor | None]:
    """(statistics, features (N, dim) float32 or None without with_features) of a reference set
    at `size` pixels (None: native), from the disk cache when a matching file exists, else
    computed and, with cache=True, stored."""
    backend = get_backend(backend, weights=weights, device=device)
    images = reference_images(reference, split, size)
    source = reference_label(reference, split, images.shape[-1])
    fields = {"format": CACHE_FORMAT, "backend": backend.cache_tag, "reference": reference,
              "split": split, "shape": list(images.shape), "dtype": str(images.dtype),
              "images_sha256": hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / (f"{reference}-{split}-{images.shape[-1]}px-{backend.name}-{key}"
                     f"{'-features' if with_features else ''}.npz")
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("key") == key and (not with_features or "features" in data):
                    stats = FeatureStats(mu=data["mu"].astype(np.float64), n=int(data["n"]),
                                         sigma=data["sigma"].astype(np.float64),
                                         backend=meta["backend"], source=meta["source"])
                    return stats, (torch.from_numpy(data["features"]) if with_features else None)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            warnings.warn(f"ignoring unreadable cached statistics {path} ({error}); recomputing",
                          UserWarning, stacklevel=3)
    parts: list[Tensor] | None = [] if with_features else None
    stats, _ = extract(images, backend, name=f"reference {source}", logits=False, source=source,
                       batch_size=batch_size, progress=progress, features_out=parts)
    features = torch.cat(parts) if with_features else None
    if cache:
        meta = json.dumps({"key": key, "backend": stats.backend, "source": source, "n": stats.n,
                           "format": CACHE_FORMAT})
        arrays = dict(mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n), meta=np.array(meta),
                      **({"features": features.numpy()} if with_features else {}))
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return stats, features


def reference_statistics(reference: str = "digits", split: str = "train", size: int | None = None,
                         backend: str | FeatureBackend = "digits", **options) -> FeatureStats:
    """Mean and covariance of `backend` features of a reference set, cached on disk; options as
    reference_features' (cache=True, cache_dir, batch_size, device, weights, progress)."""
    return reference_features(reference, split, size, backend, False, **options)[0]


def fid(real: Tensor, fake: Tensor, backend: str | FeatureBackend = "digits", *,
        batch_size: int | None = None, device: str | torch.device | None = None,
        weights: str | os.PathLike | None = None, progress: bool = False) -> float:
    """FID between two sets of float images (N, C, H, W) in [0, 1], any size, 1 or 3 channels
    (backend="digits": digits-FID, never Inception FID)."""
    backend = get_backend(backend, weights=weights, device=device)
    return stats_distance(*(extract(images, backend, name=name, logits=False,
                                    batch_size=batch_size, progress=progress)[0]
                            for name, images in (("real", real), ("fake", fake))))


def inception_score_with_std(images: Tensor, backend: str | FeatureBackend = "digits", *,
                             splits: int = IS_SPLITS, seed: int = 0, batch_size: int | None = None,
                             device: str | torch.device | None = None,
                             weights: str | os.PathLike | None = None, progress: bool = False
                             ) -> tuple[float, float]:
    """(mean, std) of the Inception Score of the backend's logits over `splits` seeded splits."""
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
    """FID and IS (with coverage also precision/recall and KID) of `fake` in one pass: a labelled
    dict (docs/metrics.md). reference: a registered dataset (cached) at `size` pixels (default:
    the fake images' side), or real images (N, C, H, W) in [0, 1]."""
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
        result |= coverage_scores(real_features, torch.cat(fake_features), backend, k=k, seed=seed,
                                  kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
    return result


def describe(result: dict) -> str:
    """Labelled lines for an evaluate() result (FID, IS, and precision/recall and KID if there)."""
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
