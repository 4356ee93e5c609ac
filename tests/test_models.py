"""DiT / DiPoM backbone and registry: construction, contract, initialisation, symmetry, errors."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import pomlab.models as M
from pomlab.diffusion import FlowMatching, GaussianDiffusion
from _models_helpers import randomize_
from pomlab.models.backbone import patchify, sincos_2d, timestep_embedding, unpatchify

F64 = torch.float64


def inputs(model, batch=2, side=None, dtype=torch.float32):
    side = model.input_size if side is None else side
    x = torch.randn(batch, model.in_channels, side, side, dtype=dtype)
    t = torch.rand(batch, dtype=dtype)
    y = torch.randint(0, model.num_classes + 1, (batch,))
    return x, t, y


# --- registry ------------------------------------------------------------------------------

def test_names_are_the_24_models():
    names = M.names()
    assert len(names) == len(set(names)) == 24
    for family in ("DiT", "DiPoM"):
        for size in ("S", "B", "L", "XL"):
            for patch in (2, 4, 8):
                assert f"{family}-{size}/{patch}" in names


@pytest.mark.parametrize("bad", ["DiT-XXL/2", "DiT-S/3", "dipom-S/2", "DiPoM-S", "", 7])
def test_unknown_name_lists_valid_ones(bad):
    with pytest.raises(ValueError, match="valid names: DiT-S/2.*DiPoM-XL/8"):
        M.create(bad)


def test_unknown_scale_and_override_fail_clearly():
    with pytest.raises(ValueError, match="scale must be one of"):
        M.create("DiT-S/2", scale="tiny")
    with pytest.raises(TypeError, match="'degree'.*DiPoM models only"):
        M.create("DiT-S/2", scale="micro", degree=3)
    with pytest.raises(TypeError, match="'num_heads'.*DiT models only"):
        M.create("DiPoM-S/2", scale="micro", num_heads=3)
    with pytest.raises(TypeError, match="unknown override 'patch_size'"):
        M.create("DiPoM-S/2", scale="micro", patch_size=4)
    with pytest.raises(ValueError, match="input_size 15 is not divisible by patch_size 2"):
        M.create("DiPoM-S/2", scale="micro", input_size=15)


def test_registered_family_dispatches(monkeypatch):
    monkeypatch.setattr(M.registry, "_EXTERNAL", {})
    built = []
    M.register_family("ToyDiPoM", lambda name, scale, **over: built.append((name, scale, over)),
                      ["ToyDiPoM-S/2"])
    M.create("ToyDiPoM-S/2", scale="micro", depth=1)
    assert built == [("ToyDiPoM-S/2", "micro", {"depth": 1})]
    assert M.names() == M.all_names()[:24] and M.all_names()[24:] == ["ToyDiPoM-S/2"]
    with pytest.raises(ValueError, match="valid names: .*ToyDiPoM-S/2"):
        M.create("ToyDiPoM-XL/2")
    with pytest.raises(ValueError, match="built in"):
        M.register_family("DiT", lambda *a, **k: None, [])


@pytest.mark.parametrize("name", M.names())
def test_every_micro_model_builds_and_runs(name):
    model = M.create(name, scale="micro")
    family, size, patch = M.parse_name(name)
    assert (model.name, model.scale, model.size, model.patch_size) == (name, "micro", size, patch)
    assert model.mixer == ("mha" if family == "DiT" else "pom")
    assert (model.input_size, model.in_channels, model.num_classes) == (16, 1, 10)
    assert model.latent_scale == 1 and model.out_channels == 1
    assert model.label == f"{name} (micro)"
    x, t, y = inputs(model)
    assert model(x, t, y).shape == x.shape


@pytest.mark.parametrize("name", M.names())
def test_every_paper_model_runs_at_paper_width(name):
    """Paper width and mixer settings, cut to one block and 2x2 tokens to stay cheap."""
    family, size, patch = M.parse_name(name)
    model = M.create(name, depth=1, input_size=2 * patch, learn_sigma=True)
    assert model.hidden_size == M.registry.PAPER_SIZES[size]["hidden_size"]
    assert (model.scale, model.latent_scale, model.in_channels, model.num_classes) == \
        ("paper", 8, 4, 1000)
    assert model.out_channels == 8 and "depth=1" in model.label and "paper" in model.label
    x, t, y = inputs(model, batch=1)
    assert model(x, t, y).shape == (1, 8, 2 * patch, 2 * patch)


def test_paper_defaults_on_meta_device():
    with torch.device("meta"):
        dit, dipom = M.create("DiT-XL/2"), M.create("DiPoM-L/4")
    assert (dit.input_size, dit.in_channels, dit.num_classes, dit.depth, dit.hidden_size) == \
        (32, 4, 1000, 28, 1152)
    assert dit.blocks[0].mixer.heads == 16 and dit.blocks[0].mlp.fc1.out_features == 4 * 1152
    pom = dipom.blocks[0].mixer
    assert (pom.degree, pom.expand, pom.polynomial) == (2, 2, "products")
    assert dipom.blocks[0].mlp.fc1.out_features == 2 * 1024      # MLP ratio 2 for L and XL
    with torch.device("meta"):
        assert M.create("DiPoM-B/2").blocks[0].mlp.fc1.out_features == 3 * 768


@pytest.mark.parametrize("name", ["DiT-B/4", "DiPoM-S/8"])
def test_config_rebuilds_the_same_architecture(name):
    over = {"depth": 2, "learn_sigma": True, "num_classes": 7}
    if name.startswith("DiPoM"):
        over.update(degree=3, expand=1, polynomial="powers")
    model = M.create(name, scale="micro", **over)
    config = json.loads(json.dumps(model.config))            # JSON-serialisable
    rebuilt = M.create(**config)
    assert rebuilt.label == model.label and rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    if name.startswith("DiPoM"):
        assert rebuilt.blocks[0].mixer.config == (model.hidden_size, 3, 1, "powers")


# --- initialisation and structure -----------------------------------------------------------

@pytest.mark.parametrize("name", ["DiT-S/2", "DiPoM-B/4"])
@pytest.mark.parametrize("learn_sigma", [False, True])
def test_fresh_model_outputs_exactly_zero(name, learn_sigma):
    model = M.create(name, scale="micro", learn_sigma=learn_sigma)
    x, t, y = inputs(model, batch=3)
    out = model(x, t, y)
    assert out.shape[1] == (2 if learn_sigma else 1)
    assert torch.equal(out, torch.zeros_like(out))
    for block in model.blocks:                                # AdaLN-Zero: every gate is zero
        assert not block.adaLN_modulation[-1].weight.any()
        assert not block.adaLN_modulation[-1].bias.any()


def test_initialisation_follows_dit():
    model = M.create("DiPoM-S/2", scale="micro")
    w = model.t_embedder.mlp[0].weight
    assert abs(w.std().item() - 0.02) < 0.004                 # normal(0, 0.02), 8192 draws
    fc1 = model.blocks[0].mlp.fc1.weight
    bound = (6 / (fc1.shape[0] + fc1.shape[1])) ** 0.5         # xavier-uniform bound
    assert fc1.abs().max() <= bound and fc1.abs().max() > 0.9 * bound
    for lin in (model.blocks[0].mixer.poly, model.blocks[0].mixer.gate, model.blocks[0].mixer.out):
        assert not lin.bias.any()
        assert lin.weight.abs().max() <= (6 / sum(lin.weight.shape)) ** 0.5
    assert model.y_embedder.embedding_table.num_embeddings == 11   # + the null class


@pytest.mark.parametrize("size", ["S", "B", "L", "XL"])
@pytest.mark.parametrize("scale", ["paper", "micro"])
def test_dit_and_dipom_share_every_name_outside_the_mixer(size, scale):
    with torch.device("meta"):
        dit, dipom = M.create(f"DiT-{size}/2", scale), M.create(f"DiPoM-{size}/2", scale)

    def names(model):
        return {n for n, _ in model.named_parameters() if ".mixer." not in n}

    assert names(dit) == names(dipom)
    mixer_names = {n.split(".mixer.")[1] for n, _ in dipom.named_parameters() if ".mixer." in n}
    assert mixer_names == {"poly.weight", "poly.bias", "gate.weight", "gate.bias",
                           "out.weight", "out.bias"}
    assert {n.split(".mixer.")[1] for n, _ in dit.named_parameters() if ".mixer." in n} == \
        {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}


# --- positions, patches, time ---------------------------------------------------------------

def dit_numpy_pos_embed(dim, grid):
    """DiT/MAE's get_2d_sincos_pos_embed, written out in numpy."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    g = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    g = np.stack(g, axis=0).reshape(2, 1, grid, grid)
    return np.concatenate([one_d(dim // 2, g[0]), one_d(dim // 2, g[1])], axis=1)


@pytest.mark.parametrize("dim,grid", [(384, 16), (32, 8), (1152, 4)])
def test_positions_match_dit(dim, grid):
    np.testing.assert_allclose(sincos_2d(dim, grid, grid).numpy(),
                               dit_numpy_pos_embed(dim, grid), rtol=0, atol=1e-12)


def test_model_holds_fixed_positions_and_accepts_other_sizes():
    model = randomize_(M.create("DiPoM-S/4", scale="micro")).double()
    assert "pos_embed" not in dict(model.named_parameters())      # fixed, not trained
    torch.testing.assert_close(model.pos_embed[0], sincos_2d(32, 4, 4).to(F64))
    model.eval()
    x, t, y = inputs(model, side=24, dtype=F64)                    # 6x6 tokens, fresh positions
    assert model(x, t, y).shape == x.shape


def test_timestep_embedder_uses_1000_t():
    model = M.create("DiT-S/2", scale="micro")
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = timestep_embedding(1000 * t, 256)
    torch.testing.assert_close(model.t_embedder(t), model.t_embedder.mlp(emb))
    # [cos, sin] with 10000^(-i/128) frequencies
    torch.testing.assert_close(emb[1, :128], torch.cos(250.0 * 10000 ** (-torch.arange(128) / 128)))


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 4))
def test_unpatchify_inverts_patchify(b, c, p, rows, cols):
    x = torch.randn(b, c, rows * p, cols * p, dtype=F64)
    tokens = patchify(x, p)
    assert tokens.shape == (b, rows * cols, p * p * c)
    assert torch.equal(unpatchify(tokens, p, c, rows, cols), x)


def test_patch_embedding_sees_patchify_tokens():
    """PatchEmbed (a strided Conv2d) is a Linear on patchify's tokens in the same order."""
    model = M.create("DiT-S/4", scale="micro").double()
    x = torch.randn(2, 1, 16, 16, dtype=F64)
    w = model.x_embedder.proj.weight                           # (D, C, p, p)
    expected = patchify(x, 4) @ w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).T \
        + model.x_embedder.proj.bias
    torch.testing.assert_close(model.x_embedder(x), expected)


