"""The Fréchet distance between Gaussians (float64) and the Inception Score from logits."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_positive_int

IS_SPLITS = 10          # the usual 10 splits of the Inception Score


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of one image set's features, with what produced them."""
    mu: np.ndarray          # (d,) float64
    sigma: np.ndarray       # (d, d) float64, unbiased (n - 1) covariance
    n: int
    backend: str = ""       # the backend's cache tag (name, preprocessing version, weights hash)
    source: str = ""        # what the images were, e.g. "digits:train@16" or "fake"

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def _as_float64(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value,
                           dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a real array or tensor, got {type(value).__name__}") from error
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _sqrt_psd(name: str, matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; tiny negative eigenvalues are round-off."""
    values, vectors = np.linalg.eigh(matrix)
    scale = max(float(np.abs(values).max(initial=0.0)), 1e-300)
    if values.min(initial=0.0) < -1e-6 * scale:
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {values.min():.3g}, "
                         f"largest {scale:.3g}): not a covariance matrix")
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)) in float64, the
    last trace taken as tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the root of a symmetric PSD matrix stays
    stable for the rank-deficient covariances of small sets (scipy's sqrtm of S1 S2 does not)."""
    mu1, mu2 = _as_float64("mu1", mu1), _as_float64("mu2", mu2)
    sigma1, sigma2 = _as_float64("sigma1", sigma1), _as_float64("sigma2", sigma2)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of one length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {sigma.shape}")
        if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * max(1.0, np.abs(sigma).max())):
            raise ValueError(f"{name} is not symmetric: not a covariance matrix")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    root1 = _sqrt_psd("sigma1", sigma1)
    _sqrt_psd("sigma2", sigma2)                                   # validates sigma2 is PSD
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    distance = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(distance, 0.0)       # the true value is >= 0; a negative one is round-off


def pool_statistics(parts, source: str = "") -> FeatureStats:
    """The statistics of the union of disjoint image sets from each set's FeatureStats (exact up
    to round-off), e.g. of chunks of a large sample set extracted on several ranks."""
    parts = list(parts)
    if not parts or not all(isinstance(p, FeatureStats) for p in parts):
        raise TypeError("parts must be a non-empty sequence of FeatureStats")
    if len({p.backend for p in parts}) != 1 or len({p.dim for p in parts}) != 1:
        raise ValueError("pooled statistics must come from one backend and feature dimension, got "
                         f"{sorted({(p.backend, p.dim) for p in parts})}")
    if any(p.n < 2 for p in parts):
        raise ValueError(f"every part needs at least 2 samples, got {[p.n for p in parts]}")
    n = sum(p.n for p in parts)
    mu = sum(p.n * p.mu for p in parts) / n
    scatter = sum((p.n - 1) * p.sigma + p.n * np.outer(p.mu - mu, p.mu - mu) for p in parts)
    return FeatureStats(mu=mu, sigma=scatter / (n - 1), n=n, backend=parts[0].backend,
                        source=source or parts[0].source)


def stats_distance(a: FeatureStats, b: FeatureStats) -> float:
    """frechet_distance of two FeatureStats, refusing stats from different backends."""
    if a.backend and b.backend and a.backend != b.backend:
        raise ValueError(f"feature statistics come from different backends ({a.backend!r} vs "
                         f"{b.backend!r}); FID compares only features of one extractor")
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def warn_if_rank_deficient(name: str, n: int, dim: int) -> None:
    if n <= dim:
        warnings.warn(f"{name}: {n} samples for {dim}-dimensional features give a rank-deficient "
                      "covariance; FID is then biased upward: compare only numbers computed from "
                      "equal sample counts", UserWarning, stacklevel=4)


def inception_score_from_logits(logits, splits: int = IS_SPLITS, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over `splits` random splits of exp(E_x KL(p(y|x) || p(y))), through torchmetrics'
    InceptionScore; the splits are drawn in a forked RNG seeded with `seed`. One split: std NaN."""
    from torchmetrics.image.inception import InceptionScore

    logits = torch.as_tensor(logits)
    if not logits.dtype.is_floating_point or logits.dim() != 2:
        raise ValueError(f"logits must be a float (N, classes) array, got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    check_positive_int("splits", splits)
    if logits.shape[0] < splits:
        raise ValueError(f"the Inception Score needs at least splits={splits} samples, "
                         f"got {logits.shape[0]}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contain NaN or infinite values")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")     # std of 1 split
        # local, even inside a DDP process group (else it waits for the other ranks to compute)
        metric = InceptionScore(feature=nn.Identity(), splits=splits, sync_on_compute=False)
        metric.update(logits.detach().to(device="cpu", dtype=torch.float64))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = metric.compute()
    if not bool(torch.isfinite(mean)):     # 0 log 0 in the KL: logit gaps beyond ~745 (float64)
        raise ValueError("the Inception Score is not finite: the logits are too extreme "
                         f"(largest gap {float(logits.max() - logits.min()):.3g})")
    return float(mean), (float(std) if splits > 1 else float("nan"))
