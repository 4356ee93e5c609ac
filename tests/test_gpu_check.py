"""experiments/gpu_check.py starts on a machine without a GPU: --dry-run lists the checks,
validates its arguments and writes the JSON report; a real run refuses without CUDA."""
import json

import pytest
import torch


@pytest.fixture(scope="module")
def gpu_check(experiment_script):
    return experiment_script("gpu_check")

def test_dry_run_lists_every_check_and_writes_the_report(gpu_check, tmp_path, capsys):
    report = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    for name in gpu_check.CHECKS:
        assert f"would run {name}" in printed
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["dry_run"] is True and saved["checks"] == {}
    assert [p["check"] for p in saved["plan"]] == list(gpu_check.CHECKS)
    assert report["environment"]["torch"] == torch.__version__
    # the estimates fit the 8-minute budget the script promises
    assert sum(seconds for seconds, _ in gpu_check.CHECKS.values()) <= gpu_check.BUDGET_S
    assert set(gpu_check.RUNNERS) == set(gpu_check.CHECKS)
    # the sweep check's settings: the training ones come from SweepConfig.train
    assert saved["sweep_config"] == {"scale": "paper", "dataset": "latents", "backend": "inception",
                                     "precision": "auto", "steps": 4, "batch_size": 16,
                                     "eval_steps": [2, 4]}

def test_subset_and_bad_arguments(gpu_check, tmp_path, capsys):
    report = gpu_check.main(["--dry-run", "--only", "triton,nccl", "--out", str(tmp_path)])
    assert [p["check"] for p in report["plan"]] == ["triton", "nccl"]
    assert "sweep_config" not in report
    for argv, message in [(["--only", "triton,warp"], "unknown check"),
                          (["--resolutions", "256,500"], "multiples of 16"),
                          (["--resolutions", "big"], "comma-separated integers"),
                          (["--budget", "0"], "--budget must be > 0"),
                          (["--train-steps", "1"], "--train-steps must be >= 2"),
                          (["--device", "cpu"], "--device must be a CUDA device")]:
        with pytest.raises(ValueError, match=message):    # pomlab.cli.run prints it as one line
            gpu_check.parse_args(["--dry-run", *argv])

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on CPU-only machines")
def test_real_run_needs_cuda(gpu_check, tmp_path):
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        gpu_check.main(["--out", str(tmp_path)])
