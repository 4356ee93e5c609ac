"""VideoTrainer (flow matching on whole clips, checkpoints with the vocabulary, exact resume)
and the caption-following measurement."""
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pomlab.benchmark import device_label
from pomlab.data.text import TOY_VOCABULARY, Vocabulary
from pomlab.data.toy_video import make_toy_videos
from pomlab.diffusion import FlowMatching
from pomlab.train import TrainConfig, load_checkpoint
from pomlab.video import VideoTrainer, load_video_model, sample
from pomlab.video.evaluate import caption_following, centre_of_mass, digit_crops, motion_directions


ROOT = Path(__file__).resolve().parents[1]


def tensorboard_events(run_folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_folder) / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return events


@pytest.fixture(scope="module")
def data():
    return make_toy_videos(32, frames=3, seed=0)


def config(out=None, **changes):
    base = dict(model="VideoDiPoM-S/8", scale="micro", model_overrides={"depth": 1}, steps=2,
                batch_size=8, lr=1e-3, out=None if out is None else str(out), log_every=1,
                sample_steps=2, sample_method="euler", samples_per_class=2, dataset="toy")
    return TrainConfig(**{**base, **changes})


def test_training_steps_run_on_whole_clips_and_write_checkpoints(data, tmp_path):
    trainer = VideoTrainer(config(tmp_path, shift=0.5), data, progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.run()
    assert result.step == 2 and torch.isfinite(torch.tensor(result.final_loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert trainer.model.vocab == TOY_VOCABULARY and trainer.model.causal
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["vocab"] == list(TOY_VOCABULARY.words[1:]) and ckpt["step"] == 2
    assert result.samples.is_file()                                   # the sample strip
    model, process, train_config, step = load_video_model(tmp_path)
    assert process.shift == 0.5            # the trained time shift comes back
    assert step == 2 and model.vocab == TOY_VOCABULARY and model.name == "VideoDiPoM-S/8"
    assert train_config.model == "VideoDiPoM-S/8" and model.vocab_size == 17
    clips = trainer.generate_for_captions(["a 1 moving up"], frames=2)    # model space
    assert clips.shape == (1, 2, 1, 16, 16) and clips.dtype == torch.float32
    with pytest.raises(TypeError, match="use generate_for_captions"):
        trainer.generate(torch.tensor([1]))


def test_resume_continues_exactly(data, tmp_path):
    straight = VideoTrainer(config(tmp_path / "a", steps=4, sample_at_end=False), data,
                            progress=False)
    straight.run()
    first = VideoTrainer(config(tmp_path / "b", steps=4, sample_at_end=False), data,
                         progress=False)
    first.run(until=2)
    resumed = VideoTrainer(config(tmp_path / "b", steps=4, sample_at_end=False), data,
                           progress=False, resume=True)
    assert resumed.step == 2
    resumed.run()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_samples_use_the_trained_time_shift(data):
    trainer = VideoTrainer(config(shift=0.5, steps=1), data, progress=False)
    assert trainer.process.shift == 0.5
    trainer.run()
    clips = trainer.generate_for_captions(["a 1 moving up"], frames=2, seed=3)
    expected = sample(trainer.ema.module, ["a 1 moving up"], 2, steps=2, method="euler",
                      generator=torch.Generator().manual_seed(3), process=FlowMatching(0.5))
    assert torch.equal(clips, expected)


def test_trainer_refuses_what_does_not_fit(data, tmp_path):
    with pytest.raises(ValueError, match="must be a video model name"):
        VideoTrainer(config(model="DiPoM-S/2"), data, progress=False)
    with pytest.raises(ValueError, match="config.loss must be 'flow' for video"):
        VideoTrainer(config(loss="diffusion"), data, progress=False)
    with pytest.raises(TypeError, match="must be a pomlab.data.video.VideoDataset"):
        VideoTrainer(config(), data.videos, progress=False)
    with pytest.raises(ValueError, match="model override in_channels=3 disagrees with the data"):
        VideoTrainer(config(model_overrides={"in_channels": 3}), data, progress=False)
    VideoTrainer(config(tmp_path, sample_at_end=False), data, progress=False).run()
    other = make_toy_videos(32, frames=3, seed=0)
    other.vocab = Vocabulary([f"w{i}" for i in range(16)])
    with pytest.raises(ValueError, match="another vocabulary"):
        VideoTrainer(config(tmp_path), other, progress=False, resume=True)


def test_caption_following_reads_real_clips_and_not_noise():
    real = make_toy_videos(40, frames=6, seed=2)
    table = caption_following(real.videos, real.captions)
    assert list(table.columns[:4]) == ["caption", "digit", "direction", "predicted_direction"]
    assert table["direction_correct"].mean() == 1.0
    assert table["digit_accuracy"].mean() >= 0.95          # the classifier on training digits
    noise = torch.rand(40, 6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    chance = caption_following(noise, real.captions)
    assert chance["digit_accuracy"].mean() < 0.4 and chance["direction_correct"].mean() < 0.6
    with pytest.raises(ValueError, match="captions must be a list of 40 toy captions"):
        caption_following(noise, real.captions[:3])


def test_centre_of_mass_crops_and_directions():
    frames = torch.zeros(2, 3, 1, 16, 16)
    for f in range(3):
        frames[0, f, 0, 4:8, 2 + 3 * f: 6 + 3 * f] = 1.0              # moves right
        frames[1, f, 0, 10 - 3 * f: 14 - 3 * f, 8:12] = 1.0           # moves up
    com = centre_of_mass(frames[:, :, 0])
    torch.testing.assert_close(com[0, 0], torch.tensor([5.5, 3.5]))
    assert motion_directions(frames) == ["right", "up"]
    assert torch.equal(centre_of_mass(torch.zeros(16, 16)), torch.tensor([7.5, 7.5]))
    # computed on the frames' device (meta stands in for CUDA: no mixing with CPU tensors)
    assert centre_of_mass(torch.zeros(2, 16, 16, device="meta")).device.type == "meta"
    crops = digit_crops(frames)
    assert crops.shape == (6, 1, 16, 16) and crops.amax((1, 2, 3)).min() == 1.0


def test_video_experiment_trains_evaluates_and_writes_its_files(tmp_path):
    """experiments/video.py end to end at toy size: labelled CSVs, strips and GIFs."""
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("video_cli", ROOT / "experiments" / "video.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    tensorboard = importlib.util.find_spec("tensorboard") is not None     # an optional extra
    cli.main(["--out", str(tmp_path), "--model", "VideoDiPoM-S/8", "--model-overrides", "depth=1",
              "--steps", "2", "--num-videos", "16", "--batch-size", "8", "--frames", "2",
              "--clips-per-caption", "1", "--sample-steps", "1", "--ckpt-every", "0",
              "--logger", "tensorboard" if tensorboard else "csv", "--no-progress"])
    assert load_checkpoint(tmp_path)["train_config"]["model_overrides"] == {"depth": 1}
    if tensorboard:
        assert "samples" in tensorboard_events(tmp_path).Tags()["images"]
    table = pd.read_csv(tmp_path / "caption_following.csv")
    # trained: 2 cfgs x 2 modes; untrained; real
    assert len(table) == 6 * 40 and set(table.variant) == {"trained", "untrained", "real"}
    trained = table[table.variant == "trained"].set_index(["mode", "cfg", "caption"])
    assert set(trained.index.get_level_values("mode")) == {"sequential", "parallel"}
    # one noise, one clip (to ~1e-6: a crop's rounding may flip a frame): the modes measure alike
    gap = (trained.loc["sequential"][["digit_accuracy", "motion_error_px"]]
           - trained.loc["parallel"][["digit_accuracy", "motion_error_px"]]).abs().mean()
    assert (gap < 0.05).all(), gap
    # labelled with the device the trainer picked (TrainConfig.device "auto")
    assert set(table.device) == {device_label("cuda:0" if torch.cuda.is_available() else "cpu")}
    assert (table[table.variant == "real"].direction_correct == 1.0).all()
    assert (table[table.variant == "real"].motion_error_px < 1e-9).all()
    summary = json.loads((tmp_path / "caption_following_summary.json").read_text())
    assert len(summary["summary"]) == 6 and summary["summary"][0]["train_steps"] == 2
    assert summary["wall_seconds_this_call"] >= summary["train_seconds_this_call"] > 0
    assert len(list((tmp_path / "strips").glob("*.png"))) == 40
    assert len(list((tmp_path / "gifs").glob("*.gif"))) == 41          # + captions.gif


def test_video_cli_takes_model_overrides_by_the_train_name_and_the_old_alias(experiment_script):
    cli = experiment_script("video")
    for flag in ("--model-overrides", "--override"):
        args = cli.parse_args(["--out", "x", flag, "depth=2", flag, "text_modulation=True"])
        assert args.model_overrides == {"depth": 2, "text_modulation": True}
    assert cli.parse_args(["--out", "x"]).model_overrides == {}
    assert cli.parse_args(["--out", "x"]).logger == "csv"


def test_video_trainer_sends_its_sample_strips_to_tensorboard(data, tmp_path):
    pytest.importorskip("tensorboard")
    trainer = VideoTrainer(config(tmp_path, logger="tensorboard", sample_every=1), data,
                           progress=False)
    result = trainer.run()
    trainer.close()
    events = tensorboard_events(tmp_path)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    strips = events.Images("samples")
    assert [e.step for e in strips] == [1, 2]                # one strip per sampling step
    png = Image.open(result.samples)                         # the same strip as the PNG
    assert (strips[-1].width, strips[-1].height) == png.size
    decoded = Image.open(io.BytesIO(strips[-1].encoded_image_string))
    assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(png.convert("RGB")))
