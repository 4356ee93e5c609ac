"""Train the micro video DiPoM on the toy moving-digit clips, then show and measure captions.

    python experiments/video.py --out runs/video                 # train (resumable) + evaluate
    python experiments/video.py --out runs/video --resume --steps 4000   # continue to step 4000

Training: pomlab.video.VideoTrainer (flow matching on whole clips through the block-causal
mask, EMA, checkpoints in OUT/checkpoints, tqdm). Evaluation, for every toy caption (40):
clips generated frame by frame (--mode sequential) by the trained EMA model and by the
untrained model (its initial weights), and real toy clips with held-out digits as the ceiling
of the measurement. Written to OUT:

    strips/<caption>.png     frames left to right; rows: trained (one per cfg), untrained, real
    gifs/<caption>.gif       the trained clip (first cfg) as an animation
    caption_following.csv    one row per clip: variant, cfg, digit_accuracy, direction_correct, ...
    caption_following_summary.csv / .json   means per (variant, cfg), with the run's labels

digit_accuracy: fraction of frames whose digit (8x8 crop around the centre of mass, resized to
16x16) the project's digits classifier (pomlab.metrics, not Inception) reads as the caption's
digit; direction_correct: centre-of-mass displacement first -> last frame points the caption's
way (pomlab.video.evaluate).
"""
import argparse
import json
import re
import time
from pathlib import Path

import _bootstrap  # noqa: F401
import numpy as np
import pandas as pd
import torch
from train import _override

from pomlab import models
from pomlab.benchmark import device_label
from pomlab.cli import HelpFormatter, run
from pomlab.data.images import from_model_range
from pomlab.data.toy_video import all_toy_captions, make_toy_videos
from pomlab.figures import video_strip_figure
from pomlab.io import atomic_to_csv, atomic_write, atomic_write_json
from pomlab.train import TrainConfig
from pomlab.video import VideoTrainer, sample
from pomlab.video.evaluate import caption_following

