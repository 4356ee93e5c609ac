"""Paper figures from saved results: the speed analysis, the results-folder layout and
experiments/make_figures.py on a folder built from small real runs of the experiment scripts."""
import importlib.util
import math
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pomlab import plotting
from pomlab.figures import FIGURES, figure_paths, make_figures, video_strip_figure
from pomlab.results import KINDS, find_results, load_all, load_table, locate
from pomlab.speed import crossover, loglog_slope, speed_configurations, summarise_speed

ROOT = Path(__file__).resolve().parents[1]


def experiment(name: str):
    """An experiments/ script as a module (its main(argv) runs it in this process)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(f"{name}_cli", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- speed analysis ------------------------------------------------------------------------------

@given(slope=st.floats(0.2, 2.5), scale=st.floats(1e-4, 1e2), noise=st.booleans())
def test_loglog_slope_recovers_a_power_law(slope, scale, noise):
    n = np.array([16.0, 64, 256, 1024, 4096])
    t = scale * n ** slope
    if noise:                           # NaN points (skipped variants) are left out of the fit
        t[2] = math.nan
    # exact power law: only float rounding separates the fit from the true exponent
    assert loglog_slope(n, t) == pytest.approx(slope, abs=1e-9)


def test_loglog_slope_needs_two_points():
    assert math.isnan(loglog_slope([10.0], [1.0]))
    assert math.isnan(loglog_slope([10.0, 10.0], [1.0, 2.0]))


def test_crossover_is_where_the_log_log_lines_meet():
    n = np.array([100.0, 1000.0])
    # DiPoM training ~ n, DiT inference ~ n^2 / 400: equal at n = 400 (a straight line in log-log)
    assert crossover(n, n, n ** 2 / 400) == pytest.approx(400.0, rel=1e-12)
    assert crossover(n, n * 10, n ** 2 / 400) is None          # never crosses in range
    assert crossover(n, n / 1e3, n) is None                    # cheaper everywhere: no crossing


def speed_rows(tokens=(64, 256, 1024, 4096), depth=1, pom_path="fast"):
    """A speed.csv frame with known power laws: DiPoM ~ n, DiT inference ~ n^2."""
    rows = []
    for n in tokens:
        side = int(16 * math.sqrt(n))
        laws = (("DiPoM", "training", 1e-3 * n), ("DiPoM", "inference", 3e-4 * n),
                ("DiT", "training", 1e-6 * n ** 2), ("DiT", "inference", 4e-7 * n ** 2))
        for family, mode, seconds in laws:
            rows.append(dict(family=family, mixer="pom" if family == "DiPoM" else "mha",
                             model=f"{family}-S/2", mode=mode, resolution=side, latent_side=side // 8,
                             tokens=n, seconds_per_image=seconds, peak_bytes=1000 * n, status="ok",
                             depth=depth, batch=1, dtype="float32", optimizer=True, pom_path=pom_path,
                             device="cpu:test"))
    return pd.DataFrame(rows)


def test_summarise_speed_slopes_and_crossover():
    summary = summarise_speed(speed_rows())
    assert summary["model_size"] == "S" and summary["patch"] == 2
    assert summary["slopes"]["DiPoM/training"]["all_points"] == pytest.approx(1.0)
    assert summary["slopes"]["DiT/inference"]["last_two_points"] == pytest.approx(2.0)
    # 1e-3 n = 4e-7 n^2  <=>  n = 2500; side = 8 * patch * sqrt(n)
    assert summary["crossover_tokens"] == pytest.approx(2500.0)
    assert summary["crossover_resolution_px"] == pytest.approx(16 * 50.0)


def test_speed_configurations_split_by_settings_not_by_family():
    one = speed_rows()
    assert len(speed_configurations(one)) == 1
    both = pd.concat([one, speed_rows(depth=2), speed_rows(pom_path="reference")])
    parts = speed_configurations(both)
    assert len(parts) == 3 and all(len(p) == len(one) for p in parts)
    with pytest.raises(ValueError, match="3 configurations"):
        summarise_speed(both)
    with pytest.raises(ValueError, match="seconds_per_image"):
        speed_configurations(one.drop(columns="seconds_per_image"))


# --- layout, loading, bad input --------------------------------------------------------------

def test_find_results_any_depth_skipping_runs_and_the_output(tmp_path):
    for folder in ("a/speed_cpu", "b/deeper/speed_cuda", "figures/speed", "scaling/runs/x"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "speed.csv").write_text("x\n1\n")
    found = find_results(tmp_path, skip=tmp_path / "figures")
    assert found["speed"] == [tmp_path / "a/speed_cpu", tmp_path / "b/deeper/speed_cuda"]
    assert set(found) == set(KINDS)
    with pytest.raises(FileNotFoundError, match="experiments/bench_state_memory.py"):
        locate(tmp_path, "state_memory")
    with pytest.raises(ValueError, match="kind must be one of"):
        locate(tmp_path, "nonsense")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_results(tmp_path / "missing")


def test_load_table_names_the_file_and_the_missing_columns(tmp_path):
    (tmp_path / "video_memory.csv").write_text("frames,mode\n1,sequential\n")
    with pytest.raises(ValueError, match=r"video_memory.csv is not a video_memory result.*peak_mib"):
        load_table(tmp_path, "video_memory")
    with pytest.raises(FileNotFoundError, match="experiments/speed.py"):
        load_table(tmp_path, "speed")


def test_load_all_skips_unreadable_results_with_a_warning(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder in (good, bad):
        folder.mkdir()
    speed_rows().to_csv(good / "speed.csv", index=False)
    (bad / "speed.csv").write_text("family,mode\nDiT,training\n")
    with pytest.warns(UserWarning, match=r"skipped .*bad.*speed.csv.*seconds_per_image"):
        loaded = load_all(tmp_path, "speed")
    assert [folder for folder, _ in loaded] == [good]
    assert len(loaded[0][1]) == len(speed_rows())
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="no readable speed.csv"):
        load_all(bad, "speed")


def test_log_ticks_and_strip_check_their_arguments(tmp_path):
    with plotting.style():
        fig, axes = plotting.figure()
        with pytest.raises(ValueError, match="axis must be"):
            plotting.log_ticks(axes[0, 0], [1, 2], axis="z")
        with pytest.raises(ValueError, match="labels: expected 2"):
            plotting.log_ticks(axes[0, 0], [1, 2, 2], labels=["a"])
        plotting.save(fig, tmp_path / "unused")
    with pytest.raises(ValueError, match="rows"):
        video_strip_figure({}, tmp_path / "strip")


def test_save_writes_png_and_pdf_and_always_closes_the_figure(tmp_path):
    with plotting.style():
        fig, axes = plotting.figure()
        axes[0, 0].plot([1, 2], [3, 4])
        paths = plotting.save(fig, tmp_path / "a.png")
        assert paths == [tmp_path / "a.png", tmp_path / "a.pdf"] and not plt.fignum_exists(fig.number)
        fig, _ = plotting.figure()
        with pytest.raises(ValueError, match="not supported"):
            plotting.save(fig, tmp_path / "b", formats=("png", "nope"))
        assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png", "b.png"]   # no temp files


# --- make_figures on small real runs -----------------------------------------------------------

@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A results folder in the default layout, from small runs of every experiment script."""
    root = tmp_path_factory.mktemp("results")
    experiment("speed").main(["--resolutions", "32,64", "--repeats", "1", "--threads", "1",
                              "--out", str(root / "speed_cpu")])
    experiment("bench_state_memory").main(["--dim", "16", "--tokens-per-frame", "4", "--frames", "1,2,4",
                                           "--repeats", "1", "--threads", "1",
                                           "--out", str(root / "state_memory")])
    experiment("video_memory").main(["--frames", "1,2", "--steps", "1", "--repeats", "1",
                                     "--out", str(root / "video_memory")])
    experiment("contextual_mapping").main(["--grids", "3:2:1", "--steps", "5", "--width", "8",
                                           "--out", str(root / "theory")])
    experiment("universal_approximation").main(["--tasks", "sort", "--steps", "3",
                                                "--out", str(root / "theory")])
    with warnings.catch_warnings():      # 32 samples: a rank-deficient covariance, on purpose
        warnings.filterwarnings("ignore", message=".*rank-deficient")
        experiment("scaling_laws").main(["--sizes", "S", "--mixers", "pom,mha", "--steps", "4",
                                         "--eval-steps", "2,4", "--fid-samples", "32",
                                         "--reference-samples", "64", "--sample-steps", "1",
                                         "--batch-size", "8", "--jobs", "1", "--threads", "1",
                                         "--no-progress", "--out", str(root / "scaling")])
    return root


