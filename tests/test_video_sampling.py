"""pomlab.video.sample: frame by frame through PoM's state == parallel block-causal sampling."""
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import pomlab
import pomlab.models as M
import pomlab.nn.pom as pom_module
from _models_helpers import randomize_
from pomlab.benchmark import peak_memory
from pomlab.data.text import TOY_VOCABULARY, Vocabulary
from pomlab.diffusion import FlowMatching, GaussianDiffusion
from pomlab.video import draw_noise, sample

F64 = torch.float64
CAPTIONS = ["a 3 moving left", "a 7 moving up"]


def random_model(depth=2, patch=4, **overrides):
    """A float64 micro video model with every weight random (gates included)."""
    return randomize_(M.create(f"VideoDiPoM-S/{patch}", scale="micro", depth=depth,
                               **overrides).double(), std=0.2)


@pytest.mark.parametrize("method,cfg", [("euler", 1.0), ("heun", 1.0), ("euler", 3.0),
                                        ("heun", 2.5)])
def test_frame_by_frame_equals_parallel_for_the_same_noise(method, cfg):
    model = random_model()
    runs = {mode: sample(model, CAPTIONS, frames=4, mode=mode, steps=3, cfg=cfg, method=method,
                         generator=torch.Generator().manual_seed(5))
            for mode in ("parallel", "sequential")}
    assert runs["parallel"].shape == (2, 4, 1, 16, 16) and runs["parallel"].dtype == F64
    # float64. The block-causal mean divides by (1e-7 + n) where step() divides by n: a
    # relative gap of 1e-7/n per layer, ~1e-8 on outputs of size ~5 (the test below removes it)
    torch.testing.assert_close(runs["sequential"], runs["parallel"], rtol=1e-6, atol=1e-6)
    assert runs["parallel"].std() > 0.1                           # not a trivial (zero) model


def test_frame_by_frame_is_exact_up_to_rounding_without_the_mask_eps(monkeypatch):
    """With eps = 0 in the masked mean (safe: a block-causal query always sees its own frame)
    both samplers compute the same sums in a different order: float64 rounding only. (cfg 1:
    the null caption's all-pad text would divide 0 by 0 without eps.)"""
    monkeypatch.setattr(pom_module, "EPS", 0.0)
    model = random_model(depth=3, patch=8)
    noise = draw_noise(model, 2, 5, torch.Generator().manual_seed(0))
    a = sample(model, CAPTIONS, 5, noise=noise, mode="parallel", steps=4)
    b = sample(model, CAPTIONS, 5, noise=noise, mode="sequential", steps=4)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-10)


def test_one_seed_gives_one_noise_in_both_modes():
    model = random_model(depth=1)
    noise = draw_noise(model, 2, 3, torch.Generator().manual_seed(11))
    assert noise.shape == (2, 3, 1, 16, 16) and noise.dtype == F64
    for mode in ("parallel", "sequential"):
        seeded = sample(model, CAPTIONS, 3, mode=mode, steps=2, method="euler",
                        generator=torch.Generator().manual_seed(11))
        given = sample(model, CAPTIONS, 3, noise=noise, mode=mode, steps=2, method="euler")
        assert torch.equal(seeded, given)
    other = sample(model, CAPTIONS, 3, mode="parallel", steps=2, method="euler",
                   generator=torch.Generator().manual_seed(12))
    assert not torch.allclose(other, given)


def test_the_process_time_shift_sets_the_grid_in_both_modes():
    """A model trained with a shifted flow (TrainConfig.shift) samples on the same warped grid."""
    model = random_model(depth=1)
    noise = draw_noise(model, 2, 3, torch.Generator().manual_seed(3))
    shifted = {mode: sample(model, CAPTIONS, 3, noise=noise, mode=mode, steps=3, method="euler",
                            process=FlowMatching(shift=0.5))
               for mode in ("parallel", "sequential")}
    # float64; the masked-mean eps gap of the test above
    torch.testing.assert_close(shifted["sequential"], shifted["parallel"], rtol=1e-6, atol=1e-6)
    plain = sample(model, CAPTIONS, 3, noise=noise, mode="parallel", steps=3, method="euler")
    assert not torch.allclose(plain, shifted["parallel"])
    assert torch.equal(plain, sample(model, CAPTIONS, 3, noise=noise, mode="parallel", steps=3,
                                     method="euler", process=FlowMatching()))
    with pytest.raises(TypeError, match="process must be a pomlab.diffusion.FlowMatching"):
        sample(model, CAPTIONS, 3, noise=noise, process=GaussianDiffusion())


def test_sampling_restores_training_mode_and_ignores_caption_dropout():
    model = random_model(depth=1, caption_dropout_prob=0.9).train()
    noise = draw_noise(model, 2, 2, torch.Generator().manual_seed(0))
    a = sample(model, CAPTIONS, 2, noise=noise, mode="parallel", steps=2, method="euler")
    b = sample(model, CAPTIONS, 2, noise=noise, mode="parallel", steps=2, method="euler")
    assert model.training and torch.equal(a, b)


