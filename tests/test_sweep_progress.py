"""The sweep's progress: work weighted by each model's estimated FLOPs (so the time left does not
depend on the order the models run in), and plain lines with no carriage returns in log files."""
import io
import sys

import pytest

from pomlab.scaling import SweepConfig
from pomlab.scaling import sweep
from pomlab.scaling.compute import FORWARD_AND_BACKWARD
from pomlab.models import create, gflops


def config(tmp_path, **kw):
    return SweepConfig.for_scale("micro", sizes="S,XL", steps=8, eval_points=2, fid_samples=16,
                                 sample_steps=3, out=str(tmp_path / "sweep"), **kw)


def test_model_costs_are_training_and_sampling_flops(tmp_path):
    c = config(tmp_path)
    step, evaluation = sweep.model_costs(c, "pom", "XL")
    forward = gflops(create("DiPoM-XL/2", scale="micro")) * 1e9
    assert step == pytest.approx(FORWARD_AND_BACKWARD * forward * c.batch_size, rel=1e-9)
    assert evaluation == pytest.approx(forward * 3 * 2 * 16, rel=1e-9)     # Heun: 2 calls a step
    guided = sweep.model_costs(config(tmp_path, cfg=2.0), "pom", "XL")[1]
    assert guided == pytest.approx(2 * evaluation, rel=1e-9)
    small = sweep.model_costs(c, "pom", "S")
    assert small[0] < step / 5                          # XL costs far more per step than S


def test_progress_weighs_each_model_by_its_cost_and_logs_plain_lines(tmp_path, monkeypatch):
    c = config(tmp_path)
    lines = []
    monkeypatch.setattr(sys, "stderr", io.StringIO())          # a log file, not a terminal
    progress = sweep._Progress(c, [("pom", "XL", 0), ("pom", "S", 0)], True, lines.append)
    costs = {m: sweep.model_costs(c, "pom", s) for m, s in (("DiPoM-XL/2", "XL"), ("DiPoM-S/2", "S"))}
    assert progress.total == pytest.approx(sum(8 * a + 2 * b for a, b in costs.values()))
    assert progress.bar.disable                                 # no bar in a log file
    progress({"kind": "start", "model": "DiPoM-XL/2", "step": 0})
    progress({"kind": "step", "model": "DiPoM-XL/2", "step": 4})
    assert progress.done == pytest.approx(4 * costs["DiPoM-XL/2"][0])
    progress({"kind": "eval", "model": "DiPoM-XL/2", "step": 4, "train_compute_gflops": 1.0,
              "fid_name": "digits-FID", "fid": 10.0, "is_name": "digits-IS", "is_mean": 2.0})
    (line,) = lines
    assert line.startswith("DiPoM-XL/2 step 4 (1 GFLOPs): digits-FID 10.000, digits-IS 2.000  [sweep ")
    assert "elapsed, ~" in line and "left]" in line and "\r" not in line and "\n" not in line
    fraction = (4 * costs["DiPoM-XL/2"][0] + costs["DiPoM-XL/2"][1]) / progress.total
    assert f"sweep {100 * fraction:.0f}%" in line
    progress.close()
    assert sys.stderr.getvalue() == ""                          # nothing but the log lines


def test_progress_without_progress_logs_bare_evaluation_lines(tmp_path):
    lines = []
    progress = sweep._Progress(config(tmp_path), [("mha", "S", 0)], False, lines.append)
    progress({"kind": "eval", "model": "DiT-S/2", "step": 8, "train_compute_gflops": 2.0,
              "fid_name": "digits-FID", "fid": 5.0, "is_name": "digits-IS", "is_mean": 3.0})
    assert lines == ["DiT-S/2 step 8 (2 GFLOPs): digits-FID 5.000, digits-IS 3.000"]
    progress.close()


def test_duration_reads_as_minutes_and_hours():
    assert sweep._duration(42) == "42 s"
    assert sweep._duration(7 * 60 + 5) == "7 min 05 s"
    assert sweep._duration(2 * 3600 + 5 * 60) == "2 h 05 min"
