"""Published weights into pomlab models: DiT's released checkpoints and the PoM authors' DiH.

``load_dit_checkpoint``: DiT (facebookresearch/DiT) names its parameters as pomlab does except
the mixer (``blocks.N.attn`` here ``blocks.N.mixer``) and stores the fixed positions as a
parameter (``pos_embed``, here a buffer: checked, not loaded). Its forward takes the integer
step t in [0, 1000); pomlab's takes t / 1000 and embeds 1000 * (t / 1000), so
``model(x, t / 1000, y) == dit(x, t, y)``.

``load_homm_checkpoint``: the authors' ``ClassConditionalDiH`` (github davidpicard/HoMM) into
``create("DiPoM-*/*", variant="authors")``. Their names map as in_conv -> x_embedder.proj,
classes_emb -> y_embedder.embedding_table, time_emb -> t_embedder.mlp, layers.N.hom.{ho,se,ag}_proj
-> blocks.N.mixer.{poly,gate,out}, layers.N.ffw.{0,2} -> blocks.N.mlp.{fc1,fc2},
out_proj -> final_layer.linear. Their block modulation is (scale1, shift1, scale2, shift2) from
cond_mlp and (gate1, gate2) from gate_mlp applied as (1 + gate): pomlab's AdaLN rows
(shift1, scale1, gate1, shift2, scale2, gate2) are the same rows reordered, with 1 added to the
gate biases. Their forward takes time in [0, n_timesteps]: ``model(x, t, y) == dih(x, t * 1000, y)``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from .backbone import AUTHORS_TIMESTEPS, sincos_2d
from .registry import PAPER_SIZES, PATCHES, create

LATENT_SCALE = 8          # DiT's VAE: 256x256 images are 32x32x4 latents


def _read(source, what: str) -> dict:
    """A state dict from a path (torch.load, weights only) or a dict."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{what} checkpoint {path} does not exist")
        source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, dict):
        raise TypeError(f"source must be a path or a state dict, got {type(source).__name__}")
    return source


def _size_of(hidden: int, depth: int, where: str) -> str:
    for size, spec in PAPER_SIZES.items():
        if spec["hidden_size"] == hidden and spec["depth"] == depth:
            return size
    known = ", ".join(f"{s} ({v['depth']}x{v['hidden_size']})" for s, v in PAPER_SIZES.items())
    raise ValueError(f"{where}: depth {depth} x width {hidden} is none of the sizes {known}")