@pytest.mark.slow
def test_make_figures_redraws_every_figure_from_the_results(results_dir, tmp_path):
    out = tmp_path / "figures"
    report = make_figures(results_dir, out)
    assert (report.status == "made").all(), report[report.status != "made"].detail.tolist()
    assert list(report.figure) == [f.name for f in FIGURES]
    expected = ["speed_cpu/speed", "scaling/scaling", "scaling/scaling_pom_vs_mha",
                "state_memory/state_memory", "video_memory/video_memory",
                "theory/contextual_mapping", "theory/universal_approximation_params",
                "theory/universal_approximation_degree"]
    for stem in expected:
        for suffix in (".png", ".pdf"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000
    assert sorted(figure_paths(report)) == sorted(out / f"{s}.png" for s in expected)
    # nothing retrained or re-measured: the results folder is unchanged but for nothing
    assert not (results_dir / "figures").exists()


def test_the_committed_results_still_draw(tmp_path):
    """docs/ holds the full runs' CSVs (speed, theory, video memory): they stay drawable."""
    report = make_figures(ROOT / "docs", tmp_path)
    made = set(report[report.status == "made"].figure)
    assert {"speed", "state_memory", "contextual_mapping", "universal_approximation_params",
            "universal_approximation_degree", "video_memory"} <= made
    assert not ((report.status == "skipped") & report.source.notna()).any(), report.detail.tolist()


def test_make_figures_without_results_skips_everything_and_says_why(tmp_path):
    report = make_figures(tmp_path)
    assert (report.status == "skipped").all() and len(report) == len(FIGURES)
    for figure, detail in zip(FIGURES, report.detail):
        assert KINDS[figure.kind].command in detail


@pytest.mark.slow
def test_make_figures_cli_reports_unreadable_results(tmp_path):
    broken = tmp_path / "results"
    (broken / "speed_cpu").mkdir(parents=True)
    (broken / "speed_cpu" / "speed.csv").write_text("family,mode\nDiT,training\n")
    (broken / "theory").mkdir()
    (broken / "theory" / "contextual_mapping.csv").write_bytes(      # a saved full run
        (ROOT / "docs" / "theory" / "contextual_mapping.csv").read_bytes())
    run = subprocess.run([sys.executable, str(ROOT / "experiments" / "make_figures.py"), str(broken)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1, run.stderr             # a results file that could not be drawn
    assert "is not a speed result" in run.stdout and "seconds_per_image" in run.stdout
    assert (broken / "figures" / "theory" / "contextual_mapping.png").is_file()
    assert "1 figure(s) made" in run.stdout
