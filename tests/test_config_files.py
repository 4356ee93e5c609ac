"""--config FILE.yaml, the resolved config saved beside every run and sweep, flags generated
from the config dataclasses, and TensorBoard logging."""
import builtins
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pomlab.cli import ConfigParser
from pomlab.train import TrainConfig, Logger, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import scaling_laws  # noqa: E402
import train as train_cli  # noqa: E402

TRAIN_ARGS = ["--model", "DiT-S/4", "--image-size", "8", "--model-overrides", "depth=1",
              "--steps", "4", "--batch-size", "8", "--sample-steps", "2",
              "--samples-per-class", "2", "--device", "cpu", "--no-progress"]
SWEEP_ARGS = ["--sizes", "S", "--mixers", "pom", "--steps", "4", "--eval-points", "2",
              "--batch-size", "8", "--image-size", "8", "--model-overrides", "depth=1",
              "--fid-samples", "24", "--eval-chunk", "24", "--sample-steps", "2",
              "--device", "cpu", "--jobs", "1", "--no-progress"]


# 24 samples keep the tiny sweeps fast; their FID is only compared with itself
pytestmark = pytest.mark.filterwarnings("ignore:.*rank-deficient covariance")


@pytest.fixture(autouse=True)
def _private_metric_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POMLAB_CACHE", str(tmp_path / "cache"))


def _tensors(run: Path) -> dict:
    ckpt = torch.load(list_checkpoints(run)[-1], weights_only=True)
    return {f"{part}.{k}": v for part in ("model", "ema", "optimizer")
            for k, v in (ckpt[part]["state"] if part == "optimizer" else ckpt[part]).items()
            if isinstance(v, torch.Tensor)}


@pytest.mark.slow
def test_a_training_run_repeats_from_its_saved_config_alone(tmp_path, monkeypatch):
    first = train_cli.main(TRAIN_ARGS + ["--seed", "3", "--lr", "5e-3", "--out", str(tmp_path / "a")])
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert saved["seed"] == 3 and saved["lr"] == 5e-3 and "out" not in saved
    monkeypatch.chdir(tmp_path)                       # the repeat writes a new runs/train-... here
    again = train_cli.main(["--config", str(tmp_path / "a" / "config.yaml"), "--no-progress"])
    assert again.out != first.out and again.step == first.step == 4
    a, b = _tensors(first.out), _tensors(again.out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in again.history] == [r["loss"] for r in first.history]


@pytest.mark.slow
def test_a_sweep_repeats_from_its_saved_config_alone(tmp_path, monkeypatch):
    first = scaling_laws.main(SWEEP_ARGS + ["--seed", "2", "--out", str(tmp_path / "a")])
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert saved["train"]["steps"] == 4 and saved["eval_steps"] == [2, 4] and "out" not in saved
    monkeypatch.chdir(tmp_path)                       # the repeat writes results/scaling here
    again = scaling_laws.main(["--config", str(tmp_path / "a" / "config.yaml"), "--jobs", "1",
                               "--no-progress"])
    assert again.out.resolve() == (tmp_path / "results" / "scaling").resolve()
    a = pd.read_csv(first.out / "results.csv")
    b = pd.read_csv(again.out / "results.csv")
    assert len(a) == 2 and a.equals(b) and (a["seed"] == 2).all()


def test_flags_override_the_file_and_unknown_keys_are_one_line_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nbatch-size: 16\nmodel_overrides: {depth: 2}\ncfg: paper\n")
    config, _ = train_cli.parse_args(["--config", str(path), "--steps", "9",
                                      "--model-overrides", "mlp_ratio=2", "--out", str(tmp_path)])
    assert (config.steps, config.batch_size, config.cfg) == (9, 16, "paper")
    assert config.model_overrides == {"depth": 2, "mlp_ratio": 2}
    path.write_text("steps: 7\nbogus_key: 1\n")
    with pytest.raises(ValueError, match="unknown key 'bogus_key'") as err:
        train_cli.parse_args(["--config", str(path)])
    assert "\n" not in str(err.value)
    nested = tmp_path / "s.yaml"             # a sweep file: training settings under `train:`
    nested.write_text("sizes: S,B\ntrain: {steps: 8, seed: 1}\n")
    sweep = scaling_laws.build_config(scaling_laws.parse_args(["--config", str(nested),
                                                               "--device", "cpu"]))
    assert sweep.sizes == ("S", "B") and sweep.train.steps == 8 and sweep.seeds == (1,)
    assert sweep.eval_steps[-1] == 8
    # a multi-seed sweep's config.yaml records seeds and seed = seeds[0]: no conflict there
    nested.write_text("seeds: [1, 2]\ntrain: {seed: 1}\n")
    assert scaling_laws.build_config(scaling_laws.parse_args(
        ["--config", str(nested), "--device", "cpu"])).seeds == (1, 2)
    with pytest.raises(ValueError, match="not both"):
        scaling_laws.build_config(scaling_laws.parse_args(["--seed", "3", "--seeds", "1,2"]))