def _load_exact(model: nn.Module, state: dict, where: str) -> None:
    """load_state_dict(strict) with shapes checked first, naming every mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if wrong:
            parts.append("shape mismatches " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:8]))
        raise ValueError(f"{where}: " + "; ".join(parts))
    dtypes = {v.dtype for v in state.values() if v.dtype.is_floating_point}
    if len(dtypes) == 1:              # the checkpoint's precision (float32 for DiT's release)
        model.to(dtypes.pop())
    model.load_state_dict(state, strict=True)


def _check_image_size(image_size, input_size: int, where: str) -> None:
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (pixels) or None, got {image_size!r}")
    if image_size != input_size * LATENT_SCALE:
        raise ValueError(f"{where} is for {input_size * LATENT_SCALE}x{input_size * LATENT_SCALE} "
                         f"images ({input_size}x{input_size} latents), not image_size={image_size}")


# --- DiT ------------------------------------------------------------------------------------

_DIT_REQUIRED = ("x_embedder.proj.weight", "t_embedder.mlp.0.weight",
                 "y_embedder.embedding_table.weight", "final_layer.linear.weight")


def load_dit_checkpoint(source, image_size: int | None = None) -> nn.Module:
    """A pomlab DiT (paper scale, learn_sigma as stored) in eval mode from DiT's released layout.

    source: a path or a state dict as DiT releases it (e.g. DiT-XL-2-256x256.pt), or a DiT
    training checkpoint dict (its "ema" weights are taken). Size, patch, channels, classes,
    learn_sigma and the latent size come from the shapes; image_size (pixels, optional) is
    checked against them. ``model(x, t / 1000, y)`` equals the official ``DiT(x, t, y)``.
    """
    state = _read(source, "DiT")
    if "ema" in state and isinstance(state["ema"], dict):
        state = state["ema"]
    state = {re.sub(r"^(module\.|_orig_mod\.)", "", k): v for k, v in state.items()}
    missing = [k for k in _DIT_REQUIRED if k not in state]
    if missing:
        raise ValueError(f"not a DiT checkpoint: missing {missing} (keys start "
                         f"{sorted(state)[:5]}); expected DiT's layout (x_embedder, t_embedder, "
                         "y_embedder, pos_embed, blocks.N.attn/mlp/adaLN_modulation, final_layer)")
    where = "DiT checkpoint"
    proj = state["x_embedder.proj.weight"]
    hidden, in_channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    size = _size_of(hidden, depth, where)
    if patch not in PATCHES:
        raise ValueError(f"{where}: patch size {patch} is none of {PATCHES}")
    out = state["final_layer.linear.weight"].shape[0] // (patch * patch)
    if out not in (in_channels, 2 * in_channels):
        raise ValueError(f"{where}: final layer predicts {out} channels for {in_channels} inputs")
    if "pos_embed" not in state:
        raise ValueError(f"{where}: missing key 'pos_embed' (needed for the latent size)")
    tokens = state["pos_embed"].shape[1]
    grid = int(round(tokens ** 0.5))
    if grid * grid != tokens:
        raise ValueError(f"{where}: pos_embed has {tokens} tokens, not a square grid")
    input_size = grid * patch
    _check_image_size(image_size, input_size, where)
    num_classes = state["y_embedder.embedding_table.weight"].shape[0] - 1
    if not torch.allclose(state["pos_embed"][0].double(), sincos_2d(hidden, grid, grid),
                          atol=1e-5, rtol=0):
        raise ValueError(f"{where}: pos_embed is not DiT's fixed 2-D sin-cos embedding")
    model = create(f"DiT-{size}/{patch}", scale="paper", input_size=input_size,
                   in_channels=in_channels, num_classes=num_classes,
                   learn_sigma=out == 2 * in_channels)
    mapped = {re.sub(r"^blocks\.(\d+)\.attn\.", r"blocks.\1.mixer.", k): v
              for k, v in state.items() if k != "pos_embed"}
    _load_exact(model, mapped, where)
    return model.eval()


# --- the authors' DiH -----------------------------------------------------------------------

def _strip_lightning(state: dict) -> dict:
    """Their Lightning module keeps the network under "model." (and its EMA under "ema.")."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    for prefix in ("ema.ema_model.", "ema_model.", "model.", "module.", "_orig_mod."):
        if any(k.startswith(prefix) for k in state):
            kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if "in_conv.weight" in kept:
                state = kept
    return state


