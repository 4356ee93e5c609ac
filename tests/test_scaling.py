"""Scaling sweeps: schedules, compute accounting, log-log fits, pooled statistics, and tiny sweeps
that are resumed after an injected interruption and after a hard kill (same CSV as uninterrupted)."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ddp_eval_worker import latent_config
from hypothesis import given, strategies as st
from scipy import stats

from pomlab.data import from_model_range
from pomlab.metrics import FeatureStats, evaluate, pool_statistics
from pomlab.scaling import (RESULT_COLUMNS, Evaluator, SweepConfig, check_settings, chunk_bounds,
                            fit_table, log_spaced_steps, loglog_fit, merge_results, run_sweep,
                            train_config, training_compute_gflops)
from pomlab.scaling.evaluation import balanced_labels, chunk_seed
from pomlab.scaling.results import write_row
from pomlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "experiments" / "scaling_laws.py"
EVAL_WORKER = ROOT / "tests" / "ddp_eval_worker.py"
# A sweep of one-block micro models on 8x8 digits: milliseconds per step and per evaluation;
# 72 samples (> 64 digits features: full-rank covariances) in 3 chunks.
TINY_ARGS = ["--sizes", "S,B", "--mixers", "pom,mha", "--steps", "12", "--eval-points", "3",
             "--batch-size", "8", "--image-size", "8", "--model-overrides", "depth=1", "--fid-samples",
             "72", "--eval-chunk", "24", "--sample-steps", "2", "--ckpt-every", "5",
             "--device", "cpu", "--no-progress"]


def tiny_config(out, **kw) -> SweepConfig:
    base = dict(sizes="S,B", mixers="pom,mha", steps=12, eval_points=3, batch_size=8,
                image_size=8, model_overrides={"depth": 1}, fid_samples=72, eval_chunk=24,
                sample_steps=2, ckpt_every=5, device="cpu", out=str(out))
    base.update(kw)
    return SweepConfig.for_scale("micro", **base)


@pytest.fixture(scope="module", autouse=True)
def _private_metric_cache(tmp_path_factory):
    """Reference statistics are cached in a temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POMLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def quiet(_):
    pass


