"""Fréchet distance and Inception Score arithmetic, independent of any network."""
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, strategies as st

from pomlab.metrics import frechet_distance, inception_score_from_logits


def random_covariance(rng, d, n=None):
    """An empirical covariance of n > d Gaussian-ish samples (full rank, realistic conditioning)."""
    features = rng.standard_normal((n or 4 * d, d)) @ rng.standard_normal((d, d))
    return np.atleast_2d(np.cov(features, rowvar=False))


def scipy_frechet(mu1, s1, mu2, s2):
    """The textbook computation (pytorch-fid style), all float64."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("d", [2, 16, 64])
def test_agrees_with_scipy_sqrtm(d):
    rng = np.random.default_rng(100 + d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    expected = scipy_frechet(mu1, s1, mu2, s2)
    # 1e-6 relative: both are float64; they differ only by the matrix square-root algorithm.
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_accepts_tensors_and_returns_float():
    import torch

    rng = np.random.default_rng(1)
    mu, s = rng.standard_normal(5), random_covariance(rng, 5)
    value = frechet_distance(torch.tensor(mu, dtype=torch.float32), torch.tensor(s), mu * 0, s)
    assert isinstance(value, float)
    assert value == pytest.approx(float(np.sum(mu ** 2)), rel=1e-5)   # float32 mean -> 1e-5


def test_identical_sets_give_zero():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((500, 32)) * rng.uniform(0.1, 10, 32)
    mu, s = features.mean(0), np.cov(features, rowvar=False)
    # tr(S) is ~O(1000): the remainder is round-off of sqrt(S S) vs S.
    assert frechet_distance(mu, s, mu, s) < 1e-8 * np.trace(s)


def test_two_gaussians_analytic_value():
    """Covariances sharing eigenvectors: d^2 = |mu1 - mu2|^2 + sum (sqrt a_i - sqrt b_i)^2."""
    rng = np.random.default_rng(3)
    d = 12
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert value == pytest.approx(expected, rel=1e-9)                # exact up to float64 round-off


def test_two_gaussians_from_samples_approach_analytic_value():
    """Statistics estimated from samples of N(0, I) and N(m, 4I) in d=3: FID -> |m|^2 + 3."""
    rng = np.random.default_rng(4)
    d, n = 3, 200_000
    m = np.array([1.0, -2.0, 0.5])
    x, y = rng.standard_normal((n, d)), m + 2 * rng.standard_normal((n, d))
    value = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    # estimation error of means/covariances at n=2e5 is ~1e-2 in absolute terms
    assert value == pytest.approx(np.sum(m ** 2) + d, abs=0.05)


def test_rank_deficient_covariances_stay_finite():
    rng = np.random.default_rng(5)
    f1, f2 = rng.standard_normal((10, 40)), rng.standard_normal((10, 40))   # n < d: rank 9
    value = frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert np.isfinite(value) and value > 0


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 8))
def test_symmetric_and_rotation_invariant(seed, d):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    value = frechet_distance(mu1, s1, mu2, s2)
    # float64 with eigen-decompositions of well-conditioned d <= 8 matrices: 1e-7 relative
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(value, rel=1e-7, abs=1e-9)
    rotated = frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T)
    assert rotated == pytest.approx(value, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("change, words", [
    (lambda a: {**a, "mu2": a["mu2"][:-1]}, "mu1 and mu2"),
    (lambda a: {**a, "sigma1": a["sigma1"][:-1]}, "sigma1 must have shape"),
    (lambda a: {**a, "sigma2": a["sigma2"] + np.triu(np.ones_like(a["sigma2"]), 1)}, "sigma2 is not symmetric"),
    (lambda a: {**a, "sigma1": -a["sigma1"]}, "sigma1 is not positive semi-definite"),
    (lambda a: {**a, "mu1": a["mu1"] * np.nan}, "mu1 contains NaN"),
    (lambda a: {**a, "sigma2": a["sigma2"] * np.inf}, "sigma2 contains NaN"),
])
def test_bad_statistics_raise(change, words):
    rng = np.random.default_rng(6)
    args = {"mu1": rng.standard_normal(4), "sigma1": random_covariance(rng, 4),
            "mu2": rng.standard_normal(4), "sigma2": random_covariance(rng, 4)}
    with pytest.raises(ValueError, match=words):
        frechet_distance(**change(args))


def test_inception_score_uniform_predictions_is_one():
    logits = np.zeros((200, 10))
    mean, std = inception_score_from_logits(logits, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 10, 1008])
def test_inception_score_balanced_confident_predictions_is_class_count(classes):
    labels = np.arange(classes * 3) % classes
    logits = np.full((len(labels), classes), -50.0)
    logits[np.arange(len(labels)), labels] = 50.0       # softmax ~ one-hot to exp(-100)
    mean, std = inception_score_from_logits(logits, splits=1)
    assert mean == pytest.approx(classes, rel=1e-9)
    assert np.isnan(std)                                 # one split: the std is undefined


def test_inception_score_is_seeded_and_leaves_global_rng_alone():
    import torch

    logits = np.random.default_rng(7).standard_normal((300, 10)) * 3
    state = torch.random.get_rng_state()
    first = inception_score_from_logits(logits, splits=10, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert inception_score_from_logits(logits, splits=10, seed=3) == first
    assert inception_score_from_logits(logits, splits=10, seed=4)[0] != first[0]   # other splits


@pytest.mark.parametrize("logits, splits, error, words", [
    (np.zeros((5, 10)), 10, ValueError, "at least splits=10"),
    (np.zeros((20, 10)), 0, ValueError, "splits"),
    (np.zeros(20), 1, ValueError, "logits"),
    (np.full((20, 10), np.nan), 2, ValueError, "NaN"),
    (np.eye(10)[np.arange(20) % 2] * 2000, 2, ValueError, "not finite"),   # classes 2..9 never win
])
def test_inception_score_bad_input(logits, splits, error, words):
    with pytest.raises(error, match=words):
        inception_score_from_logits(logits, splits=splits)
