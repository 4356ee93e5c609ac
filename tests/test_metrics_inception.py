"""The Inception backend: weight lookup and missing-extra errors everywhere; the full path (with
randomly initialised weights in a temporary torch hub cache) only where torch-fidelity imports."""
import sys

import numpy as np
import pytest
import torch

import pomlab.metrics as metrics
from pomlab.metrics.backends import require_torch_fidelity


def _torch_fidelity_or_skip():
    try:
        require_torch_fidelity()
    except ImportError as error:        # CI: no torchvision for the CPU torch build
        pytest.skip(f"torch-fidelity not importable: {error}")


def test_missing_weights_error_says_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError) as info:
        metrics.inception_weights_path()
    message = str(info.value)
    assert metrics.INCEPTION_WEIGHTS_FILE in message and str(folder) in message
    assert metrics.INCEPTION_WEIGHTS_URL in message
    assert metrics.INCEPTION_WEIGHTS_FILE == "weights-inception-2015-12-05-6726825d.pth"
    folder.mkdir(parents=True)
    (folder / metrics.INCEPTION_WEIGHTS_FILE).write_bytes(b"x")
    assert metrics.inception_weights_path() == folder / metrics.INCEPTION_WEIGHTS_FILE
    with pytest.raises(FileNotFoundError, match="not found: .*nowhere.pth"):
        metrics.inception_weights_path(tmp_path / "nowhere.pth")


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)        # makes `import` fail
    with pytest.raises(ImportError, match=r"pip install 'pomlab\[inception\]'"):
        metrics.get_backend("inception", device="cpu")
    with pytest.raises(ImportError, match="pomlab.inception"):
        metrics.fid(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8), backend="inception", device="cpu")


@pytest.fixture
def random_inception_cache(tmp_path, monkeypatch):
    """A randomly initialised InceptionV3 state dict saved where torch hub would cache the real one."""
    _torch_fidelity_or_skip()
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    from pomlab.metrics.backends import write_random_inception_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = write_random_inception_weights(tmp_path / "hub" / "checkpoints" /
                                          metrics.INCEPTION_WEIGHTS_FILE)
    assert tf_inception.URL_INCEPTION_V3 == metrics.INCEPTION_WEIGHTS_URL
    return path


@pytest.mark.slow      # InceptionV3 at 299x299 on a CPU: ~20 forward passes
def test_inception_fid_and_is_through_pomlab(random_inception_cache):
    from torchmetrics.image.fid import FrechetInceptionDistance

    backend = metrics.get_backend("inception", device="cpu")
    assert backend.weights_path == random_inception_cache
    assert backend.net.use_antialias is False and backend.fid_name == "Inception-FID"
    g = torch.Generator().manual_seed(0)
    # pixel values (k + 0.25) / 255, so pomlab's rounding and torchmetrics' truncation of x * 255
    # give the same uint8 k; the fake set is darker, grey and of another size
    real = (torch.randint(0, 255, (5, 3, 32, 32), generator=g) + 0.25) / 255
    fake = (torch.randint(0, 128, (5, 1, 20, 20), generator=g) + 0.25) / 255
    with pytest.warns(UserWarning, match="rank-deficient"):                 # 5 << 2048 samples
        value = metrics.fid(real, fake, "inception", device="cpu")
    mean, std = metrics.inception_score_with_std(fake, "inception", splits=2, device="cpu")
    reference = FrechetInceptionDistance(feature=2048, normalize=True, antialias=False,
                                         feature_extractor_weights_path=str(random_inception_cache))
    reference.update(real, real=True)
    reference.update(fake.repeat(1, 3, 1, 1), real=False)
    assert np.isfinite(value) and value > 1e-3
    # torchmetrics computes in float32 from eigvals of a rank-deficient product: 1e-3 relative
    assert value == pytest.approx(float(reference.compute()), rel=1e-3)
    assert 1.0 <= mean <= 1008 and std >= 0
    assert backend.classifier()(fake[:1]).shape == (1, 1008)
