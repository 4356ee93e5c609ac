"""Parameter and GFLOP counts: the DiT paper's published numbers, and independent checks."""
import pandas as pd
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


import pomlab
import pomlab.models as M
from pomlab import zoo
from pomlab.models.flops import count_macs

# DiT paper (Peebles & Xie, arXiv 2212.09748), Table 4: ImageNet 256x256, params (M) and
# forward Gflops of each model. The issue quotes the /2 column (S/2 33M 6.06, B/2 130M 23.01,
# L/2 458M 80.71, XL/2 675M 118.64) and the facebookresearch/DiT README lists XL/2 at
# "119 Gflops"; the /4 and /8 rows are the same table's, quoted without a copy of the paper at
# hand to re-read them (no reachable text of Table 4 here): a mismatch there means re-check them.
PUBLISHED = {
    "DiT-S/8": (33, 0.36), "DiT-S/4": (33, 1.41), "DiT-S/2": (33, 6.06),
    "DiT-B/8": (131, 1.42), "DiT-B/4": (130, 5.56), "DiT-B/2": (130, 23.01),
    "DiT-L/8": (459, 5.01), "DiT-L/4": (458, 19.70), "DiT-L/2": (458, 80.71),
    "DiT-XL/8": (676, 7.39), "DiT-XL/4": (675, 29.05), "DiT-XL/2": (675, 118.64),
}
# Tolerance: half a unit of the table's last digit (it prints 2 decimals) plus 0.1%. The
# largest gap is B/4 (ours 5.5652, published 5.56); all /2 rows agree within 0.02% (a
# LayerNorm-sized term the paper may have counted). Attention alone is 3.6% of XL/2 and 2.9%
# of L/2, so leaving it out fails; completeness down to the smallest Linear is checked
# against FlopCounterMode below.
def published_tolerance(gflops):
    return 0.005 + 1e-3 * gflops


def paper_model(name, **over):
    with torch.device("meta"):                               # no memory, no init cost
        return M.create(name, learn_sigma=True, **over)       # the DiT paper learns sigma


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_dit_reproduces_published_params_and_gflops(name):
    params_m, gflops = PUBLISHED[name]
    model = paper_model(name)
    n_params = sum(p.numel() for p in model.parameters())
    assert round(n_params / 1e6) == params_m                  # the table rounds to 1M
    assert abs(M.gflops(model, 256) - gflops) <= published_tolerance(gflops)


def test_dit_xl2_exact_parameter_count():
    """DiT's train.py logs 675,129,632 parameters for DiT-XL/2, its fixed nn.Parameter
    pos_embed included; here the positions are a buffer, so they are added back."""
    model = paper_model("DiT-XL/2")
    trainable = sum(p.numel() for p in model.parameters())
    assert trainable + model.pos_embed.numel() == 675_129_632


@pytest.mark.parametrize("name", ["DiT-S/2", "DiPoM-S/2", "DiPoM-B/4"])
def test_matches_flop_counter_with_attention_decomposed(name):
    """FlopCounterMode counts 2 per multiply-add of every matmul/conv; with the math SDPA
    backend attention is decomposed into counted bmm's. PoM's elementwise work and mean
    are invisible to it, so they must be exactly the difference, given by docs/pom.md §1:
    per token (k-1)·e·D products + k·e·D mean adds + k·e·D gate products."""
    model = M.create(name, scale="micro").eval()
    x = torch.randn(1, 1, 16, 16)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(x, torch.rand(1), torch.tensor([3]))
    ours = M.macs(model)
    assert counter.get_total_flops() == 2 * (ours["linear"] + ours["conv"] + ours["attention"])
    n, d, depth = (16 // model.patch_size) ** 2, model.hidden_size, model.depth
    if model.mixer == "pom":
        k, e = 2, 2
        assert ours["pom_elementwise"] == depth * n * ((k - 1) * e * d + 2 * k * e * d)
        assert ours["attention"] == 0
    else:
        assert ours["attention"] == depth * 2 * n * n * d      # QK^T and AV
        assert ours["pom_elementwise"] == 0


def test_default_cpu_flop_counter_misses_attention():
    """Why gflops does not rely on FlopCounterMode alone (docs/models.md)."""
    model = M.create("DiT-S/2", scale="micro").eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 1, 16, 16), torch.rand(1), torch.tensor([3]))
    assert counter.get_total_flops() < 2 * sum(M.macs(model).values())


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_masked_and_cross_mixing_counts(polynomial):
    """count_macs on bare mixers: a per-query mask tensor makes PoM's mean an (M, N) product;
    cross-attention projects the context through the qkv weights outside the qkv module."""
    d, m, n, k, e = 8, 5, 7, 3, 2
    pom = pomlab.PoM(d, degree=k, expand=e, polynomial=polynomial)
    x, ctx = torch.randn(2, m, d), torch.randn(2, n, d)
    s = pom.state_dim
    per_token = (k - 1) * e * d + (k * e * d if polynomial == "powers" else 0)
    linear = 2 * (n * d * s + m * d * s + m * s * d)          # poly on context; gate, out on x
    plain = count_macs(pom, x, context=ctx)
    assert plain == {"linear": linear, "pom_elementwise": 2 * (n * per_token + n * s + m * s)}
    mask = torch.ones(1, m, n, dtype=torch.bool)
    masked = count_macs(pom, x, context=ctx, mask=mask)
    assert masked["pom_elementwise"] == 2 * (n * per_token + m * n * s + m * s)

    # structured masks are prefix sums (linear in tokens), a mask tensor the (M, N) product
    frames = pomlab.masks.BlockCausal(2, 4)
    x8 = torch.randn(2, 8, d)
    tokenwise = 2 * (8 * per_token + 8 * s)
    assert count_macs(pom, x8, mask=frames)["pom_elementwise"] == tokenwise + 2 * 8 * s
    assert count_macs(pom, x8, mask="causal")["pom_elementwise"] == tokenwise + 2 * 8 * s
    assert count_macs(pom, x8, mask=frames.dense()[None])["pom_elementwise"] == \
        tokenwise + 2 * 8 * 8 * s

    mha = pomlab.MHA(d, heads=2)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        mha(x, context=ctx)
    assert counter.get_total_flops() == 2 * sum(count_macs(mha, x, context=ctx).values())


