"""Precision/recall (k-NN manifolds) and KID: a case by hand, a brute-force reference, the
unbiased MMD formula, and their place in evaluate(). float64; tolerances per check."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pomlab.metrics as metrics


def test_precision_recall_by_hand_in_one_dimension():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = torch.tensor([[0.5], [5.0], [20.0], [16.9]])
    # k = 1 radii: real 1, 1, 1, 1, 7; fake 4.5, 4.5, 3.1, 3.1
    # fake inside: 0.5 (near 0), 5 (10's ball of 7), 16.9 (6.9 <= 7); 20 is out -> 3/4
    # real inside: 0, 1, 2, 3 (0.5's ball of 4.5); 10 is 5 from 5 and 6.9 from 16.9 -> 4/5
    assert metrics.precision_recall(real, fake, k=1) == (0.75, 0.8)


def brute_force(real, fake, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]
    def inside(p, c, r):
        return (np.linalg.norm(p[:, None] - c[None], axis=-1) <= r[None]).any(1).mean()
    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(5, 60), m=st.integers(5, 60),
       shift=st.floats(0, 3), k=st.integers(1, 4))
def test_precision_recall_equal_a_brute_force_count(seed, n, m, shift, k):
    g = np.random.default_rng(seed)
    real, fake = g.normal(size=(n, 4)), g.normal(size=(m, 4)) + shift
    got = metrics.precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k, chunk=7)
    assert got == pytest.approx(brute_force(real, fake, k), abs=1e-12)


def test_identical_sets_have_full_precision_and_recall_and_bad_input_fails():
    x = torch.randn(50, 6)
    assert metrics.precision_recall(x, x.clone()) == (1.0, 1.0)
    with pytest.raises(ValueError, match="k must be in"):
        metrics.precision_recall(x[:3], x, k=3)
    with pytest.raises(ValueError, match="dimension"):
        metrics.precision_recall(x, x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        metrics.precision_recall(x, x.clone().fill_(float("nan")))


def test_kid_is_the_unbiased_polynomial_mmd():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randn(40, 5, dtype=torch.float64) + 0.5
    d = x.shape[1]

    def k(a, b):
        return (a @ b.T / d + 1) ** 3
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd = ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
           + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    mean, _ = metrics.kernel_inception_distance(x, y, subsets=3, subset_size=40)
    assert mean == pytest.approx(float(mmd), rel=1e-9)   # every subset is the whole set


def test_evaluate_reports_labelled_precision_recall_and_kid(tmp_path):
    fake = metrics.reference_images("digits", "heldout", 16)
    result = metrics.evaluate(fake, backend="digits", cache_dir=tmp_path, kid_subsets=10,
                              kid_subset_size=200)
    assert result["pr_name"] == "digits-precision/recall (k=3)" and result["kid_name"] == "digits-KID"
    assert 0.5 < result["precision"] <= 1 and 0.3 < result["recall"] <= 1   # held-out real digits
    assert result["kid_subset_size"] == 200
    assert "digits-KID" in metrics.describe(result)
    torch.manual_seed(0)
    noise = metrics.evaluate(torch.rand(360, 1, 16, 16), backend="digits", cache_dir=tmp_path,
                             kid_subsets=10, kid_subset_size=200)
    # measured: held-out digits P/R 0.87/0.92, KID 100; uniform noise P/R 0.32/0.005, KID 10570
    assert noise["recall"] < 0.05 and noise["kid_mean"] > 10 * abs(result["kid_mean"])
    plain = metrics.evaluate(fake, backend="digits", cache_dir=tmp_path, coverage=False)
    assert "precision" not in plain and plain["fid"] == pytest.approx(result["fid"], rel=1e-9)