def test_forward_and_step_never_read_values_back_to_the_host(monkeypatch):
    """No range check inside forward/step (a host sync per call): values are valid by
    construction at the entry points (sample's vocabulary and time grid, the trainer)."""
    model = random_model(depth=1)
    x, ids = torch.zeros(2, 2, 1, 16, 16, dtype=F64), torch.ones(2, 3, dtype=torch.long)

    def host_sync(*args, **kwargs):
        raise AssertionError("a value was read back to the host")

    for name in ("item", "tolist", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, host_sync)
    model(x, torch.tensor([0.5, 0.25], dtype=F64), ids)
    model.step(x[:, 0], torch.tensor([0.5, 0.25], dtype=F64), ids, 0)


def test_captions_change_the_clip_and_a_custom_vocabulary_works():
    model = random_model(depth=1)
    noise = draw_noise(model, 1, 2, torch.Generator().manual_seed(0))
    run = lambda caps: sample(model, caps, 2, noise=noise, mode="parallel", steps=2,
                              method="euler")
    assert not torch.allclose(run(["a 3 moving left"]), run(["a 3 moving right"]))
    words = Vocabulary([f"w{i}" for i in range(16)])             # same size as the toy one
    model.vocab = words
    assert torch.equal(run(["w2 w5 w1 w14"]), run(["a 3 moving left"][:0] or ["w2 w5 w1 w14"]))
    with pytest.raises(ValueError, match="unknown word 'a'"):
        run(["a 3 moving left"])
    model.vocab = Vocabulary(["x", "y"])
    with pytest.raises(ValueError, match="vocab_size 17 but its vocabulary has 3 words"):
        run(["x"])
    # vocab= overrides model.vocab and is held to the same size check
    assert torch.equal(sample(model, ["a 3 moving left"], 2, noise=noise, mode="parallel",
                              steps=2, method="euler", vocab=TOY_VOCABULARY),
                       sample(model, ["w0 w5 w1 w12"], 2, noise=noise, mode="parallel", steps=2,
                              method="euler", vocab=words))       # the same word ids 1 6 2 13
    with pytest.raises(ValueError, match="vocab_size 17 but its vocabulary has 3 words"):
        sample(model, ["x"], 2, noise=noise, vocab=Vocabulary(["x", "y"]))


def test_bad_requests_fail_clearly():
    model = random_model(depth=1)
    with pytest.raises(ValueError, match=r"caption 1 \('a 7 moving sideways'\) has the unknown "
                                         "word 'sideways'"):
        sample(model, ["a 3 moving left", "a 7 moving sideways"], 2)
    with pytest.raises(ValueError, match="frames must be >= 1, got 0"):
        sample(model, CAPTIONS, 0)
    with pytest.raises(TypeError, match="frames must be an int"):
        sample(model, CAPTIONS, 2.0)
    with pytest.raises(ValueError, match=r"noise must have shape \(captions, frames, C, H, W\) = "
                                         r"\(2, 3, 1, 16, 16\), got \(2, 2, 1, 16, 16\)"):
        sample(model, CAPTIONS, 3, noise=torch.randn(2, 2, 1, 16, 16, dtype=F64))
    with pytest.raises(ValueError, match="mode must be one of"):
        sample(model, CAPTIONS, 2, mode="causal")
    with pytest.raises(ValueError, match="method must be one of"):
        sample(model, CAPTIONS, 2, method="rk4")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sample(model, CAPTIONS, 2, steps=0)
    with pytest.raises(ValueError, match="cfg scale must be a finite number"):
        sample(model, CAPTIONS, 2, cfg=float("nan"))
    with pytest.raises(ValueError, match="needs the block-causal model"):
        sample(random_model(depth=1, causal=False), CAPTIONS, 2, mode="sequential")


def test_public_entry_point():
    assert pomlab.video.sample is sample


def test_cpu_peak_memory_sees_a_temporary():
    def make_and_drop():
        a = torch.ones(1_000_000)            # 4 MB; a.double() 8 MB; the product 8 MB more
        b = a.double() * 2
        return float(b[0])
    peak = peak_memory(make_and_drop, "cpu")
    assert 20_000_000 <= peak < 20_100_000


def test_video_memory_script_runs_at_paper_scale(tmp_path):
    """experiments/video_memory.py with a paper-scale model (32000-word vocabulary, not the toy)."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "experiments"))
    spec = importlib.util.spec_from_file_location("video_memory_cli",
                                                  root / "experiments" / "video_memory.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.main(["--scale", "paper", "--model", "VideoDiPoM-S/8", "--frames", "1", "--steps", "1",
              "--repeats", "1", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "video_memory.csv")
    assert list(table["mode"]) == ["sequential", "parallel"]
    assert (table.model == "VideoDiPoM-S/8 (paper)").all() and (table.peak_mib > 0).all()


def test_authors_guidance_w_is_standard_w_plus_one():
    model = random_model(depth=1)
    clips = [sample(model, CAPTIONS, frames=2, mode="parallel", steps=2, cfg=w, guidance=g,
                    generator=torch.Generator().manual_seed(2))
             for w, g in ((1.5, "authors"), (2.5, "standard"), (0.0, "authors"), (1.0, "standard"))]
    torch.testing.assert_close(clips[0], clips[1], rtol=0, atol=1e-12)    # float64
    torch.testing.assert_close(clips[2], clips[3], rtol=0, atol=1e-12)    # both: no guidance
    assert not torch.allclose(clips[0], clips[2])