def test_image_size_convention():
    model = paper_model("DiPoM-S/2")
    assert M.gflops(model) == M.gflops(model, 256)            # input 32 = 256 px / 8
    micro = M.create("DiPoM-S/2", scale="micro")
    assert M.gflops(micro) == M.gflops(micro, 16)             # micro works on pixels
    # PoM is linear in the tokens: 4x the pixels at 512 px is 4x the per-token work
    per_image = M.macs(model, 512)
    base = M.macs(model, 256)
    assert per_image["pom_elementwise"] == 4 * base["pom_elementwise"]
    dit = paper_model("DiT-S/2")
    assert M.macs(dit, 512)["attention"] == 16 * M.macs(dit, 256)["attention"]
    with pytest.raises(ValueError, match="image_size 260 is not divisible by the model's "
                                         "latent_scale 8"):
        M.gflops(model, 260)
    with pytest.raises(ValueError, match="not divisible by patch_size 2"):
        M.gflops(model, 8 * 33)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        M.gflops(model, 0)


def test_counting_leaves_the_model_untouched():
    model = M.create("DiPoM-S/2", scale="micro").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    M.gflops(model)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(not p.is_meta for p in model.parameters())


def test_micro_family_is_ordered_by_compute_like_the_paper():
    for family in ("DiT", "DiPoM"):
        for patch in M.PATCHES:
            with torch.device("meta"):
                models = [M.create(f"{family}-{s}/{patch}", scale="micro") for s in M.SIZES]
            costs = [M.gflops(m) for m in models]
            assert costs == sorted(costs) and len(set(costs)) == 4


def test_zoo_table():
    df = zoo.zoo_table(256, names=["DiT-XL/2", "DiPoM-S/8"])
    assert list(df.model) == ["DiT-XL/2 (paper)", "DiPoM-S/8 (paper)",
                              "DiT-XL/2 (micro)", "DiPoM-S/8 (micro)"]
    assert list(df.image_px) == [256, 256, 16, 16]
    assert abs(df.gflops[0] - 118.64) <= published_tolerance(118.64)
    assert round(df.params_M[0]) == 675


def test_zoo_lists_every_model_by_default(monkeypatch):
    seen = []
    monkeypatch.setattr(zoo, "model_row", lambda name, scale, *a, **k: seen.append((name, scale)))
    zoo.zoo_table()
    every = M.names() + M.video_names()          # the image family, then the video family
    assert seen == [(n, "paper") for n in every] + [(n, "micro") for n in every]
    seen.clear()
    zoo.zoo_table(video=False)
    assert seen == [(n, "paper") for n in M.names()] + [(n, "micro") for n in M.names()]


def test_video_gflops_per_clip_are_linear_in_frames():
    """A video model's GFLOPs count one clip; PoM (block-causal prefix sums) keeps the per-frame
    cost fixed as clips grow, and the zoo accepts video names."""
    with torch.device("meta"):
        short = M.create("VideoDiPoM-S/4", num_frames=4)
        long = M.create("VideoDiPoM-S/4", num_frames=16)
    per_frame_short = sum(M.macs(short).values()) / 4
    per_frame_long = sum(M.macs(long).values()) / 16
    assert per_frame_long == pytest.approx(per_frame_short, rel=0.01)   # only the text part is fixed
    row = zoo.model_row("VideoDiPoM-S/4", "paper", 256)
    assert row["input"] == "16x32x32x4 latent" and row["tokens"] == 16 * 8 * 8


def test_zoo_cli(capsys, tmp_path):
    df = zoo.main(["--models", "DiPoM-B/4,DiT-S/8", "--learn-sigma", "--image-size", "512",
                   "--csv", str(tmp_path / "zoo.csv")])
    out = capsys.readouterr().out
    assert "DiPoM-B/4 (paper, learn_sigma=True)" in out and "DiT-S/8 (micro, learn_sigma=True)" in out
    assert "512x512 px" in out and list(df.image_px) == [512, 512, 16, 16]
    assert pd.read_csv(tmp_path / "zoo.csv").model.tolist() == df.model.tolist()
    with pytest.raises(SystemExit):
        zoo.main(["--models", "DiT-Q/2"])
