"""Published layouts into pomlab models: DiT's released state dicts and the PoM authors' DiH.

Each test builds a state dict from the published key names and shapes (random values), loads
it, and compares pomlab's forward with a reference forward written here from the published
formulas (functional torch on the state dict, float64). Tolerances: 1e-9 absolute on outputs
of size ~1 (float64 through 12 blocks)."""
import math

import pytest
import torch
import torch.nn.functional as F

import pomlab.models as M

F64 = torch.float64
D, DEPTH, HEADS = 384, 12, 6          # DiT-S / DiH-S


def dit_state(patch=8, channels=4, latent=16, classes=10, learn_sigma=True, seed=0):
    """DiT's released key layout (DiT-S) with random weights."""
    g = torch.Generator().manual_seed(seed)
    out = channels * (2 if learn_sigma else 1)
    shapes = {"x_embedder.proj.weight": (D, channels, patch, patch), "x_embedder.proj.bias": (D,),
              "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
              "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
              "y_embedder.embedding_table.weight": (classes + 1, D),
              "final_layer.linear.weight": (patch * patch * out, D),
              "final_layer.linear.bias": (patch * patch * out,),
              "final_layer.adaLN_modulation.1.weight": (2 * D, D),
              "final_layer.adaLN_modulation.1.bias": (2 * D,)}
    for i in range(DEPTH):
        b = f"blocks.{i}."
        shapes.update({b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                       b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                       b + "mlp.fc1.weight": (4 * D, D), b + "mlp.fc1.bias": (4 * D,),
                       b + "mlp.fc2.weight": (D, 4 * D), b + "mlp.fc2.bias": (D,),
                       b + "adaLN_modulation.1.weight": (6 * D, D),
                       b + "adaLN_modulation.1.bias": (6 * D,)})
    state = {k: torch.randn(s, generator=g) / math.sqrt(s[-1] if len(s) > 1 else 8)
             for k, s in shapes.items()}
    grid = latent // patch
    state["pos_embed"] = dit_positions(D, grid)[None]         # float64: the exact values
    return state


def dit_positions(dim, grid):
    """MAE/DiT 2-D sin-cos: first half encodes the column, second the row."""
    pos = torch.arange(grid, dtype=F64)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=F64) / (dim / 4))
    def one(p):
        a = p[:, None] * omega[None]
        return torch.cat([a.sin(), a.cos()], 1)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")
    return torch.cat([one(cols.flatten()), one(rows.flatten())], 1)


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def dit_reference(state, x, t, y):
    """DiT's forward from its formulas; t the integer step in [0, 1000)."""
    w = {k: v.double() for k, v in state.items()}
    p = w["x_embedder.proj.weight"].shape[-1]
    b, c, hgt, wid = x.shape
    tok = F.conv2d(x, w["x_embedder.proj.weight"], w["x_embedder.proj.bias"], stride=p)
    tok = tok.flatten(2).transpose(1, 2) + w["pos_embed"]
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=F64) / 128)
    args = t[:, None] * freqs[None]
    te = torch.cat([args.cos(), args.sin()], 1)
    te = F.linear(F.silu(F.linear(te, w["t_embedder.mlp.0.weight"], w["t_embedder.mlp.0.bias"])),
                  w["t_embedder.mlp.2.weight"], w["t_embedder.mlp.2.bias"])
    cond = F.silu(te + w["y_embedder.embedding_table.weight"][y])
    n, hd = tok.shape[1], D // HEADS
    for i in range(DEPTH):
        k = f"blocks.{i}."
        sh1, sc1, g1, sh2, sc2, g2 = F.linear(cond, w[k + "adaLN_modulation.1.weight"],
                                              w[k + "adaLN_modulation.1.bias"]).chunk(6, 1)
        h = layer_norm(tok) * (1 + sc1[:, None]) + sh1[:, None]
        qkv = F.linear(h, w[k + "attn.qkv.weight"], w[k + "attn.qkv.bias"])
        q, kk, v = qkv.reshape(b, n, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ kk.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        att = F.linear(att.transpose(1, 2).reshape(b, n, D), w[k + "attn.proj.weight"],
                       w[k + "attn.proj.bias"])
        tok = tok + g1[:, None] * att
        h = layer_norm(tok) * (1 + sc2[:, None]) + sh2[:, None]
        h = F.linear(F.gelu(F.linear(h, w[k + "mlp.fc1.weight"], w[k + "mlp.fc1.bias"]),
                            approximate="tanh"), w[k + "mlp.fc2.weight"], w[k + "mlp.fc2.bias"])
        tok = tok + g2[:, None] * h
    sh, sc = F.linear(cond, w["final_layer.adaLN_modulation.1.weight"],
                      w["final_layer.adaLN_modulation.1.bias"]).chunk(2, 1)
    out = F.linear(layer_norm(tok) * (1 + sc[:, None]) + sh[:, None],
                   w["final_layer.linear.weight"], w["final_layer.linear.bias"])
    co = out.shape[-1] // (p * p)
    out = out.reshape(b, hgt // p, wid // p, p, p, co)
    return torch.einsum("nhwpqc->nchpwq", out).reshape(b, co, hgt, wid)


@pytest.fixture(scope="module")
def dit_pair():
    state = dit_state()
    return state, M.load_dit_checkpoint(state)


def test_dit_layout_loads_and_equals_the_official_forward(dit_pair):
    state, model = dit_pair
    assert (model.name, model.learn_sigma, model.input_size, model.num_classes) == \
        ("DiT-S/8", True, 16, 10)
    assert not model.training and model.out_channels == 8
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16, dtype=F64)
    steps, y = torch.tensor([0, 731]), torch.tensor([3, 10])
    with torch.no_grad():
        ours = model.double()(x, steps.double() / 1000, y)
        ref = dit_reference(state, x, steps.double(), y)
    model.float()
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)