def run(cmd, timeout, **kw):
    """subprocess.run that, on a timeout, also ends the grandchildren (torchrun ranks, workers)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# --- configuration ------------------------------------------------------------------------------

def test_schedules_and_defaults():
    assert log_spaced_steps(600, 5) == (38, 75, 150, 300, 600)
    assert log_spaced_steps(4, 5) == (1, 2, 4)                     # duplicates collapse
    micro = SweepConfig.for_scale("micro")
    assert (micro.dataset, micro.backend, micro.sizes, micro.mixers) == \
        ("digits", "digits", ("S", "B", "L", "XL"), ("pom", "mha"))
    assert micro.eval_steps[-1] == micro.steps
    assert SweepConfig.for_scale("micro", steps=100, eval_every=30).eval_steps == (30, 60, 90, 100)
    paper = SweepConfig.for_scale("paper", data_path="somewhere")
    assert (paper.dataset, paper.backend, paper.steps) == ("latents", "inception", 400_000)
    # the PoM paper's Fig. 5 protocol: 10k samples, w = 1 in the authors' convention
    assert (paper.fid_samples, paper.cfg, paper.cfg_guidance) == (10_000, 1.0, "authors")
    assert paper.settings()["cfg_guidance"] == "authors"
    assert micro.cfg_guidance == "standard" and "cfg_guidance" not in micro.settings()
    assert paper.eval_steps[:2] == (50_000, 100_000) and paper.eval_steps[-1] == 400_000
    assert SweepConfig.for_scale("micro", sizes="XL,S").sizes == ("S", "XL")   # canonical order


@pytest.mark.parametrize("change, words", [
    (dict(sizes="S,M"), "sizes"),
    (dict(mixers="pom,pom"), "mixers"),
    (dict(dataset="cifar10", data_path="x"), "backend='inception'"),
    (dict(scale="paper"), "--data-path"),
    (dict(eval_steps=(5, 3, 12)), "eval_steps"),
    (dict(eval_steps=(4, 8)), "ending at steps"),
    (dict(cfg=-1.0), "cfg"),
    (dict(cfg_guidance="dit"), "convention"),
    (dict(fid_samples=1), "at least 2"),
    (dict(patch=3), "patch"),
])
def test_bad_configurations_are_refused(change, words, tmp_path):
    scale = change.pop("scale", "micro")
    base = dict(steps=12, out=str(tmp_path))
    base.update(change)
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("(", r"\(")):
        SweepConfig.for_scale(scale, **base)


def test_other_settings_in_one_out_are_refused_but_other_sizes_are_fine(tmp_path):
    check_settings(tmp_path, tiny_config(tmp_path))
    check_settings(tmp_path, tiny_config(tmp_path, sizes="XL", mixers="pom"))   # compatible
    with pytest.raises(ValueError, match=r"steps: 12 there, 24 now.*another --out"):
        check_settings(tmp_path, tiny_config(tmp_path, steps=24))
    with pytest.raises(ValueError, match="fid_samples"):
        check_settings(tmp_path, tiny_config(tmp_path, fid_samples=48))


# --- compute, fits, statistics ---------------------------------------------------------------

def test_training_compute_is_three_forward_passes_per_image_seen():
    from pomlab.models import create, gflops
    model = create("DiT-S/2", scale="micro")
    g = gflops(model)
    assert training_compute_gflops(g, 64 * 100) == pytest.approx(3 * g * 6400, rel=1e-15)


@given(slope=st.floats(-2, 2), intercept=st.floats(-3, 3), n=st.integers(3, 12))
def test_loglog_fit_recovers_an_exact_power_law(slope, intercept, n):
    x = np.geomspace(1e2, 1e6, n)
    fit = loglog_fit(x, 10 ** intercept * x ** slope)
    # Exact data in float64: only round-off of log10 and of the OLS sums remains.
    assert fit["slope"] == pytest.approx(slope, abs=1e-9)
    assert fit["intercept"] == pytest.approx(intercept, abs=1e-8)
    assert fit["n"] == n
    if abs(slope) > 1e-3:                  # a flat line has no R^2 (0/0)
        assert fit["r2"] == pytest.approx(1.0, abs=1e-9)


def test_loglog_fit_confidence_intervals_match_the_textbook_formula():
    rng = np.random.default_rng(1)
    x = np.geomspace(10, 1e5, 9)
    y = 50 * x ** -0.3 * np.exp(rng.normal(0, 0.1, len(x)))
    fit = loglog_fit(x, y)
    lx, ly = np.log10(x), np.log10(y)
    design = np.stack([np.ones_like(lx), lx], 1)
    coef, residual, *_ = np.linalg.lstsq(design, ly, rcond=None)
    sigma2 = residual[0] / (len(x) - 2)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    t = stats.t.ppf(0.975, len(x) - 2)
    # Two independent float64 computations of the same OLS: agree to round-off.
    assert fit["slope"] == pytest.approx(coef[1], rel=1e-10)
    assert fit["slope_ci95"] == pytest.approx([coef[1] - t * cov[1, 1] ** 0.5,
                                               coef[1] + t * cov[1, 1] ** 0.5], rel=1e-9)
    assert fit["intercept_ci95"] == pytest.approx([coef[0] - t * cov[0, 0] ** 0.5,
                                                   coef[0] + t * cov[0, 0] ** 0.5], rel=1e-9)
    assert fit["slope_ci95"][0] < -0.3 < fit["slope_ci95"][1]


def test_loglog_fit_edge_cases():
    two = loglog_fit([1.0, 10.0], [5.0, 0.5])
    assert two["slope"] == pytest.approx(-1.0) and all(np.isnan(two["slope_ci95"]))
    assert np.isnan(loglog_fit([3.0], [2.0])["slope"])
    assert np.isnan(loglog_fit([3.0, 3.0, 3.0], [1.0, 2.0, 3.0])["slope"])
    with pytest.raises(ValueError, match="positive"):
        loglog_fit([1.0, -1.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one length"):
        loglog_fit([1.0, 2.0], [1.0])


def test_fit_table_has_one_fit_per_model_and_per_mixer():
    rows = []
    for mixer, model in (("pom", "DiPoM-S/2"), ("mha", "DiT-S/2")):
        for size, scale in (("S", 1.0), ("B", 2.0)):
            for c in (1e2, 1e3, 1e4):
                rows.append({"model": model.replace("S", size), "mixer": mixer, "size": size,
                             "patch": 2, "train_compute_gflops": c * scale,
                             "fid": 100 * (c * scale) ** -0.5, "is_mean": (c * scale) ** 0.1})
    fits = fit_table(pd.DataFrame(rows))
    assert len(fits) == 2 * (4 + 2 + 2)                   # models, pooled, frontiers; 2 metrics
    pooled = [f for f in fits if f["group"] == "mixer" and f["metric"] == "fid"]
    assert [f["n"] for f in pooled] == [6, 6]
    assert all(f["slope"] == pytest.approx(-0.5) for f in fits if f["metric"] == "fid")
    assert all(f["slope"] == pytest.approx(0.1) for f in fits if f["metric"] == "is")
    assert all(f["x"] == "compute" and f["n_seeds"] == 1 for f in fits)


@given(cuts=st.lists(st.integers(2, 30), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_pooled_statistics_equal_the_whole_set(cuts, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(sum(cuts), 5)) * rng.uniform(0.1, 3, 5) + rng.normal(size=5)
    parts, start = [], 0
    for n in cuts:
        part = x[start:start + n]
        parts.append(FeatureStats(mu=part.mean(0), sigma=np.cov(part, rowvar=False), n=n))
        start += n
    pooled = pool_statistics(parts)
    # float64 sums of at most ~120 numbers of size ~10: round-off far below 1e-10.
    np.testing.assert_allclose(pooled.mu, x.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pooled.sigma, np.cov(x, rowvar=False), rtol=0, atol=1e-10)
    assert pooled.n == len(x)


def test_pool_statistics_bad_input():
    one = FeatureStats(mu=np.zeros(2), sigma=np.eye(2), n=1)
    with pytest.raises(ValueError, match="at least 2"):
        pool_statistics([one])
    with pytest.raises(TypeError, match="FeatureStats"):
        pool_statistics([])
    with pytest.raises(ValueError, match="one backend"):
        pool_statistics([FeatureStats(np.zeros(2), np.eye(2), 3, backend="a"),
                         FeatureStats(np.zeros(2), np.eye(2), 3, backend="b")])


@given(n=st.integers(2, 2000), chunk=st.integers(2, 600))
def test_chunks_cover_the_samples_once_and_hold_at_least_two(n, chunk):
    bounds = chunk_bounds(n, chunk)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(stop - start >= min(n, chunk) for start, stop in bounds)


def test_chunked_evaluation_equals_one_pass_over_the_same_samples(tmp_path):
    # 80 samples > 64 features: full-rank covariances, so the matrix square root is well
    # conditioned and pooling vs one pass differ by round-off only.
    config = tiny_config(tmp_path, fid_samples=80, eval_chunk=24)
    trainer = Trainer(train_config(config, "pom", "S"), progress=False)
    trainer.run(until=3)
    result = Evaluator(config, trainer)(trainer)
    images = torch.cat([from_model_range(trainer.generate(balanced_labels(a, b, 10), steps=2,
                                                          cfg=1.0, seed=chunk_seed(0, i)))
                        for i, (a, b) in enumerate(chunk_bounds(80, 24))])
    whole = evaluate(images, "digits", size=8)
    # Pooling per-chunk float64 statistics vs one accumulation: round-off only, but FID
    # subtracts traces far larger than itself and square-roots small eigenvalues, which turns
    # ~1e-16 relative differences in the covariances into ~1e-8 in FID.
    assert result["fid"] == pytest.approx(whole["fid"], rel=1e-6)
    assert result["is_mean"] == pytest.approx(whole["is_mean"], rel=1e-12)
    assert (result["n_fake"], result["n_real"], result["reference"]) == (80, 1437, "digits:train@8")
    # precision/recall and KID from the chunks' features equal one pass (same features, seed)
    assert (result["precision"], result["recall"]) == pytest.approx(
        (whole["precision"], whole["recall"]), abs=1e-12)
    assert result["kid_mean"] == pytest.approx(whole["kid_mean"], rel=1e-6)
    assert result["pr_name"] == "digits-precision/recall (k=3)" and result["kid_name"] == "digits-KID"


def test_reference_statistics_from_an_npz_file_give_the_same_fid(tmp_path):
    from pomlab.metrics import reference_statistics
    stats_file = tmp_path / "ref.npz"
    ref = reference_statistics("digits", "train", 8, "digits")
    np.savez(stats_file, mu=ref.mu, sigma=ref.sigma, n=ref.n)
    config = tiny_config(tmp_path, fid_samples=72)
    trainer = Trainer(train_config(config, "mha", "S"), progress=False)
    trainer.run(until=2)
    from_data = Evaluator(config, trainer)(trainer)
    from_file = Evaluator(tiny_config(tmp_path, fid_samples=72, reference=str(stats_file)),
                          trainer)(trainer)
    assert from_file["fid"] == from_data["fid"] and from_file["n_real"] == 1437
    assert from_file["reference"] == "ref.npz"


def test_a_model_trained_by_another_job_is_refused_not_trained_twice(tmp_path):
    """Overlapping --sizes in two jobs sharing one --out: the second finds the run folder locked."""
    from pomlab.scaling.config import run_folder_name
    from pomlab.scaling.results import run_dir, run_lock
    from pomlab.scaling.sweep import run_model
    config = tiny_config(tmp_path, sizes="S", mixers="pom", steps=2, eval_points=1)
    folder = run_dir(config.out, run_folder_name("pom", "S", config.patch))
    with run_lock(folder, "DiPoM-S/2"):                      # held as by another job
        with pytest.raises(RuntimeError, match="DiPoM-S/2 is being trained by another job"):
            run_model(config, "pom", "S")
    assert not (folder / "checkpoints").exists()
    assert run_model(config, "pom", "S") == 1                 # released: it trains and evaluates
    assert run_model(config, "pom", "S") == 0                 # and a rerun finds it done


def test_adm_reference_batch_counts_its_images_from_the_npy_header(tmp_path):
    """ADM's reference batches hold mu, sigma and the images (arr_0) but no n; the count must
    come from arr_0's header (the real file's images are 2 GB), for both npy header versions."""
    from pomlab.scaling.evaluation import _npz_rows
    images = np.zeros((37, 4, 4, 3), np.uint8)
    np.savez(tmp_path / "v1.npz", mu=np.zeros(3), sigma=np.eye(3), arr_0=images)
    assert _npz_rows(tmp_path / "v1.npz", "arr_0") == 37
    with zipfile.ZipFile(tmp_path / "v2.npz", "w") as archive, archive.open("arr_0.npy", "w") as f:
        np.lib.format.write_array(f, images[:5], version=(2, 0))
    assert _npz_rows(tmp_path / "v2.npz", "arr_0") == 5


def _latent_folder(tmp_path, vae) -> str:
    """96 training digits encoded by the tiny VAE (saved in tmp_path/vae) into tmp_path/z."""
    from pomlab.data import LatentShardWriter, encode_images, load_digits
    images, labels = load_digits("train", 16, channels=3)
    writer = LatentShardWriter(tmp_path / "z", num_classes=10, scale_factor=0.18215,
                               vae=str(tmp_path / "vae"), image_size=16)
    writer.add(encode_images(vae, images[:96] * 2 - 1, sample=False), labels[:96])
    writer.close()
    return str(tmp_path / "z")


def test_latent_samples_and_reference_are_decoded_with_the_vae(tmp_path, tiny_vae):
    """The paper-scale path (latents -> VAE -> pixels -> metric) on CPU, with a small random VAE
    and the digits backend (SweepConfig.validate would insist on Inception for latents)."""
    from pomlab.scaling.sweep import preserved_rng
    config = latent_config(_latent_folder(tmp_path, tiny_vae[0]), str(tmp_path / "out"))
    trainer = Trainer(train_config(config, "pom", "S"), progress=False)
    trainer.run(until=2)
    cache = tmp_path / "out" / "reference"
    with preserved_rng(trainer.device):
        evaluator = Evaluator(config, trainer, cache_dir=cache)
    result = evaluator(trainer)
    assert np.isfinite(result["fid"]) and result["n_fake"] == 72
    assert result["n_real"] == 72 and "latents:train[72 random" in result["reference"]
    cached = list(cache.glob("latents-digits-*.npz"))
    assert len(cached) == 1
    again = Evaluator(config, trainer, cache_dir=cache)        # statistics read from the cache
    np.testing.assert_array_equal(again.reference.mu, evaluator.reference.mu)
    pixels = evaluator.decode(torch.zeros(2, 4, 8, 8))
    assert pixels.shape == (2, 3, 16, 16) and 0 <= pixels.min() and pixels.max() <= 1


def test_preflight_loads_the_vae_of_a_latent_set_before_any_training(tmp_path, tiny_vae):
    """With a precomputed --reference the VAE is first needed at the first evaluation: a missing
    one must stop the sweep at the start instead."""
    from pomlab.scaling.sweep import preflight
    config = latent_config(_latent_folder(tmp_path, tiny_vae[0]), str(tmp_path / "out"))
    assert preflight(config) == "digits-FID/digits-IS"
    with pytest.raises(FileNotFoundError, match="could not load a VAE"):
        preflight(dataclasses.replace(config, vae=str(tmp_path / "no-vae")))
    meta = json.loads((Path(config.data_path) / "meta.json").read_text())
    del meta["vae"]
    (Path(config.data_path) / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="needs a VAE"):
        preflight(config)


def test_latent_reference_and_samples_shared_by_two_ranks_match_one_process(tmp_path, tiny_vae):
    """Under torchrun the ranks split the reference extraction (VAE decode + features) as well as
    the samples: rank 0 alone would keep the others waiting in a collective past NCCL's timeout."""
    latents = _latent_folder(tmp_path, tiny_vae[0])
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(EVAL_WORKER), latents, str(out)]
    done = run(cmd, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    shared, other = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (shared["reference_chunks"], other["reference_chunks"]) == (2, 1)   # of 3 chunks
    config = latent_config(latents, str(tmp_path / "one"))
    trainer = Trainer(train_config(config, "pom", "S"), progress=False)
    evaluator = Evaluator(config, trainer, cache_dir=tmp_path / "one" / "reference")
    alone = evaluator(trainer)
    assert (shared["n_real"], shared["n_fake"], shared["reference"]) == \
        (alone["n_real"], alone["n_fake"], alone["reference"]) == (72, 72, alone["reference"])
    # The same chunks pooled in the same order; only the processes' thread counts differ, so
    # float32 feature round-off (~1e-7 relative) is all that may separate them.
    np.testing.assert_allclose(shared["reference_mu"], evaluator.reference.mu, rtol=1e-5, atol=1e-6)
    assert shared["fid"] == pytest.approx(alone["fid"], rel=1e-4)
    assert shared["is_mean"] == pytest.approx(alone["is_mean"], rel=1e-5)
    assert len(list((out / "reference").glob("latents-digits-*.npz"))) == 1   # written once


# --- sweeps ------------------------------------------------------------------------------------

def _csv(out) -> str:
    return (Path(out) / "results.csv").read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny sweep run straight through, in-process."""
    out = tmp_path_factory.mktemp("straight")
    result = run_sweep(tiny_config(out), jobs=1, progress=False, log=quiet)
    return out, result


def test_sweep_writes_labelled_rows_fits_and_figures(uninterrupted):
    out, result = uninterrupted
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns) == RESULT_COLUMNS
    assert len(frame) == 4 * 3 and result.evaluations == 12
    assert list(dict.fromkeys(frame["model"])) == ["DiPoM-S/2", "DiPoM-B/2", "DiT-S/2", "DiT-B/2"]
    assert set(frame["step"]) == {3, 6, 12}
    assert (frame["fid_name"] == "digits-FID").all() and (frame["scale"] == "micro").all()
    assert (frame["n_fake"] == 72).all() and (frame["reference"] == "digits:train@8").all()
    assert np.allclose(frame["train_compute_gflops"],
                       3 * frame["gflops_per_image"] * frame["step"] * 8, rtol=1e-12)
    assert (frame["gflops_per_image"][frame["size"] == "B"].min() >
            frame["gflops_per_image"][frame["size"] == "S"].max())
    fits = json.loads((out / "fits.json").read_text())
    # per metric and x axis (compute, wall-clock): 4 models, 2 pooled, 2 frontiers
    assert len(fits["fits"]) == 2 * 2 * (4 + 2 + 2)
    assert {(f["metric"], f["group"], f["n"]) for f in fits["fits"] if f["group"] != "frontier"} \
        == {("fid", "model", 3), ("fid", "mixer", 6), ("is", "model", 3), ("is", "mixer", 6)}
    assert {f["x"] for f in fits["fits"]} == {"compute", "wall"}
    for ext in ("png", "pdf"):
        assert (out / f"scaling.{ext}").stat().st_size > 1000
        assert (out / f"scaling_wall.{ext}").stat().st_size > 1000
    timings = pd.read_csv(out / "timings.csv")
    assert len(timings) == 12 and (timings["train_seconds"] >= 0).all()


def test_rerun_skips_finished_evaluations(uninterrupted):
    out, _ = uninterrupted
    before = _csv(out)
    again = run_sweep(tiny_config(out), jobs=1, progress=False, log=quiet)
    assert again.evaluations == 0 and _csv(out) == before


class Interrupt(Exception):
    pass


def test_injected_interruption_then_resume_gives_the_same_csv(uninterrupted, tmp_path):
    straight, _ = uninterrupted

    def stop_mid_training(trainer, row):
        # DiPoM-B/2 between its checkpoint at step 10 (ckpt_every 5) and its last evaluation
        if trainer.model.name == "DiPoM-B/2" and trainer.step >= 11:
            raise Interrupt
    with pytest.raises(Interrupt):
        run_sweep(tiny_config(tmp_path), jobs=1, progress=False, log=quiet,
                  callbacks=[stop_mid_training])
    partial = pd.read_csv(tmp_path / "results.csv")
    assert 0 < len(partial) < 12                          # DiPoM-B/2 ran first, S later
    run_sweep(tiny_config(tmp_path), jobs=1, progress=False, log=quiet)
    assert _csv(tmp_path) == _csv(straight)


KILLER = """
import os, signal, sys
sys.path.insert(0, {experiments!r})
import scaling_laws
from pomlab.scaling import run_sweep

def kill(trainer, row):   # a hard kill, no clean-up, in the middle of DiPoM-S/2's training
    if trainer.model.name == "DiPoM-S/2" and trainer.step >= 8:
        os.kill(os.getpid(), signal.SIGKILL)

config = scaling_laws.build_config(scaling_laws.parse_args({args!r}))
run_sweep(config, jobs=1, progress=False, callbacks=[kill])
"""


def test_killed_sweep_rerun_from_the_cli_gives_the_same_csv(uninterrupted, tmp_path):
    straight, _ = uninterrupted
    out = tmp_path / "killed"
    args = TINY_ARGS + ["--out", str(out)]
    script = KILLER.format(experiments=str(ROOT / "experiments"), args=args)
    killed = run([sys.executable, "-c", script], timeout=300)        # generous: a loaded CI box
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rows = pd.read_csv(out / "results.csv") if (out / "results.csv").exists() else pd.DataFrame()
    assert len(rows) < 12
    # The rerun uses the command line as written, with two worker processes.
    rerun = run([sys.executable, str(CLI), *args, "--jobs", "2"], timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "scale=micro dataset=digits backend=digits" in rerun.stdout
    assert "fid slope" in rerun.stdout
    assert _csv(out) == _csv(straight)


def test_concurrent_merges_lose_no_row(tmp_path):
    template = {c: 0 for c in RESULT_COLUMNS}

    def writer(model, folder):
        for step in range(1, 6):
            write_row(tmp_path / "runs" / folder / "evals.csv",
                      {**template, "model": model, "mixer": "pom", "size": "S", "step": step},
                      RESULT_COLUMNS)
            merge_results(tmp_path)

    threads = [threading.Thread(target=writer, args=(m, m.replace("/", "-")))
               for m in ("DiPoM-S/2", "DiPoM-B/2", "DiT-S/2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = merge_results(tmp_path)
    assert len(merged) == 15 and len(pd.read_csv(tmp_path / "results.csv")) == 15
    assert list(dict.fromkeys(merged["model"])) == ["DiPoM-S/2", "DiPoM-B/2", "DiT-S/2"]


def test_finalize_fits_and_plots_while_holding_the_lock(uninterrupted, tmp_path, monkeypatch):
    """Concurrent finalize calls (torchrun jobs sharing OUT) must not leave fits or figures from an
    older merge than results.csv: the fit runs while OUT's lock is held."""
    import shutil
    fcntl = pytest.importorskip("fcntl")
    from pomlab.scaling import sweep
    out = tmp_path / "copy"
    shutil.copytree(uninterrupted[0], out)
    held, write_fits = [], sweep.write_fits

    def probe(*args, **kwargs):
        with open(out / ".lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                held.append(False)
            except BlockingIOError:
                held.append(True)
        return write_fits(*args, **kwargs)

    monkeypatch.setattr(sweep, "write_fits", probe)
    results, fits, figures = sweep.finalize(out)
    assert held == [True] and len(results) == 12 and len(figures) == 4


def test_cli_errors_are_clear(tmp_path, monkeypatch):
    bad = run([sys.executable, str(CLI), "--scale", "paper", "--out", str(tmp_path),
               "--no-progress"], timeout=60)
    assert bad.returncode == 2 and "needs data_path / --data-path" in bad.stderr
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import scaling_laws
    with pytest.raises(FileNotFoundError, match="encode_latents.py"):
        scaling_laws.main(["--scale", "paper", "--data-path", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert not (tmp_path / "o" / "sweep.json").exists()      # nothing recorded for a failed start
    with pytest.raises(ValueError, match="backend='inception'"):
        scaling_laws.main(["--dataset", "cifar10", "--data-path", str(tmp_path)])
    # Paper scale with latents present but no Inception extra / weights: stops before training.
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "meta.json").write_text("{}")
    with pytest.raises((ImportError, FileNotFoundError), match=r"pomlab\[inception\]|weights"):
        scaling_laws.main(["--scale", "paper", "--data-path", str(tmp_path / "z"),
                           "--out", str(tmp_path / "p"), "--device", "cpu"])
    assert not (tmp_path / "p" / "sweep.json").exists()


def test_ddp_sweep_under_torchrun(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(CLI), *TINY_ARGS, "--sizes", "S", "--mixers", "pom", "--out", str(out)]
    done = run(cmd, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 3 and frame["device"].str.endswith("x2 ranks").all()
    assert (frame["n_fake"] == 72).all()                   # the two ranks' chunks pooled once


# --- frontier, saturating law, seeds -------------------------------------------------------------

def test_saturating_fit_recovers_exponent_and_floor_within_its_intervals():
    """FID = a C^-b + c with 3% multiplicative noise, 12 log-spaced computes: b and c inside
    their 95% intervals, and over 200 fresh draws the intervals cover b in about 95% of them."""
    from pomlab.scaling import saturating_fit
    rng = np.random.default_rng(7)
    a, b, c = 400.0, 0.6, 20.0
    x = np.geomspace(10, 1e5, 12)
    fit = saturating_fit(x, (a * x ** -b + c) * np.exp(rng.normal(0, 0.03, len(x))))
    assert fit["b_ci95"][0] < b < fit["b_ci95"][1]
    assert fit["c_ci95"][0] < c < fit["c_ci95"][1]
    assert fit["r2"] > 0.99
    exact = saturating_fit(x, a * x ** -b + c)                 # noiseless: the law itself
    assert (exact["a"], exact["b"], exact["c"]) == pytest.approx((a, b, c), rel=1e-5)
    covered = 0
    for _ in range(200):
        f = saturating_fit(x, (a * x ** -b + c) * np.exp(rng.normal(0, 0.03, len(x))))
        covered += f["b_ci95"][0] < b < f["b_ci95"][1]
    # 95% nominal; a binomial(200, 0.95) falls below 0.88 with probability < 1e-4
    assert covered / 200 > 0.88


def test_saturating_law_beats_the_line_where_the_line_fits_badly():
    from pomlab.scaling import loglog_fit, saturating_fit
    x = np.geomspace(1, 1e6, 15)
    y = 1000 * x ** -0.8 + 30                                  # flattens onto its floor
    assert saturating_fit(x, y)["r2"] > 0.999 > 0.9 > loglog_fit(x, y)["r2"]


def test_the_frontier_of_a_known_family_is_found_exactly():
    """Models k = 1, 2, 4, ..., 2^6 with FID_k(C) = k / C + 1 / k, evaluated at C = 4^j: at each
    C the best model is k = sqrt(C) with FID 2 / sqrt(C), and every cheaper evaluation is worse.
    The frontier is exactly those points, one per compute, and its log-log slope is -1/2."""
    from pomlab.scaling import frontier
    rows = []
    for i in range(7):
        k = 2.0 ** i
        for j in range(7):
            c = 4.0 ** j
            rows.append({"model": f"k{i}", "mixer": "pom", "size": f"k{i}", "patch": 2,
                         "step": j, "train_compute_gflops": c, "fid": k / c + 1 / k,
                         "is_mean": 1.0})
    points = pd.DataFrame(rows)
    edge = frontier(points, "train_compute_gflops", "fid")
    assert list(edge["train_compute_gflops"]) == [4.0 ** j for j in range(7)]
    assert list(edge["model"]) == [f"k{j}" for j in range(7)]
    np.testing.assert_allclose(edge["fid"], [2 / 2.0 ** j for j in range(7)], rtol=1e-15)
    fits = {(f["metric"], f["group"]): f for f in fit_table(points)}
    assert fits[("fid", "frontier")]["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert fits[("fid", "frontier")]["n"] == 7
    # "higher is better" (IS): the frontier keeps only improvements
    up = frontier(pd.DataFrame({"c": [1, 2, 3, 4], "v": [1.0, 0.5, 2.0, 2.0]}), "c", "v", "higher")
    assert list(up["c"]) == [1, 3]


def test_bootstrap_over_seeds_brackets_the_true_law_with_the_right_width():
    """One size, 20 seeds: every run is the law FID = 500 C^-0.5 + 40 plus a run-level offset
    (sd 2: the run-to-run spread the seeds measure) and 2% noise per evaluation. The
    bootstrap-over-runs intervals hold the true exponent and floor, and the floor's interval
    is as wide as the offsets' standard error says (2 x 1.96 x 2 / sqrt(20) = 1.75) within a
    factor 1.6; the single-run t intervals are labelled as such."""
    rng = np.random.default_rng(0)
    a, b, c, spread, seeds = 500.0, 0.5, 40.0, 2.0, 20
    computes = np.geomspace(10, 1e5, 8)
    rows = []
    for seed in range(seeds):
        offset = rng.normal(0, spread)
        for step, x in enumerate(computes):
            fid = (a * x ** -b + c) * np.exp(rng.normal(0, 0.02)) + offset
            rows.append({"model": "DiPoM-S/2", "mixer": "pom", "size": "S", "patch": 2,
                         "seed": seed, "step": step, "train_compute_gflops": x, "fid": fid,
                         "is_mean": 1.0 + x})
    frame = pd.DataFrame(rows)
    fit = next(f for f in fit_table(frame, resamples=100)
               if (f["metric"], f["group"]) == ("fid", "model"))
    assert fit["ci"] == "bootstrap over seeds" and fit["n_seeds"] == seeds
    assert fit["sat_b_ci95_low"] < b < fit["sat_b_ci95_high"]
    assert fit["sat_c_ci95_low"] < c < fit["sat_c_ci95_high"]
    width = fit["sat_c_ci95_high"] - fit["sat_c_ci95_low"]
    assert 1.75 / 1.6 < width < 1.75 * 1.6
    one = next(f for f in fit_table(frame[frame["seed"] == 0])
               if (f["metric"], f["group"]) == ("fid", "model"))
    assert one["ci"].startswith("t (one run") and one["n_seeds"] == 1


def test_old_results_without_a_seed_column_still_load_and_fit(tmp_path):
    from pomlab.scaling import load_results
    from pomlab.scaling.sweep import refit
    frame = pd.read_csv(ROOT / "docs" / "results" / "scaling_micro" / "results.csv")
    frame.drop(columns="seed").to_csv(tmp_path / "results.csv", index=False)
    timings = pd.read_csv(ROOT / "docs" / "results" / "scaling_micro" / "timings.csv")
    assert "seed" not in timings
    timings.to_csv(tmp_path / "timings.csv", index=False)
    assert (load_results(tmp_path)["seed"] == 0).all()
    fits, figures = refit(tmp_path)
    assert {f["x"] for f in fits["fits"]} == {"compute", "wall"}
    assert [p.name for p in figures] == ["scaling.png", "scaling.pdf", "scaling_wall.png",
                                         "scaling_wall.pdf"]


def test_seeds_train_replicates_with_one_tidy_row_per_evaluation(tmp_path, monkeypatch):
    monkeypatch.setattr("pomlab.scaling.fits.BOOTSTRAP_RESAMPLES", 20)     # a quick finalize
    config = tiny_config(tmp_path, sizes="S", mixers="pom", steps=4, eval_points=2,
                         seeds=(0, 1))
    result = run_sweep(config, jobs=1, progress=False, log=quiet)
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame.columns) == RESULT_COLUMNS
    assert list(zip(frame["seed"], frame["step"])) == [(0, 2), (0, 4), (1, 2), (1, 4)]
    assert frame.groupby("step")["fid"].nunique().eq(2).all()      # the replicates differ
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["DiPoM-S-2",
                                                                     "DiPoM-S-2-seed1"]
    fid = [f for f in result.fits["fits"] if f["metric"] == "fid" and f["group"] == "model"
           and f["x"] == "compute"]
    assert fid[0]["n_seeds"] == 2 and fid[0]["ci"] == "bootstrap over seeds"
    # adding a seed later into the same folder is allowed (like adding sizes)
    more = run_sweep(tiny_config(tmp_path, sizes="S", mixers="pom", steps=4, eval_points=2,
                                 seeds=(0, 1, 2)), jobs=1, progress=False, log=quiet)
    assert more.evaluations == 2 and set(pd.read_csv(tmp_path / "results.csv")["seed"]) == {0, 1, 2}
    with pytest.raises(ValueError, match="seeds must be distinct"):
        tiny_config(tmp_path, seeds=(1, 1))