def load_homm_checkpoint(source, image_size: int | None = None) -> nn.Module:
    """``create("DiPoM-*/*", variant="authors")`` in eval mode holding the weights of the
    authors' ``ClassConditionalDiH`` (a path or state dict; Lightning prefixes stripped).
    ``model(x, t, y)`` with t in [0, 1] equals their forward at time t * n_timesteps (1000).
    image_size (pixels, optional) sets the model's latent side to image_size / 8 (their
    im_size; the weights do not fix it, and positions follow each input's grid)."""
    state = _strip_lightning(_read(source, "DiH"))
    where = "DiH checkpoint"
    required = ("in_conv.weight", "classes_emb.weight", "time_emb.0.weight", "out_proj.weight",
                "layers.0.hom.ho_proj.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"not a ClassConditionalDiH checkpoint: missing {missing} (keys start "
                         f"{sorted(state)[:5]})")
    conv = state["in_conv.weight"]
    hidden, in_channels, patch = conv.shape[0], conv.shape[1], conv.shape[2]
    depth = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    size = _size_of(hidden, depth, where)
    if state["time_emb.0.weight"].shape != (4 * hidden, hidden):
        raise ValueError(f"{where}: time_emb.0.weight has shape "
                         f"{tuple(state['time_emb.0.weight'].shape)}, expected {(4 * hidden, hidden)}")
    if "freqs" in state:
        n = AUTHORS_TIMESTEPS
        expected = torch.exp(-2 * torch.log(torch.tensor(float(n), dtype=torch.float64))
                             * torch.arange(hidden // 2, dtype=torch.float64) / hidden)
        if not torch.allclose(state["freqs"].double(), expected, rtol=1e-5, atol=0):
            raise ValueError(f"{where}: its time frequencies are not those of n_timesteps={n}")
    ho = state["layers.0.hom.ho_proj.weight"].shape[0]
    expand = ho // (2 * hidden)
    if ho != 2 * expand * hidden:
        raise ValueError(f"{where}: ho_proj has {ho} outputs, not order 2 x expand x {hidden}")
    mlp_ratio = state["layers.0.ffw.0.weight"].shape[0] / hidden
    input_size = int(image_size // LATENT_SCALE) if image_size else None
    model = create(f"DiPoM-{size}/{patch}", scale="paper", in_channels=in_channels,
                   num_classes=state["classes_emb.weight"].shape[0] - 1, expand=expand,
                   mlp_ratio=mlp_ratio, variant="authors",
                   **({"input_size": input_size} if input_size else {}))
    d = hidden
    mapped: dict[str, Tensor] = {
        "x_embedder.proj.weight": state["in_conv.weight"],
        "x_embedder.proj.bias": state["in_conv.bias"],
        "y_embedder.embedding_table.weight": state["classes_emb.weight"],
        "final_layer.linear.weight": state["out_proj.weight"],
        "final_layer.linear.bias": state["out_proj.bias"],
    }
    for i in (0, 2):
        for kind in ("weight", "bias"):
            mapped[f"t_embedder.mlp.{i}.{kind}"] = state[f"time_emb.{i}.{kind}"]
    for kind in ("weight", "bias"):
        scale, shift = state[f"out_mod.1.{kind}"].split(d)
        mapped[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
    for n in range(depth):
        src, dst = f"layers.{n}.", f"blocks.{n}."
        for theirs, ours in (("hom.ho_proj", "mixer.poly"), ("hom.se_proj", "mixer.gate"),
                             ("hom.ag_proj", "mixer.out"), ("ffw.0", "mlp.fc1"),
                             ("ffw.2", "mlp.fc2")):
            for kind in ("weight", "bias"):
                mapped[f"{dst}{ours}.{kind}"] = state[f"{src}{theirs}.{kind}"]
        for kind in ("weight", "bias"):
            s1, b1, s2, b2 = state[f"{src}cond_mlp.1.{kind}"].split(d)
            g1, g2 = state[f"{src}gate_mlp.1.{kind}"].split(d)
            if kind == "bias":                       # their gate multiplies by (1 + g)
                g1, g2 = g1 + 1, g2 + 1
            mapped[f"{dst}adaLN_modulation.1.{kind}"] = torch.cat([b1, s1, g1, b2, s2, g2])
    used = {"in_conv.weight", "in_conv.bias", "classes_emb.weight", "out_proj.weight",
            "out_proj.bias", "freqs", "out_mod.1.weight", "out_mod.1.bias"}
    used |= {f"time_emb.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")}
    used |= {f"layers.{n}.{part}.{k}" for n in range(depth) for k in ("weight", "bias")
             for part in ("hom.ho_proj", "hom.se_proj", "hom.ag_proj", "ffw.0", "ffw.2",
                          "cond_mlp.1", "gate_mlp.1")}
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise ValueError(f"{where}: unexpected keys {unexpected[:8]} (not a plain "
                         "ClassConditionalDiH: registers or learnable positions?)")
    _load_exact(model, mapped, where)
    return model.eval()


__all__ = ["load_dit_checkpoint", "load_homm_checkpoint"]
