"""The digits backend: committed classifier, FID/IS on real data, input checks, cache, CLI."""
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pomlab.metrics as metrics
from pomlab.data import load_digits
from pomlab.metrics import digits_classifier as dc
from pomlab.io import file_sha256


@pytest.fixture(scope="module")
def backend():
    return metrics.get_backend("digits", device="cpu")


@pytest.fixture(scope="module")
def digits():
    return {split: load_digits(split, size=16)[0] for split in ("train", "heldout")}


@pytest.fixture(scope="module")
def train_stats(backend, digits):
    """Training-split statistics, computed once for the module (the slowest pass here)."""
    return metrics.feature_statistics(digits["train"], backend)


def fid_to_train(train_stats, images, backend):
    return metrics.stats_distance(train_stats, metrics.feature_statistics(images, backend))


def blur(images, sigma=1.0):
    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2).view(1, 1, 2 * radius + 1, -1)
    return F.conv2d(F.pad(images, (radius,) * 4, mode="replicate"), kernel).clamp(0, 1)


def test_committed_classifier_accuracy_and_record():
    info = json.loads(dc.DEFAULT_INFO.read_text())
    assert info["weights_sha256"] == file_sha256(dc.DEFAULT_WEIGHTS)      # record matches the file
    assert dc.DEFAULT_WEIGHTS.stat().st_size < 400_000
    model = dc.load_classifier()
    x, y = load_digits("heldout", size=dc.INPUT_SIZE)
    accuracy = dc.accuracy(model, x, y)
    assert accuracy >= 0.97
    assert accuracy == pytest.approx(info["heldout_accuracy"], abs=1e-6)
    assert info["settings"]["seed"] == 0 and info["train_split_images"] == 1437


def test_backend_accepts_any_size_and_rgb(backend, digits):
    x8 = load_digits("heldout")[0]
    f8, f16 = backend(x8), backend(digits["heldout"])
    # 8x8 input is upsampled by the same bilinear map load_digits uses: identical features
    torch.testing.assert_close(f8, f16, rtol=1e-5, atol=1e-5)
    rgb = digits["heldout"].repeat(1, 3, 1, 1)
    torch.testing.assert_close(backend(rgb), f16, rtol=1e-5, atol=1e-5)   # luma weights sum to 1
    big = F.interpolate(digits["heldout"][:8], size=64, mode="bilinear", align_corners=False)
    assert backend(big).shape == (8, backend.num_features)
    logits = backend.classifier()(digits["heldout"])
    assert logits.shape == (360, 10)
    assert (logits.argmax(1) == load_digits("heldout")[1]).float().mean() >= 0.97


