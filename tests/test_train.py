"""The training loop: learning on the digits, exact resume, DDP through torchrun, bad input."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pomlab.data import TensorImageDataset, from_model_range, load_digits
from pomlab.train import (NonFiniteLossError, TrainConfig, Trainer, list_checkpoints,
                          load_checkpoint, load_trained, train)

ROOT = Path(__file__).resolve().parents[1]


def tiny(out=None, **kw):
    """A one-block micro DiPoM on 8x8 digits: a few milliseconds per step."""
    base = dict(model="DiPoM-S/2", scale="micro", model_overrides={"depth": 1},
                image_size=8, batch_size=8, steps=4, log_every=2, lr=1e-3, sample_steps=2,
                samples_per_class=1, out=str(out) if out else None)
    base.update(kw)
    return TrainConfig(**base)


def states_equal(a, b) -> bool:
    """Bitwise equality of nested checkpoint pieces (tensors, dicts, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_micro_dipom_learns_the_digits_and_its_samples_follow_the_class():
    from sklearn.linear_model import LogisticRegression

    config = TrainConfig(model="DiPoM-S/2", scale="micro", steps=300, batch_size=16, lr=1e-2,
                         warmup=20, log_every=25, sample_at_end=False, seed=0)
    trainer = Trainer(config, progress=False)
    result = trainer.run()
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    print(f"flow loss: steps 1-25 {first:.3f} -> steps 276-300 {last:.3f}")
    assert last < 0.55 * first                    # measured 1.09 -> 0.38
    # A digits classifier (logistic regression, 96% on the held-out split) reads the samples.
    x, y = load_digits("train", 16)
    clf = LogisticRegression(max_iter=2000).fit(x.flatten(1).numpy(), y.numpy())
    labels = torch.arange(10).repeat_interleave(20)
    accuracy = {}
    for cfg in (1.0, 4.0):                        # EMA weights, the same noise for every class
        samples = from_model_range(trainer.generate(labels, steps=20, cfg=cfg, seed=1))
        assert samples.shape == (200, 1, 16, 16) and 0 <= samples.min() and samples.max() <= 1
        accuracy[cfg] = clf.score(samples.flatten(1).numpy(), labels.numpy())
    print(f"classifier accuracy on class-conditional samples (chance 0.10): {accuracy}")
    assert accuracy[1.0] > 0.3 and accuracy[4.0] > 0.5     # measured 0.73 and 0.90


@pytest.mark.parametrize("loss, use_folder", [("flow", False), ("diffusion", True)])
def test_straight_run_equals_half_run_plus_resume_bitwise(tmp_path, loss, use_folder,
                                                          image_folder):
    extra = dict(dataset="folder", data_path=str(image_folder), channels=1) if use_folder else {}
    straight = train(tiny(tmp_path / "a", steps=6, loss=loss, ckpt_every=2, **extra),
                     progress=False)
    first = Trainer(tiny(tmp_path / "b", steps=6, loss=loss, **extra), progress=False)
    first.run(until=3)
    first.close()
    second = Trainer(tiny(tmp_path / "b", steps=6, loss=loss, **extra), resume=True, progress=False)
    assert second.step == 3
    resumed = second.run()
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    # CPU, same thread count: the resumed run repeats the same float operations, so bitwise
    for key in ("model", "ema", "optimizer", "rng", "sampler", "step"):
        assert states_equal(a[key], b[key]), key
    # logging rows cover the same steps at 2 and 6 (the split run also logs at its stop, 3)
    loss_at = lambda ckpt: {r["step"]: r["loss"] for r in ckpt["history"]}
    assert [loss_at(a)[s] for s in (2, 6)] == [loss_at(b)[s] for s in (2, 6)]
    assert len(list_checkpoints(tmp_path / "a")) == 2              # keep_checkpoints=2
    assert (tmp_path / "b" / "metrics.csv").is_file() and (tmp_path / "b" / "samples").is_dir()


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image
    root = tmp_path / "images"
    g = torch.Generator().manual_seed(0)
    for c in range(3):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(6):
            pixels = (torch.rand(10 + i, 12, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


def test_two_process_gloo_run_has_identical_replicas(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 4
    assert states_equal(r0["model"], r1["model"]) and states_equal(r0["ema"], r1["ema"])
    assert not set(r0["seen"].tolist()) & set(r1["seen"].tolist())    # disjoint data shards
    ckpt = load_checkpoint(tmp_path)                                  # written once, by rank 0
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004.pt"]
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert states_equal(ckpt["model"], r0["model"])
    assert r0["model"]["final_layer.linear.weight"].abs().sum() > 0   # it did train


def test_replica_check_names_the_parameter_that_differs():
    trainer = Trainer(tiny(), progress=False)
    trainer.check_replicas()                              # one process: nothing to compare
    first = next(iter(trainer.model.named_parameters()))[0]
    # two "ranks" (the gather replaced): equal summaries pass, rank 1 off in one tensor fails
    trainer._gather = lambda summary: [summary, summary.clone()]
    trainer.check_replicas()
    trainer._gather = lambda summary: [summary, summary.clone().index_fill_(0, torch.tensor([0]), 7.0)]
    with pytest.raises(RuntimeError, match=f"rank 1's {re.escape(first)} differs"):
        trainer.check_replicas()


def test_cli_trains_samples_and_resumes(tmp_path):
    spec = importlib.util.spec_from_file_location("train_cli", ROOT / "experiments" / "train.py")
    sys.path.insert(0, str(ROOT / "experiments"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = ["--model", "DiT-S/4", "--scale", "micro", "--dataset", "digits", "--image-size", "8",
            "--model-overrides", "depth=1", "--batch-size", "8",
            "--steps", "3", "--log-every", "1", "--sample-steps", "2", "--samples-per-class", "2",
            "--loss", "diffusion", "--out", str(tmp_path), "--no-progress", "--seed", "3"]
    result = cli.main(args)
    assert result.step == 3 and (tmp_path / "samples" / "step_00000003.png").is_file()
    from PIL import Image
    assert Image.open(result.samples).size[1] > Image.open(result.samples).size[0]  # 10 rows x 2
    args[args.index("--steps") + 1] = "5"
    again = cli.main(args + ["--resume"])
    assert again.step == 5 and len(again.history) == 5
    model, process, config, step = load_trained(tmp_path)
    assert step == 5 and config.seed == 3 and model.name == "DiT-S/4" and process.kind == "diffusion"
    with pytest.raises(FileExistsError, match="resume"):
        cli.main(args)                       # never silently restarts over an existing run


# --- bad input ------------------------------------------------------------------------------

def test_checkpoint_from_another_model_is_refused(tmp_path):
    train(tiny(tmp_path, steps=2), progress=False)
    with pytest.raises(ValueError, match="another model"):
        Trainer(tiny(tmp_path, steps=2, model="DiT-S/2"), resume=True, progress=False)
    with pytest.raises(ValueError, match="another model"):
        Trainer(tiny(tmp_path, steps=2, model_overrides={"depth": 2}),
                resume=True, progress=False)


def test_truncated_or_foreign_checkpoint_gives_a_clear_error(tmp_path, capfd):
    result = train(tiny(tmp_path, steps=2), progress=False)
    data = result.checkpoint.read_bytes()
    result.checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(tmp_path)
    # resuming skips it (renamed *.corrupt, reported) and uses the one before: none here
    resumed = Trainer(tiny(tmp_path, steps=4), resume=True, progress=False)
    assert resumed.step == 0 and not list_checkpoints(tmp_path)
    assert result.checkpoint.with_name(result.checkpoint.name + ".corrupt").exists()
    assert "truncated or corrupt" in capfd.readouterr().err
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a pomlab training checkpoint"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_non_finite_loss_stops_without_touching_the_last_good_checkpoint(tmp_path):
    good = train(tiny(tmp_path, steps=2), progress=False)
    before = good.checkpoint.read_bytes()
    images, labels = load_digits("train", 8)
    images[::7] = float("nan")
    poisoned = TensorImageDataset(images, labels, 10, "digits with NaN")
    trainer = Trainer(tiny(tmp_path, steps=6), dataset=poisoned, resume=True, progress=False)
    with pytest.raises(NonFiniteLossError, match="NaN/inf.*step_00000002.pt"):
        trainer.run()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002.pt"]
    assert good.checkpoint.read_bytes() == before
    with torch.no_grad():                       # and broken weights are never written
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="not finite"):
        trainer.save_checkpoint()
    assert good.checkpoint.read_bytes() == before


def test_empty_image_folder_and_bad_config(tmp_path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        Trainer(tiny(dataset="folder", data_path=str(tmp_path / "empty")), progress=False)
    for field, value in [("batch_size", 0), ("lr", -1.0), ("precision", "fp8"), ("shift", -2.0),
                         ("steps", 1.5)]:
        with pytest.raises(ValueError, match=field):
            Trainer(tiny(**{field: value}), progress=False)
    with pytest.raises(ValueError, match="loss"):
        Trainer(tiny(loss="score"), progress=False)
    with pytest.raises(ValueError, match="shift applies"):
        Trainer(tiny(loss="diffusion", shift="auto"), progress=False)
    with pytest.raises(ValueError, match="smaller than one batch"):
        Trainer(tiny(batch_size=4096), progress=False)
    with pytest.raises(ValueError, match="disagrees with the dataset"):
        Trainer(tiny(model_overrides={"in_channels": 3}), progress=False)