# --- symmetry and conditioning --------------------------------------------------------------

def permute_patches(x, p, perm):
    rows, cols = x.shape[2] // p, x.shape[3] // p
    return unpatchify(patchify(x, p)[:, perm], p, x.shape[1], rows, cols)


@given(family=st.sampled_from(["DiT", "DiPoM"]), patch=st.sampled_from([2, 4]),
       seed=st.integers(0, 2**16))
def test_trunk_is_permutation_equivariant_without_positions(family, patch, seed):
    torch.manual_seed(seed)
    model = randomize_(M.create(f"{family}-S/{patch}", scale="micro", depth=2)).double().eval()
    x, t, y = inputs(model, dtype=F64)
    n = (16 // patch) ** 2
    perm = torch.randperm(n)
    out = model.forward_tokens(x, t, y, add_positions=False)
    out_perm = model.forward_tokens(permute_patches(x, patch, perm), t, y, add_positions=False)
    # float64 through two blocks: only rounding separates the two orders of summation
    torch.testing.assert_close(out_perm, out[:, perm], rtol=1e-10, atol=1e-10)
    # the positions are what breaks the symmetry
    with_pos = model.forward_tokens(permute_patches(x, patch, perm), t, y)
    if not torch.equal(perm, torch.arange(n)):
        assert not torch.allclose(with_pos, model.forward_tokens(x, t, y)[:, perm])


@pytest.mark.parametrize("family", ["DiT", "DiPoM"])
def test_class_and_time_change_the_output_once_weights_are_nonzero(family):
    model = M.create(f"{family}-S/2", scale="micro").double().eval()
    x, t, y = inputs(model, batch=1, dtype=F64)
    y = torch.tensor([3])
    # fresh: zero whatever the condition
    assert not model(x, t, y).any() and not model(x, t, torch.tensor([4])).any()
    randomize_(model, std=0.05)
    base = model(x, t, y)
    assert not torch.allclose(base, model(x, t, torch.tensor([4])))
    assert not torch.allclose(base, model(x, t, torch.tensor([10])))      # null class
    assert not torch.allclose(base, model(x, (t + 0.1) % 1, y))
    torch.testing.assert_close(base, model(x, t.clone(), y.clone()))      # deterministic in eval


def test_label_dropout_only_in_training_with_global_rng():
    model = randomize_(M.create("DiPoM-S/2", scale="micro", class_dropout_prob=0.5)).double()
    assert model.class_dropout_prob == 0.5
    x, t, _ = inputs(model, batch=16, dtype=F64)
    y = torch.randint(0, 10, (16,))
    model.train()
    torch.manual_seed(123)
    out_train = model(x, t, y)
    torch.manual_seed(123)
    dropped = torch.rand(16) < 0.5                        # the draw the embedder made
    assert 0 < dropped.sum() < 16
    model.eval()
    y_seen = torch.where(dropped, torch.full_like(y, 10), y)
    torch.testing.assert_close(out_train, model(x, t, y_seen))
    assert not torch.allclose(model(x, t, y), out_train)


def test_scalar_time_broadcasts():
    model = randomize_(M.create("DiT-S/8", scale="micro")).double().eval()
    x, _, y = inputs(model, batch=3, dtype=F64)
    torch.testing.assert_close(model(x, 0.3, y), model(x, torch.full((3,), 0.3, dtype=F64), y))


# --- bad input ------------------------------------------------------------------------------

SHAPE_ERRORS = [
    (lambda x, t, y: (x[..., :15, :15], t, y), ValueError, "not divisible by patch_size 2"),
    (lambda x, t, y: (x.repeat(1, 3, 1, 1), t, y), ValueError, "3 channels, expected in_channels=1"),
    (lambda x, t, y: (x[0], t, y), TypeError, "x must be a float tensor"),
    (lambda x, t, y: (x, t, y.float()), TypeError, "y must be an int64 tensor"),
    (lambda x, t, y: (x, t, y[:1]), ValueError, r"y must have shape \(2,\)"),
    (lambda x, t, y: (x, torch.tensor([1, 0]), y), ValueError, "t must be a float tensor"),
    (lambda x, t, y: (x, t[:1], y), ValueError, r"t must be a float tensor of shape \(2,\)"),
]
RANGE_ERRORS = [
    (lambda x, t, y: (x, t, torch.tensor([0, 11])), ValueError, r"y must hold class ids in \[0, 10\]"),
    (lambda x, t, y: (x, t, torch.tensor([-1, 0])), ValueError, "y must hold class ids"),
    (lambda x, t, y: (x, torch.tensor([0.5, 1.5]), y), ValueError, r"t must lie in \[0, 1\]"),
    (lambda x, t, y: (x, torch.tensor([-0.1, 0.5]), y), ValueError, r"t must lie in \[0, 1\]"),
    (lambda x, t, y: (x, torch.tensor([float("nan"), 0.5]), y), ValueError, "t must lie"),
]


@pytest.mark.parametrize("make_bad,error,match", SHAPE_ERRORS)
def test_bad_inputs_name_the_argument(make_bad, error, match):
    """forward checks shapes and dtypes (no host sync); check_batch adds nothing to these."""
    model = M.create("DiPoM-S/2", scale="micro")
    x, t, y = inputs(model)
    for call in (model, model.check_batch):
        with pytest.raises(error, match=match):
            call(*make_bad(x, t, y))


@pytest.mark.parametrize("make_bad,error,match", SHAPE_ERRORS + RANGE_ERRORS)
def test_entry_points_check_value_ranges(make_bad, error, match):
    """Values (t in [0, 1], class ids) are checked where a batch enters: model.check_batch and
    the samplers (once per call), with the same one-line errors."""
    model = M.create("DiPoM-S/2", scale="micro")
    x, t, y = inputs(model)
    bad_x, bad_t, bad_y = make_bad(x, t, y)
    with pytest.raises(error, match=match):
        model.check_batch(bad_x, bad_t, bad_y)
    if bad_t is t:          # the samplers make their own times: only x and y come from the caller
        for process in (FlowMatching(), GaussianDiffusion(num_steps=10)):
            with pytest.raises(error, match=match):
                process.sample(model, bad_x, bad_y, steps=2)


def test_forward_does_not_sync_for_range_checks(monkeypatch):
    """No value-range check inside forward (a host sync per call on GPUs); the samplers check
    once per call, never per step."""
    calls = []
    real = M.backbone.check_time_and_ids
    monkeypatch.setattr(M.backbone, "check_time_and_ids", lambda *a: calls.append(1) or real(*a))
    model = M.create("DiPoM-S/2", scale="micro").eval()
    x, t, y = inputs(model)
    model(x, t, y)
    model(x, 0.5, y)
    assert calls == []
    FlowMatching().sample(model, x, y, steps=3, method="heun", cfg=2.0, null_class=10)
    assert calls == [1]
    assert not hasattr(model, "check_inputs")          # nothing for callers to switch off