def test_a_config_file_sets_plain_flags_required_ones_too(tmp_path):
    parser = ConfigParser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run")
    source.add_argument("--checkpoint")
    parser.add_argument("--num-samples", type=int, required=True)
    parser.add_argument("--no-progress", action="store_true")
    path = tmp_path / "c.yaml"
    path.write_text("run: runs/a\nnum_samples: '12'\nno-progress: true\n")
    args = parser.parse_args(["--config", str(path)])
    assert (args.run, args.num_samples, args.no_progress) == ("runs/a", 12, True)
    assert parser.parse_args([f"--config={path}", "--num-samples", "3"]).num_samples == 3
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        parser.parse_args(["--config", str(path)])


def test_generated_flags_cover_every_field_with_its_name():
    parser = ConfigParser()
    parser.add_fields(TrainConfig)
    flags = {s for a in parser._actions for s in a.option_strings}
    for name in TrainConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in flags
    args = parser.parse_args(["--betas", "0.8,0.9", "--shift", "auto", "--lr", "none",
                              "--no-ema-warmup", "--grad-clip", "0"])
    config = TrainConfig(**parser.given(args, TrainConfig)).validate()
    assert (config.betas, config.shift, config.ema_warmup, config.grad_clip) == \
        ((0.8, 0.9), "auto", False, None)
    assert config.lr == 1e-2                       # None: the micro scale's default, resolved


@pytest.mark.slow
def test_tensorboard_logs_scalars_sample_grids_and_the_sweeps_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    result = scaling_laws.main(SWEEP_ARGS + ["--logger", "tensorboard", "--sample-at-end",
                                             "--log-every", "2", "--out", str(tmp_path)])
    events = EventAccumulator(str(result.out / "runs" / "DiPoM-S-2" / "tensorboard"),
                              size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/images_per_s",
                "eval/digits-FID", "eval/digits-IS"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    assert [e.step for e in events.Scalars("eval/digits-FID")] == [2, 4]
    fid = pd.read_csv(result.out / "results.csv")["fid"].tolist()
    assert [e.value for e in events.Scalars("eval/digits-FID")] == pytest.approx(fid, rel=1e-6)
    assert "samples" in tags["images"] and events.Images("samples")[-1].step == 4


def test_a_missing_tensorboard_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"pomlab\[tensorboard\]"):
        Logger("tensorboard", tmp_path)
    assert Logger("csv", tmp_path).writer is None


def test_checkpoints_of_before_the_renames_still_load():
    """Training configs saved with sample_cfg / sample_guidance, and EMA states saved by torch's
    AveragedModel (what pomlab.diffusion.EMA subclassed before), load unchanged."""
    from torch.optim.swa_utils import AveragedModel

    from pomlab.diffusion import EMA
    old = TrainConfig.from_dict({"sample_cfg": 2.0, "sample_guidance": "authors", "steps": 5})
    assert (old.cfg, old.cfg_guidance, old.steps) == (2.0, "authors", 5)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    averaged = AveragedModel(model, use_buffers=True)
    averaged.update_parameters(model)
    averaged.update_parameters(model)
    ema = EMA(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)), decay=0.5)
    ema.load_state_dict(averaged.state_dict())
    assert ema.count == 2 and set(ema.state_dict()) == set(averaged.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(),
                                                 averaged.state_dict().values()))