def test_fid_orders_real_blurred_and_noise(backend, digits, train_stats):
    held = digits["heldout"]
    noise = torch.rand(360, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    fid_held = metrics.fid(digits["train"], held, backend)
    assert fid_held == pytest.approx(fid_to_train(train_stats, held, backend), rel=1e-9)
    fid_blur = fid_to_train(train_stats, blur(held), backend)
    fid_noise = fid_to_train(train_stats, noise, backend)
    # measured with the committed weights: about 15, 138 and 1580
    assert 0 < fid_held < fid_blur < fid_noise
    assert fid_noise > 20 * fid_held
    assert metrics.fid(held, held, backend) < 1e-6 * fid_held             # identical sets


def test_inception_score_of_digits_and_noise(backend, digits):
    is_mean, is_std = metrics.inception_score_with_std(digits["heldout"], backend)
    assert 8.0 < is_mean <= 10.0 and is_std > 0                       # confident and balanced
    assert metrics.inception_score(torch.zeros(50, 1, 16, 16), backend) < 1.0 + 1e-6   # one class


def test_statistics_match_numpy(backend, digits):
    with torch.no_grad():
        features = backend(digits["heldout"]).double().numpy()
    stats = metrics.feature_statistics(digits["heldout"], backend)
    assert stats.n == 360 and stats.backend == backend.cache_tag
    np.testing.assert_allclose(stats.mu, features.mean(0), rtol=1e-10, atol=1e-12)
    # one-pass float64 covariance (torchmetrics' sums) vs numpy's two-pass: 1e-8 relative
    np.testing.assert_allclose(stats.sigma, np.cov(features, rowvar=False), rtol=1e-8, atol=1e-10)


def test_agrees_with_plain_torchmetrics(backend, digits):
    """The backend used directly as torchmetrics' custom feature module gives the same numbers."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    train, held = digits["train"], blur(digits["heldout"], 0.7)
    reference = FrechetInceptionDistance(feature=backend)
    reference.update(train, real=True)
    reference.update(held, real=False)
    # torchmetrics returns float32 and uses eigvals of the non-symmetric product: 1e-4 relative
    assert metrics.fid(train, held, backend) == pytest.approx(float(reference.compute()), rel=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = InceptionScore(feature=backend.classifier(), splits=10)
    score.update(held)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        expected = score.compute()
    ours = metrics.inception_score_with_std(held, backend, seed=5)
    np.testing.assert_allclose(ours, [float(v) for v in expected], rtol=1e-4)  # float32 vs float64


@pytest.mark.parametrize("make, error, words", [
    (lambda x: x * 2 - 1, ValueError, r"fake must have values in \[0, 1\].*\(x \+ 1\) / 2"),
    (lambda x: x * 255, ValueError, r"divided by 255"),
    (lambda x: (x * 255).to(torch.uint8), TypeError, r"fake must be a floating-point.*divide by 255"),
    (lambda x: x.repeat(1, 2, 1, 1), ValueError, r"fake must have 1 \(grey\) or 3 \(RGB\) channels"),
    (lambda x: x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1), ValueError, "channels-last"),
    (lambda x: x[:, 0], ValueError, r"fake must have shape \(N, C, H, W\)"),
    (lambda x: x[:1], ValueError, "fake must hold at least 2 images"),
    (lambda x: torch.where(torch.rand_like(x) < 0.01, torch.nan, x), ValueError, "fake contains .* NaN"),
    (lambda x: x.numpy().tolist(), TypeError, "fake must be a torch.Tensor"),
])
def test_bad_fake_images_raise(backend, digits, make, error, words):
    bad = make(digits["heldout"][:20])
    with pytest.raises(error, match=words):
        metrics.fid(digits["heldout"], bad, backend)
    with pytest.raises(error, match=words):
        metrics.evaluate(bad, backend=backend, cache=False)


def test_bad_real_images_and_arguments(backend, digits):
    with pytest.raises(ValueError, match="real contains"):
        metrics.fid(digits["heldout"] * torch.nan, digits["heldout"], backend)
    with pytest.raises(ValueError, match="images must hold at least 2"):
        metrics.inception_score(digits["heldout"][:1], backend)
    with pytest.raises(ValueError, match="at least splits=10"):
        metrics.inception_score(digits["heldout"][:5], backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        metrics.fid(digits["heldout"], digits["heldout"], backend="vgg")
    with pytest.raises(ValueError, match="reference must be one of"):
        metrics.evaluate(digits["heldout"], reference="imagenet", backend=backend)
    with pytest.raises(ValueError, match="split must be one of"):
        metrics.evaluate(digits["heldout"], split="test", backend=backend)


def test_rank_deficient_sample_count_warns(backend, digits):
    with pytest.warns(UserWarning, match="rank-deficient"):
        metrics.fid(digits["train"], digits["heldout"][:40], backend)


def test_evaluate_uses_and_keys_the_cache(backend, digits, train_stats, tmp_path, monkeypatch):
    fake = blur(digits["heldout"], 0.7)
    result = metrics.evaluate(fake, "digits", "train", backend, cache_dir=tmp_path)
    assert result["reference"] == "digits:train@16" and result["n_real"] == 1437
    assert result["n_fake"] == 360 and result["backend"] == "digits"
    assert result["fid_name"] == "digits-FID" and result["backend_tag"] == backend.cache_tag
    assert result["fid"] == pytest.approx(fid_to_train(train_stats, fake, backend), rel=1e-9)
    assert result["is_mean"] == pytest.approx(metrics.inception_score(fake, backend), rel=1e-9)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("digits-train-16px-digits-")

    # a second call reads the cache: feature extraction of the reference must not run again
    import pomlab.metrics.api as api_module

    real_extract = api_module.extract

    def extract_fake_only(images, backend, *, name, **kwargs):
        assert name == "fake", f"the {name} features were recomputed"
        return real_extract(images, backend, name=name, **kwargs)
    monkeypatch.setattr(api_module, "extract", extract_fake_only)
    assert metrics.evaluate(fake, backend=backend, cache_dir=tmp_path) == result
    monkeypatch.setattr(api_module, "extract", real_extract)

    # another split, size or classifier gets its own file
    metrics.reference_statistics("digits", "heldout", 16, backend, cache_dir=tmp_path)
    metrics.reference_statistics("digits", "heldout", 8, backend, cache_dir=tmp_path)
    model = dc.load_classifier()
    with torch.no_grad():
        model.head.bias.add_(0.1)
        model.body[-2].weight.mul_(1.01)
    dc.save_classifier(model, {}, tmp_path / "w" / "c.pt", tmp_path / "w" / "c.json")
    other = metrics.get_backend("digits", weights=tmp_path / "w" / "c.pt", device="cpu")
    assert other.cache_tag != backend.cache_tag
    stats = metrics.reference_statistics(split="heldout", backend=other, cache_dir=tmp_path)
    assert stats.backend == other.cache_tag
    assert len(list(tmp_path.glob("*.npz"))) == 4
    assert not list(tmp_path.glob(".*tmp"))                               # atomic writes, no debris
    with pytest.raises(ValueError, match="different backends"):
        metrics.stats_distance(stats, train_stats)


def test_corrupt_cache_file_is_recomputed(backend, tmp_path):
    first = metrics.reference_statistics("digits", "heldout", backend=backend, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable cached statistics"):
        again = metrics.reference_statistics("digits", "heldout", backend=backend, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    assert metrics.reference_statistics("digits", "heldout", backend=backend, cache_dir=tmp_path).n == 360


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("POMLAB_CACHE", str(tmp_path))
    assert metrics.default_cache_dir() == tmp_path / "metrics"


@pytest.mark.filterwarnings("ignore:fake. 40 samples:UserWarning")       # 40 PNGs < 64 features
def test_command_line_on_npz_and_png_folder(backend, digits, train_stats, tmp_path, monkeypatch,
                                            capsys):
    from PIL import Image

    from pomlab.metrics.__main__ import main

    monkeypatch.setenv("POMLAB_CACHE", str(tmp_path / "cache"))
    pixels = (digits["heldout"][:, 0].numpy() * 255).round().astype(np.uint8)    # (N, H, W)
    np.savez(tmp_path / "fake.npz", images=pixels[..., None])                  # channels-last
    result = main(["--fake", str(tmp_path / "fake.npz"), "--json", "--out", str(tmp_path / "r.json"),
                   "--device", "cpu"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "r.json").read_text()) == result
    assert result["reference"] == "digits:train@16" and result["n_fake"] == 360
    assert result["fid_name"] == "digits-FID"
    expected = fid_to_train(train_stats, torch.from_numpy(pixels[:, None]) / 255, backend)
    # the same computation; float32 convolutions on differently laid out batches: 1e-6 relative
    assert result["fid"] == pytest.approx(expected, rel=1e-6)

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(pixels[:40]):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    main(["--fake", str(folder), "--real", "digits:heldout", "--splits", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "digits-FID = " in out and "digits:heldout@16" in out and "digits-IS = " in out
    main(["--fake", str(folder), "--real", str(tmp_path / "fake.npz"), "--splits", "4",
          "--device", "cpu", "--json"])
    assert json.loads(capsys.readouterr().out)["n_real"] == 360


def test_sample_files_reject_bad_content(tmp_path):
    np.savez(tmp_path / "nan.npz", images=np.full((4, 1, 8, 8), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate(metrics.load_samples(tmp_path / "nan.npz"), backend="digits", device="cpu")
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 8, 8)), b=np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="several arrays"):
        metrics.load_samples(tmp_path / "two.npz")
    with pytest.raises(ValueError, match="does not exist"):
        metrics.load_samples(tmp_path / "missing")


def test_training_script_runs(tmp_path):
    from pomlab.metrics.train_digits_classifier import main

    record = main(["--steps", "3", "--batch-size", "16", "--out", str(tmp_path), "--no-progress"])
    assert (tmp_path / "digits_classifier.pt").is_file()
    info = json.loads((tmp_path / "digits_classifier.json").read_text())
    assert info["settings"]["steps"] == 3 and 0 <= info["heldout_accuracy"] <= 1
    assert info["weights_sha256"] == file_sha256(tmp_path / "digits_classifier.pt")
    assert record["train_split_images"] == 1437
    trained = metrics.get_backend("digits", weights=tmp_path / "digits_classifier.pt", device="cpu")
    assert trained(torch.rand(4, 1, 16, 16)).shape == (4, 64)
