"""Video DiPoM: registry names, contract, initialisation, block-causality, step() == forward."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pomlab.models as M
from _models_helpers import randomize_
from pomlab.models.video import sincos_3d

F64 = torch.float64


def video_inputs(model, batch=2, frames=3, words=4, dtype=torch.float32):
    side = model.input_size
    x = torch.randn(batch, frames, model.in_channels, side, side, dtype=dtype)
    t = torch.rand(batch, dtype=dtype)
    text = torch.randint(1, model.vocab_size, (batch, words))
    text[0, words - 1:] = 0                          # some padding
    return x, t, text


def split_name(name):
    """"VideoDiPoM-XL/4" -> ("XL", 4)."""
    size, patch = name.split("-")[1].split("/")
    return size, int(patch)


def tiny(name="VideoDiPoM-S/4", **overrides):
    return M.create(name, scale="micro", **overrides)


# --- registry ------------------------------------------------------------------------------

def test_names_keep_24_images_and_add_12_videos():
    assert len(M.names()) == 24 and not any(n.startswith("Video") for n in M.names())
    videos = M.video_names()
    assert len(videos) == len(set(videos)) == 12 and M.all_names() == M.names() + videos
    assert {f"VideoDiPoM-{s}/{p}" for s in ("S", "B", "L", "XL") for p in (2, 4, 8)} == set(videos)


@pytest.mark.parametrize("bad", ["VideoDiPoM-S/3", "VideoDiT-S/2", "videodipom-S/2"])
def test_unknown_video_name_lists_valid_ones(bad):
    with pytest.raises(ValueError, match="valid names: DiT-S/2.*DiPoM-XL/8.*VideoDiPoM-XL/8"):
        M.create(bad, scale="micro")


def test_unknown_override_names_the_video_keys():
    with pytest.raises(TypeError, match="unknown override 'num_classes'.*valid overrides: "
                                        "input_size.*vocab_size"):
        tiny(num_classes=3)
    with pytest.raises(ValueError, match="input_size 18 is not divisible by patch_size 4"):
        tiny(input_size=18)
    with pytest.raises(ValueError, match="hidden_size must be divisible by 4"):
        tiny(hidden_size=30)


@pytest.mark.parametrize("name", M.video_names())
def test_every_micro_video_model_builds_and_runs(name):
    model = M.create(name, scale="micro")
    size, patch = split_name(name)
    assert (model.name, model.scale, model.size, model.patch_size, model.family) == \
        (name, "micro", size, patch, "VideoDiPoM")
    assert (model.input_size, model.in_channels, model.num_frames, model.latent_scale) == (16, 1, 8, 1)
    assert model.label == f"{name} (micro)" and model.causal
    assert model.hidden_size == M.registry.MICRO_SIZES[size]["hidden_size"]
    x, t, text = video_inputs(model, frames=2)
    assert model(x, t, text).shape == x.shape


@pytest.mark.parametrize("name", ["VideoDiPoM-S/2", "VideoDiPoM-XL/8"])
def test_paper_scale_has_paper_width(name):
    size, patch = split_name(name)
    model = M.create(name, depth=1, input_size=2 * patch, vocab_size=50)
    assert model.hidden_size == M.registry.PAPER_SIZES[size]["hidden_size"]
    assert (model.in_channels, model.latent_scale, model.num_frames) == (4, 8, 16)
    assert model.label == f"{name} (paper, input_size={2 * patch}, vocab_size=50, depth=1)"
    x, t, text = video_inputs(model, batch=1, frames=2)
    assert model(x, t, text).shape == x.shape


def test_config_rebuilds_the_same_architecture():
    model = tiny(depth=2, causal=False, degree=3)
    again = M.create(**model.config)
    assert again.config == model.config and again.label == model.label
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    assert not again.causal and again.blocks[0].self_mixer.degree == 3


def test_fresh_model_outputs_zero_and_blocks_are_identity():
    """AdaLN-Zero: zero-initialised modulations and final layer."""
    model = tiny()
    x, t, text = video_inputs(model)
    assert torch.count_nonzero(model(x, t, text)) == 0
    for block in model.blocks:
        assert torch.count_nonzero(block.adaLN_modulation[-1].weight) == 0


# --- positions ---------------------------------------------------------------------------

def test_sincos_3d_frame_slices_match_the_whole_table():
    whole = sincos_3d(32, 5, 3, 4)
    assert whole.shape == (5 * 12, 32) and whole.dtype == F64
    for f in range(5):
        assert torch.equal(sincos_3d(32, 1, 3, 4, first_frame=f), whole[f * 12:(f + 1) * 12])
    assert torch.unique(whole, dim=0).shape[0] == 60              # every token has its own code
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_3d(30, 2, 2, 2)


def test_positions_come_from_one_table_inside_the_default_clip_and_beyond_it():
    model = tiny(num_frames=3).double()                     # 16 tokens per frame at patch 4
    assert "pos_embed" not in model.state_dict()            # fixed: not in checkpoints
    for frames, first in [(3, 0), (1, 2), (2, 1), (4, 0), (1, 5)]:   # the last two: beyond it
        torch.testing.assert_close(model.positions(frames, 4, 4, first),
                                   sincos_3d(32, frames, 4, 4, first)[None], rtol=0, atol=0)
    torch.testing.assert_close(model.positions(2, 2, 3), sincos_3d(32, 2, 2, 3)[None],
                               rtol=0, atol=0)                     # another frame size
    # a clip longer than num_frames: forward and step agree (float64, the eps gap below)
    model = randomize_(tiny(num_frames=2, depth=1).double(), std=0.2).eval()
    x, t, text = video_inputs(model, frames=4, dtype=F64)
    states, outs = None, []
    for f in range(4):
        out, states = model.step(x[:, f], t, text, f, states)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), model(x, t, text), rtol=1e-6, atol=1e-6)


# --- causality and the frame-by-frame path -------------------------------------------------

@settings(max_examples=6)
@given(frames=st.integers(1, 4), patch=st.sampled_from([4, 8]), seed=st.integers(0, 2**16))
def test_step_frame_by_frame_equals_block_causal_forward(frames, patch, seed):
    torch.manual_seed(seed)
    model = randomize_(tiny(f"VideoDiPoM-S/{patch}", depth=2).double(), std=0.2).eval()
    x, t, text = video_inputs(model, frames=frames, dtype=F64)
    parallel = model(x, t, text)
    states, outs = None, []
    for f in range(frames):
        out, states = model.step(x[:, f], t, text, f, states)
        outs.append(out)
        assert len(states) == model.depth and states[0].n == (f + 1) * (16 // patch) ** 2
    # float64; the masked mean divides by (1e-7 + n) and step by n, a relative 1e-7/n gap
    torch.testing.assert_close(torch.stack(outs, 1), parallel, rtol=1e-6, atol=1e-6)


def test_block_causal_frames_ignore_the_future_and_full_model_does_not():
    model = randomize_(tiny(depth=2).double(), std=0.2).eval()
    x, t, text = video_inputs(model, frames=4, dtype=F64)
    later = x.clone()
    later[:, 2:] = torch.randn_like(later[:, 2:])
    a, b = model(x, t, text), model(later, t, text)
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 2:], b[:, 2:])
    full = randomize_(tiny(depth=2, causal=False).double(), std=0.2).eval()
    assert not torch.allclose(full(x, t, text)[:, :2], full(later, t, text)[:, :2])
    with pytest.raises(ValueError, match="needs the block-causal model"):
        full.step(x[:, 0], t, text, 0)


def test_text_conditions_the_output_and_padding_is_ignored():
    model = randomize_(tiny(depth=2).double(), std=0.2).eval()
    x, t, text = video_inputs(model, dtype=F64)
    padded = torch.cat([text, torch.zeros_like(text)], dim=1)     # extra pads change nothing
    torch.testing.assert_close(model(x, t, padded), model(x, t, text), rtol=0, atol=1e-12)
    other = text.clone()
    other[:, 1] = (other[:, 1] % (model.vocab_size - 1)) + 1
    other[:, 1] = torch.where(other[:, 1] == text[:, 1], 1 + other[:, 1] % 3, other[:, 1])
    assert not torch.allclose(model(x, t, other), model(x, t, text))
    null = torch.zeros_like(text)                                # the null caption: finite output
    assert torch.isfinite(model(x, t, null)).all()


def test_caption_dropout_only_in_training():
    model = randomize_(tiny(caption_dropout_prob=0.5), std=0.2)
    x, t, text = video_inputs(model, batch=64, frames=1)
    model.eval()
    assert torch.equal(model(x, t, text), model(x, t, text))
    null_out = model(x, t, torch.zeros_like(text))
    model.train()
    out = model(x, t, text)
    dropped = torch.isclose(out, null_out).flatten(1).all(1)
    assert 10 < int(dropped.sum()) < 54                          # ~Binomial(64, 0.5)


# --- bad inputs ----------------------------------------------------------------------------

def test_bad_inputs_fail_clearly():
    model = tiny()
    x, t, text = video_inputs(model)
    with pytest.raises(TypeError, match=r"x must be a float tensor \(batch, frames"):
        model(x[:, 0], t, text)
    with pytest.raises(ValueError, match="x has 3 channels, expected in_channels=1"):
        model(x.repeat(1, 1, 3, 1, 1), t, text)
    # (values - t in [0, 1], ids < vocab_size - are the entry points' to check: no host sync here)
    with pytest.raises(TypeError, match="text must be an int64 tensor"):
        model(x, t, text.float())
    with pytest.raises(ValueError, match=r"text must have shape \(2, words >= 1\)"):
        model(x, t, text[:1])
    _, states = model.step(x[:, 0], t, text, 0)
    with pytest.raises(ValueError, match="frame_index 2 does not follow the states"):
        model.step(x[:, 1], t, text, 2, states)
    with pytest.raises(ValueError, match="first frame"):
        model.step(x[:, 1], t, text, 1, None)
    with pytest.raises(ValueError, match="list of 3 PoMStates"):
        model.step(x[:, 1], t, text, 1, states[:1])
