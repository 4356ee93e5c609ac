"""Every registered model with its parameters and forward GFLOPs (DiT's convention: forward,
batch 1, one multiply-add = one FLOP; pomlab.models.flops), built on the meta device: paper
scale at --image-size pixels (VAE latents at 1/8), the micro family at its own 16x16 pixels,
video models per clip (16 frames paper, 8 micro) with a 16-word caption (docs/models.md)."""
from __future__ import annotations

import argparse

import pandas as pd
import torch

from . import models as M
from .io import atomic_to_csv
from .models.flops import VIDEO_CAPTION_WORDS, image_side


def model_row(name: str, scale: str, image_size: int | None, **overrides) -> dict:
    with torch.device("meta"):
        model = M.create(name, scale=scale, **overrides)
    side = image_side(model, image_size)
    frames = getattr(model, "num_frames", 1)          # video models: one clip
    clip = f"{frames}x" if hasattr(model, "num_frames") else ""
    kind = " latent" if model.latent_scale > 1 else " pixels"
    return {"model": model.label, "scale": scale, "mixer": model.mixer,
            "image_px": side * model.latent_scale,
            "input": f"{clip}{side}x{side}x{model.in_channels}{kind}",
            "tokens": frames * (side // model.patch_size) ** 2,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflops": M.gflops(model, image_size)}


def zoo_table(image_size: int = 256, micro: bool = True, names: list[str] | None = None,
              video: bool = True, **overrides) -> pd.DataFrame:
    """One row per model at paper scale (``image_size`` px), then micro; video models last unless
    ``video`` is False. ``overrides`` go to every image model's ``create`` (learn_sigma=True)."""
    if names is None:
        names = M.names() + (M.video_names() if video else [])
    image = set(M.names())
    scales = [("paper", image_size)] + ([("micro", None)] if micro else [])
    return pd.DataFrame([model_row(n, scale, size, **(overrides if n in image else {}))
                         for scale, size in scales for n in names])


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(prog="python -m pomlab.zoo", description=__doc__)
    p.add_argument("--image-size", type=int, default=256, help="pixels, paper-scale models")
    p.add_argument("--learn-sigma", action="store_true",
                   help="count the DiT paper's 2x output channels (learned variance)")
    p.add_argument("--no-micro", action="store_true", help="leave out the micro family")
    p.add_argument("--no-video", action="store_true", help="leave out the video family")
    p.add_argument("--models", type=lambda text: text.split(","),
                   help="comma-separated names (default: all)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = p.parse_args(argv)
    for name in args.models or []:
        if name not in M.all_names():
            p.error(f"unknown model {name!r}; valid names: {', '.join(M.all_names())}")
    df = zoo_table(args.image_size, micro=not args.no_micro, names=args.models,
                   video=not args.no_video, learn_sigma=args.learn_sigma)
    print(f"pomlab model zoo: parameters (M) and forward GFLOPs (DiT convention: batch 1, "
          f"1 multiply-add = 1 FLOP); paper scale at {args.image_size}x{args.image_size} px "
          f"(VAE latents at 1/8), micro scale at its own pixel input; video models per clip "
          f"(frames x side x side x channels) with a {VIDEO_CAPTION_WORDS}-word caption; "
          f"learn_sigma={args.learn_sigma} (image models)")
    print(df.to_string(index=False, formatters={
        "params_M": lambda v: f"{v:.2f}" if v >= 10 else f"{v:.3f}",
        "gflops": lambda v: f"{v:.2f}" if v >= 0.1 else f"{v:.4g}"}))
    if args.csv:
        atomic_to_csv(df, args.csv)
    return df


if __name__ == "__main__":
    main()