def test_dit_training_checkpoint_takes_the_ema_and_image_size_is_checked(dit_pair, tmp_path):
    state, _ = dit_pair
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"junk": torch.zeros(1)}, "ema": state, "args": None}, path)
    model = M.load_dit_checkpoint(path, image_size=128)          # 16x16 latents = 128 px
    assert model.input_size == 16
    with pytest.raises(ValueError, match=r"is for 128x128 images .* not image_size=256"):
        M.load_dit_checkpoint(state, image_size=256)


def test_dit_bad_layouts_name_what_is_wrong(dit_pair):
    state, _ = dit_pair
    with pytest.raises(ValueError, match="not a DiT checkpoint"):
        M.load_dit_checkpoint({"encoder.weight": torch.zeros(2)})
    broken = {k: v for k, v in state.items() if k != "blocks.3.mlp.fc1.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['blocks.3.mlp.fc1.bias'\]"):
        M.load_dit_checkpoint(broken)
    extra = dict(state, **{"blocks.2.attn.q_norm.weight": torch.zeros(D)})
    with pytest.raises(ValueError, match="unexpected keys.*q_norm"):
        M.load_dit_checkpoint(extra)
    wrong = dict(state, **{"blocks.0.mlp.fc1.weight": torch.zeros(3 * D, D)})
    with pytest.raises(ValueError, match=r"blocks.0.mlp.fc1.weight \(1152, 384\) vs \(1536, 384\)"):
        M.load_dit_checkpoint(wrong)
    with pytest.raises(ValueError, match="pos_embed"):
        M.load_dit_checkpoint(dict(state, pos_embed=torch.randn(1, 4, D)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        M.load_dit_checkpoint("/nonexistent/DiT-XL-2-256x256.pt")


# --- the authors' DiH -----------------------------------------------------------------------

def dih_state(patch=4, channels=4, classes=10, expand=2, ffw=3, seed=1):
    """ClassConditionalDiH's key layout (DiH-S sizes) with random weights, Lightning-prefixed."""
    g = torch.Generator().manual_seed(seed)
    s = expand * 2 * D
    shapes = {"in_conv.weight": (D, channels, patch, patch), "in_conv.bias": (D,),
              "classes_emb.weight": (classes + 1, D),
              "time_emb.0.weight": (4 * D, D), "time_emb.0.bias": (4 * D,),
              "time_emb.2.weight": (D, 4 * D), "time_emb.2.bias": (D,),
              "out_proj.weight": (patch * patch * channels, D), "out_proj.bias": (patch * patch * channels,),
              "out_mod.1.weight": (2 * D, D), "out_mod.1.bias": (2 * D,)}
    for i in range(DEPTH):
        b = f"layers.{i}."
        shapes.update({b + "hom.ho_proj.weight": (s, D), b + "hom.ho_proj.bias": (s,),
                       b + "hom.se_proj.weight": (s, D), b + "hom.se_proj.bias": (s,),
                       b + "hom.ag_proj.weight": (D, s), b + "hom.ag_proj.bias": (D,),
                       b + "ffw.0.weight": (ffw * D, D), b + "ffw.0.bias": (ffw * D,),
                       b + "ffw.2.weight": (D, ffw * D), b + "ffw.2.bias": (D,),
                       b + "cond_mlp.1.weight": (4 * D, D), b + "cond_mlp.1.bias": (4 * D,),
                       b + "gate_mlp.1.weight": (2 * D, D), b + "gate_mlp.1.bias": (2 * D,)})
    state = {k: (torch.randn(sh, generator=g) / math.sqrt(sh[-1] if len(sh) > 1 else 8)).double()
             for k, sh in shapes.items()}
    state["freqs"] = torch.exp(-2 * math.log(1000) * torch.arange(D // 2, dtype=F64) / D)
    return {"model." + k: v for k, v in state.items()}


def dih_reference(state, x, time, y):
    """Their forward from its formulas; time in [0, n_timesteps]."""
    w = {k[len("model."):]: v for k, v in state.items()}
    p = w["in_conv.weight"].shape[-1]
    b, _, hgt, wid = x.shape
    rows, cols = hgt // p, wid // p
    tok = F.conv2d(x, w["in_conv.weight"], w["in_conv.bias"], stride=p).flatten(2).transpose(1, 2)
    f = (torch.arange(D // 4, dtype=F64) * 2 + 1) * math.pi
    xs = torch.linspace(0, 1, cols, dtype=F64)[:, None] * f
    ys = torch.linspace(0, 1, rows, dtype=F64)[:, None] * f
    px = torch.cat([xs.sin(), xs.cos()], 1)[None].expand(rows, cols, D // 2)
    py = torch.cat([ys.sin(), ys.cos()], 1)[:, None].expand(rows, cols, D // 2)
    tok = tok + torch.cat([px, py], -1).reshape(rows * cols, D)
    a = time[:, None] * w["freqs"][None]
    te = F.linear(F.silu(F.linear(torch.cat([a.cos(), a.sin()], 1), w["time_emb.0.weight"],
                                  w["time_emb.0.bias"])), w["time_emb.2.weight"], w["time_emb.2.bias"])
    cond = F.silu(w["classes_emb.weight"][y] + te)[:, None]
    for i in range(DEPTH):
        k = f"layers.{i}."
        s1, b1, s2, b2 = F.linear(cond, w[k + "cond_mlp.1.weight"], w[k + "cond_mlp.1.bias"]).chunk(4, -1)
        g1, g2 = F.linear(cond, w[k + "gate_mlp.1.weight"], w[k + "gate_mlp.1.bias"]).chunk(2, -1)
        h = layer_norm(tok) * (1 + s1) + b1
        u1, u2 = F.gelu(F.linear(h, w[k + "hom.ho_proj.weight"], w[k + "hom.ho_proj.bias"])).chunk(2, -1)
        state_h = torch.cat([u1, u1 * u2], -1).mean(1, keepdim=True)
        sel = torch.sigmoid(F.linear(h, w[k + "hom.se_proj.weight"], w[k + "hom.se_proj.bias"]))
        tok = tok + F.linear(sel * state_h, w[k + "hom.ag_proj.weight"], w[k + "hom.ag_proj.bias"]) * (1 + g1)
        h = layer_norm(tok) * (1 + s2) + b2
        h = F.linear(F.gelu(F.linear(h, w[k + "ffw.0.weight"], w[k + "ffw.0.bias"])),
                     w[k + "ffw.2.weight"], w[k + "ffw.2.bias"])
        tok = tok + h * (1 + g2)
    s, bb = F.linear(cond, w["out_mod.1.weight"], w["out_mod.1.bias"]).chunk(2, -1)
    out = F.linear(layer_norm(tok) * (1 + s) + bb, w["out_proj.weight"], w["out_proj.bias"])
    c = out.shape[-1] // (p * p)
    out = out.reshape(b, rows, cols, p, p, c)      # tokens laid out (k, s, c)
    return torch.einsum("nhwpqc->nchpwq", out).reshape(b, c, hgt, wid)


def test_homm_layout_loads_and_equals_their_forward_at_t_times_1000():
    state = dih_state()
    model = M.load_homm_checkpoint(state)
    assert (model.name, model.variant, model.config["mlp_ratio"], model.config["expand"]) \
        == ("DiPoM-S/4", "authors", 3.0, 2)
    assert model.config["variant"] == "authors" and not model.training
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 12, dtype=F64)                 # 4x3 patches: rows != cols
    t, y = torch.tensor([0.0, 0.4137], dtype=F64), torch.tensor([2, 10])
    with torch.no_grad():
        ours = model(x, t, y)
        ref = dih_reference(state, x, t * 1000, y)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="not a ClassConditionalDiH"):
        M.load_homm_checkpoint({"model.encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys.*registers"):
        M.load_homm_checkpoint(dict(state, **{"model.registers": torch.zeros(16, D)}))


@pytest.mark.parametrize("size,count", [("S", 44_429_200), ("B", 176_742_160),
                                        ("L", 565_642_256), ("XL", 832_546_960)])
def test_authors_variant_has_their_trainable_parameter_counts(size, count):
    with torch.device("meta"):
        model = M.create(f"DiPoM-{size}/2", variant="authors")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count
    assert model.label == f"DiPoM-{size}/2 (paper, variant=authors)"


def test_authors_positions_and_bad_variant():
    pos = M.authors_sincos_2d(8, 2, 3)
    # token (row 1, col 2): x = 1, y = 1; frequencies 1 and 3 (times pi)
    expected = [math.sin(math.pi), math.sin(3 * math.pi), math.cos(math.pi), math.cos(3 * math.pi)] * 2
    torch.testing.assert_close(pos[5], torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)
    assert torch.equal(pos[0, :4], torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="variant must be one of"):
        M.create("DiPoM-S/2", scale="micro", variant="homm")