GIF_SCALE = 8              # 16 px frames shown at 128 px
GIF_FRAME_MS = 180


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    a = p.add_argument
    a("--out", required=True, help="run folder")
    a("--resume", action="store_true", help="continue from --out's last checkpoint")
    a("--model", default="VideoDiPoM-L/8", help="a video model name (VideoDiPoM-S..XL/2,4,8)")
    a("--scale", default="micro", choices=["micro", "paper"])
    a("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
      help="model override for pomlab.models.create, e.g. depth=2 (repeatable)")
    a("--steps", type=int, default=3000, help="8000 for the numbers in docs/video.md")
    a("--batch-size", type=int, default=32)
    a("--lr", type=float, default=2e-3)
    a("--warmup", type=int, default=100)
    a("--ema-decay", type=float, default=0.999)
    a("--num-videos", type=int, default=8192, help="toy training clips (train-split digits)")
    a("--frames", type=int, default=8)
    a("--seed", type=int, default=0)
    a("--ckpt-every", type=int, default=250)
    a("--sample-steps", type=int, default=20, help="ODE steps when sampling")
    a("--method", default="euler", choices=["euler", "heun"])
    a("--cfg", default="1,3", help="comma-separated guidance scales to evaluate")
    a("--mode", default="sequential", choices=["sequential", "parallel"])
    a("--clips-per-caption", type=int, default=2)
    a("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    a("--no-progress", action="store_true")
    return p.parse_args(argv)


def slug(caption: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_")


def save_gif(clip01: torch.Tensor, path: Path) -> Path:
    """(T, 1, H, W) in [0, 1] -> an animated, looping grey GIF (written atomically)."""
    from PIL import Image

    frames = (clip01[:, 0].repeat_interleave(GIF_SCALE, -1).repeat_interleave(GIF_SCALE, -2)
              .mul(255).round().to(torch.uint8).numpy())
    images = [Image.fromarray(f, mode="L") for f in frames]
    return atomic_write(path, lambda f: images[0].save(f, format="GIF", save_all=True,
                                                       append_images=images[1:], loop=0,
                                                       duration=GIF_FRAME_MS))


def row_name(variant: str, cfg: float) -> str:
    return {"trained": f"trained\ncfg {cfg:g}", "untrained": "untrained",
            "real": "real clip\n(held-out digit)"}[variant]


def generate(model, captions, args, cfg: float, process) -> torch.Tensor:
    """[0, 1] clips on the CPU, on the sampling grid of the training process."""
    clips = sample(model, captions, args.frames, mode=args.mode, steps=args.sample_steps,
                   cfg=cfg, method=args.method, generator=torch.Generator().manual_seed(args.seed),
                   process=process)
    return from_model_range(clips.float().cpu())


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cfgs = [float(c) for c in args.cfg.split(",")]
    data = make_toy_videos(args.num_videos, frames=args.frames, split="train", seed=args.seed)
    config = TrainConfig(model=args.model, scale=args.scale, model_overrides=dict(args.override),
                         dataset=data.name, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay,
                         seed=args.seed, out=str(out), log_every=25, ckpt_every=args.ckpt_every,
                         sample_steps=args.sample_steps, sample_method=args.method,
                         samples_per_class=8)
    trainer = VideoTrainer(config, data, resume=args.resume, progress=not args.no_progress)
    tick = time.perf_counter()
    result = trainer.run()
    train_seconds = time.perf_counter() - tick
    trained = trainer.ema.module
    untrained = models.create(**trainer.model.config).to(trainer.device)  # freshly initialised
    untrained.vocab = trained.vocab             # (AdaLN-Zero: zero velocity, its clips are noise)

    captions = [c for c in all_toy_captions() for _ in range(args.clips_per_caption)]
    real = make_toy_videos(len(captions), frames=args.frames, split="heldout",
                           seed=args.seed + 1, captions=captions).videos

    runs = {}
    for cfg in cfgs:
        runs[("trained", cfg)] = generate(trained, captions, args, cfg, trainer.process)
    runs[("untrained", 1.0)] = generate(untrained, captions, args, 1.0, trainer.process)
    runs[("real", float("nan"))] = real
    labels = {"model": trained.label, "dataset": data.name, "train_steps": result.step,
              "frames": args.frames, "sampler": f"{args.method}-{args.sample_steps}",
              "mode": args.mode, "metric_backend": "pomlab digits classifier (not Inception)",
              "device": device_label(trainer.device)}
    tables = []
    for (variant, cfg), clips in runs.items():
        table = caption_following(clips, captions)
        table.insert(0, "variant", variant)
        table.insert(1, "cfg", cfg)
        table.insert(2, "clip", np.tile(np.arange(args.clips_per_caption), len(table) // args.clips_per_caption))
        tables.append(table.assign(**labels))
    table = pd.concat(tables, ignore_index=True)
    atomic_to_csv(table, out / "caption_following.csv")
    summary = (table.groupby(["variant", "cfg"], dropna=False)[["digit_accuracy", "direction_correct"]]
               .mean().reset_index().assign(clips=len(captions), **labels))
    atomic_to_csv(summary, out / "caption_following_summary.csv")
    atomic_write_json(out / "caption_following_summary.json",
                      {"summary": summary.to_dict(orient="records"),
                       "train_seconds_this_call": train_seconds,
                       "final_loss": result.final_loss})

    first = {c: captions.index(c) for c in dict.fromkeys(captions)}
    for caption, i in first.items():
        video_strip_figure({row_name(*key): clips[i] for key, clips in runs.items()},
                           out / "strips" / slug(caption), title=f'"{caption}"')
        save_gif(runs[("trained", cfgs[0])][i], out / "gifs" / f"{slug(caption)}.gif")
    print(summary[["variant", "cfg", "digit_accuracy", "direction_correct"]].to_string(index=False))
    print(json.dumps({"out": str(out), "step": result.step, "final_loss": result.final_loss,
                      "strip_rows": [f"{v} cfg={c}" for v, c in runs]}))


if __name__ == "__main__":
    run(main)
