"""Precision / recall (Kynkäänniemi et al. 2019, k-NN manifolds) and the Kernel Inception
Distance (Bińkowski et al. 2018) on features of any backend; definitions in docs/metrics.md."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..checks import check_int, check_positive_int

DEFAULT_K = 3
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000


def _feature_pair(real, fake) -> tuple[Tensor, Tensor]:
    """Both as float64 CPU tensors, checked: float (N >= 2, dim), finite, of one dimension."""
    real, fake = torch.as_tensor(real), torch.as_tensor(fake)
    for name, x in (("real", real), ("fake", fake)):
        if (not x.dtype.is_floating_point or x.dim() != 2 or x.shape[0] < 2
                or not bool(torch.isfinite(x).all())):
            raise ValueError(f"{name} must be float features (N >= 2, dim) without NaN or "
                             f"infinite values, got {x.dtype} {tuple(x.shape)}")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs "
                         f"{fake.shape[1]}")
    return real.detach().to("cpu", torch.float64), fake.detach().to("cpu", torch.float64)


def _by_chunks(points: Tensor, centres: Tensor, reduce, chunk: int) -> Tensor:
    """reduce(distances of a chunk of points to every centre) over chunks of points."""
    return torch.cat([reduce(torch.cdist(points[start:start + chunk], centres))
                      for start in range(0, points.shape[0], chunk)])


def knn_radii(features: Tensor, k: int = DEFAULT_K, chunk: int = 1024) -> Tensor:
    """Distance of each row to its k-th nearest other row (N,), float64 (itself is the 0th)."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} features, got {k}")
    return _by_chunks(features, features, lambda d: d.kthvalue(k + 1, dim=1).values, chunk)


def precision_recall(real, fake, k: int = DEFAULT_K, chunk: int = 1024) -> tuple[float, float]:
    """(precision, recall) of fake features against real ones (each (N, dim); float64)."""
    check_int("k", k, minimum=None)                           # its range is knn_radii's
    real, fake = _feature_pair(real, fake)

    def inside(points: Tensor, centres: Tensor) -> float:
        radii = knn_radii(centres, k, chunk)
        return float(_by_chunks(points, centres, lambda d: (d <= radii[None]).any(dim=1),
                                chunk).double().mean())
    return inside(fake, real), inside(real, fake)


def kernel_inception_distance(real, fake, *, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of KID over `subsets` random subsets of min(subset_size, N_real, N_fake)
    samples each (torchmetrics; subsets drawn in a forked RNG seeded with `seed`)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _feature_pair(real, fake)
    check_positive_int("subsets", subsets)
    size = min(subset_size, real.shape[0], fake.shape[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=nn.Identity(), subsets=subsets, subset_size=size,
                                         sync_on_compute=False)      # given features, local
        metric.update(real, real=True)
        metric.update(fake, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = metric.compute()
    return float(mean), float(std)


def coverage_scores(real, fake, backend, *, k: int = DEFAULT_K, seed: int = 0,
                    kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE) -> dict:
    """Precision/recall and KID of fake against real features, labelled like the backend's FID."""
    precision, recall = precision_recall(real, fake, k=k)
    kid_mean, kid_std = kernel_inception_distance(real, fake, subsets=kid_subsets,
                                                  subset_size=kid_subset_size, seed=seed)
    prefix = backend.fid_name[:-len("FID")]                   # "digits-" / "Inception-"
    return {"precision": precision, "recall": recall, "pr_name": f"{prefix}precision/recall (k={k})",
            "kid_mean": kid_mean, "kid_std": kid_std, "kid_name": f"{prefix}KID",
            "kid_subset_size": min(kid_subset_size, len(fake), len(real))}
