"""experiments/sample.py: the same npz from 1 and 2 (gloo) processes, completion after a kill,
ADM's layout (arr_0 uint8 NHWC, RGB), and one-line errors for bad input."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pomlab.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "experiments" / "sample.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(model="DiT-S/4", scale="micro", model_overrides={"depth": 1}, image_size=8,
                      batch_size=8, steps=3, lr=1e-2, loss="hybrid", sample_at_end=False,
                      sample_steps=3, sample_method="ddpm", out=str(out)), progress=False)
    return out


def sample(args, nproc=1, **kw):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), SCRIPT] if nproc > 1 else [sys.executable, SCRIPT]) + args
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.slow
def test_one_and_two_processes_write_the_same_npz(run_dir, tmp_path):
    common = ["--run-dir", str(run_dir), "--num-samples", "11", "--block-size", "3", "--cfg", "1.0",
              "--cfg-guidance", "authors", "--no-progress"]
    one = sample(common + ["--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = sample(common + ["--out", str(tmp_path / "two")], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a = np.load(tmp_path / "one" / "samples_11.npz")
    b = np.load(tmp_path / "two" / "samples_11.npz")
    assert list(a.keys()) == ["arr_0"]
    assert a["arr_0"].dtype == np.uint8 and a["arr_0"].shape == (11, 8, 8, 3)   # grey -> RGB
    assert np.array_equal(a["arr_0"], b["arr_0"])
    assert a["arr_0"].std() > 0
    pngs = sorted((tmp_path / "one" / "images").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(11)]
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(pngs[4])), a["arr_0"][4, ..., 0])
    assert "cfg 1 (authors" in one.stdout
    # another setting into the same folder is refused (the old flag spelling still works, and
    # sample.json keeps its key "guidance")
    again = sample(common[:-3] + ["--guidance", "standard", "--no-progress", "--out",
                                  str(tmp_path / "one")])
    assert again.returncode != 0 and "other settings (guidance" in again.stderr


@pytest.mark.slow
def test_rerun_after_a_kill_completes_the_same_set(run_dir, tmp_path):
    args = ["--run", str(run_dir), "--num-samples", "40", "--block-size", "2", "--sample-steps", "40",
            "--no-progress"]
    full = sample(args + ["--out", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, SCRIPT] + args + ["--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / "blocks").glob("*.npy")):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_at_kill = len(list((out / "blocks").glob("*.npy")))
    assert 1 <= done_at_kill < 20 and not (out / "samples_40.npz").exists()
    rerun = sample(args + ["--out", str(out)])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert np.array_equal(np.load(out / "samples_40.npz")["arr_0"],
                          np.load(tmp_path / "full" / "samples_40.npz")["arr_0"])


def test_bad_input_gives_one_line_errors(tmp_path):
    zero = sample(["--run", str(tmp_path), "--num-samples", "0", "--out", str(tmp_path / "o")])
    assert zero.returncode == 2
    assert zero.stderr.strip().startswith("error: --num-samples must be a positive int, got 0")
    assert len(zero.stderr.strip().splitlines()) == 1
    bogus = tmp_path / "bogus.pt"
    import torch
    torch.save({"encoder.weight": torch.zeros(2)}, bogus)
    bad = sample(["--dit-checkpoint", str(bogus), "--vae", "x", "--num-samples", "2",
                  "--out", str(tmp_path / "o")])
    assert bad.returncode == 2 and bad.stderr.startswith("error: not a DiT checkpoint")
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = sample(["--run", str(tmp_path / "nothing"), "--num-samples", "2",
                      "--out", str(tmp_path / "o")])
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_sampler_flags_are_the_train_config_names_with_the_old_ones_as_aliases(
        experiment_script, tmp_path):
    script = experiment_script("sample")
    base = ["--run", "r", "--num-samples", "2", "--out", "o"]
    new = script.parse_args(base + ["--cfg-guidance", "authors", "--sample-steps", "7",
                                    "--sample-method", "ddim"])
    old = script.parse_args(base + ["--guidance", "authors", "--steps", "7", "--method", "ddim"])
    assert vars(new) == vars(old)
    assert (new.cfg_guidance, new.sample_steps, new.sample_method) == ("authors", 7, "ddim")
    config = tmp_path / "sample.yaml"       # a config file takes the field names as keys too
    config.write_text("cfg_guidance: authors\nsample_steps: 7\nsample_method: ddim\n")
    from_file = script.parse_args(base + ["--config", str(config)])
    assert vars(from_file) == {**vars(new), "config": str(config)}
    with pytest.raises(ValueError, match="--sample-steps must be a positive int"):
        script.parse_args(base + ["--steps", "0"])
