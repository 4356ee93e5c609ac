"""Model names -> architectures: DiT and DiPoM, sizes S/B/L/XL, patches 2/4/8, two scales.

"paper" is the DiT paper's family on 32x32x4 VAE latents of 256x256 images (latent_scale 8);
"micro" keeps the names and the compute ordering S < B < L < XL but is small enough to train
on 2 CPU cores on the embedded 16x16 grey digits (latent_scale 1: it works on pixels).
"""
from __future__ import annotations

import re
from typing import Callable

from torch import nn

from .backbone import DiffusionTransformer

SCALES = ("paper", "micro")
SIZES = ("S", "B", "L", "XL")
PATCHES = (2, 4, 8)
FAMILIES = {"DiT": "mha", "DiPoM": "pom"}          # family -> mixer in the slot

# DiT paper, Table 1: depth x width, heads.
PAPER_SIZES = {
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
}
# Small enough for a CPU sweep (head size 16 throughout). DiT-*/2 forward GFLOPs grow
# 1 : 2.7 : 7.0 : 14.1 from S to XL (paper scale: 1 : 3.8 : 13.3 : 19.6).
MICRO_SIZES = {
    "S": dict(depth=3, hidden_size=32, num_heads=2),
    "B": dict(depth=4, hidden_size=48, num_heads=3),
    "L": dict(depth=6, hidden_size=64, num_heads=4),
    "XL": dict(depth=8, hidden_size=80, num_heads=5),
}
SCALE_DEFAULTS = {
    # 256x256 images as 32x32x4 latents, ImageNet classes.
    "paper": dict(input_size=32, in_channels=4, num_classes=1000, latent_scale=8),
    # the embedded digits resized to 16x16, grey, 10 classes, pixels directly.
    "micro": dict(input_size=16, in_channels=1, num_classes=10, latent_scale=1),
}
DIT_MLP_RATIO = 4.0
# The authors' DiPoM configurations (docs/models.md): degree 2, expansion 2, MLP ratio 3 (S, B) / 2 (L, XL).
DIPOM_MLP_RATIO = {"S": 3.0, "B": 3.0, "L": 2.0, "XL": 2.0}
DIPOM_DEFAULTS = dict(degree=2, expand=2, polynomial="products")

COMMON_KEYS = ("input_size", "in_channels", "num_classes", "hidden_size", "depth", "mlp_ratio",
               "learn_sigma", "class_dropout_prob", "variant")
MIXER_KEYS = {"mha": ("num_heads",), "pom": ("degree", "expand", "polynomial")}

_NAME = re.compile(r"^(?P<family>[A-Za-z]+)-(?P<size>S|B|L|XL)/(?P<patch>\d+)$")
# Families defined elsewhere (e.g. the video DiPoM): family -> (builder, its names).
_EXTERNAL: dict[str, tuple[Callable[..., nn.Module], list[str]]] = {}


def register_family(family: str, build: Callable[..., nn.Module], family_names: list[str]) -> None:
    """Let ``create`` build another family's names: ``build(name, scale, **overrides)``."""
    if family in FAMILIES:
        raise ValueError(f"family {family!r} is built in")
    _EXTERNAL[family] = (build, list(family_names))


def names() -> list[str]:
    """The 24 image model names: DiT-S/2 ... DiT-XL/8, DiPoM-S/2 ... DiPoM-XL/8."""
    return [f"{family}-{size}/{patch}" for family in FAMILIES for size in SIZES
            for patch in PATCHES]


def all_names() -> list[str]:
    """The image models, then every registered external family's names."""
    return names() + [n for _, family_names in _EXTERNAL.values() for n in family_names]


def parse_name(name: str) -> tuple[str, str, int]:
    """"DiPoM-XL/4" -> ("DiPoM", "XL", 4); unknown names fail with the list of valid ones."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if (match is None or match["family"] not in FAMILIES
            or int(match["patch"]) not in PATCHES):
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(all_names())}")
    return match["family"], match["size"], int(match["patch"])


def default_config(name: str, scale: str = "paper") -> dict:
    """The registered architecture of ``name`` at ``scale`` (before overrides)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    family, size, patch = parse_name(name)
    mixer = FAMILIES[family]
    sizes = PAPER_SIZES if scale == "paper" else MICRO_SIZES
    cfg = {k: v for k, v in SCALE_DEFAULTS[scale].items() if k != "latent_scale"}
    cfg.update(hidden_size=sizes[size]["hidden_size"], depth=sizes[size]["depth"],
               learn_sigma=False, class_dropout_prob=0.1, variant="dit")
    if mixer == "mha":
        cfg.update(mlp_ratio=DIT_MLP_RATIO, num_heads=sizes[size]["num_heads"])
    else:
        cfg.update(mlp_ratio=DIPOM_MLP_RATIO[size], **DIPOM_DEFAULTS)
    return cfg


def create(name: str, scale: str = "paper", **overrides) -> nn.Module:
    """Build a model by name, e.g. ``create("DiPoM-S/2", scale="micro", depth=2)``.

    Overrides (any of them): input_size (the model input side: latent side for "paper",
    pixel side for "micro"), in_channels, num_classes, hidden_size, depth, mlp_ratio,
    learn_sigma, class_dropout_prob, variant ("dit", or "authors": the PoM authors' time
    embedding, 2-D positions and exact GELU, see backbone.py); num_heads for DiT; degree, expand,
    polynomial for DiPoM.
    ``create(**model.config)`` rebuilds the same architecture. Names of families added with
    ``register_family`` go to that family's builder.
    """
    family = name.split("-")[0] if isinstance(name, str) else None
    if family in _EXTERNAL:
        if name not in _EXTERNAL[family][1]:
            raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(all_names())}")
        return _EXTERNAL[family][0](name, scale, **overrides)
    cfg = default_config(name, scale)
    family, size, patch = parse_name(name)
    mixer = FAMILIES[family]
    valid = COMMON_KEYS + MIXER_KEYS[mixer]
    for key in overrides:
        if key not in valid:
            other = "DiPoM" if mixer == "mha" else "DiT"
            hint = f" (it applies to {other} models only)" if key in sum(MIXER_KEYS.values(), ()) else ""
            raise TypeError(f"create() got an unknown override {key!r} for {name}{hint}; "
                            f"valid overrides: {', '.join(valid)}")
    defaults = dict(cfg)
    cfg.update(overrides)
    model = DiffusionTransformer(mixer=mixer, patch_size=patch, **cfg)

    model.name, model.scale, model.size, model.family = name, scale, size, family
    model.latent_scale = SCALE_DEFAULTS[scale]["latent_scale"]
    model.config = {"name": name, "scale": scale, **cfg}
    changed = [f"{k}={cfg[k]}" for k in cfg if cfg[k] != defaults[k]]
    model.label = f"{name} ({', '.join([scale] + changed)})"
    return model
