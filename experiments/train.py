"""Train an image model (DiT or DiPoM) with flow matching or diffusion; resumable; DDP via torchrun.

    python experiments/train.py --model DiPoM-S/2 --scale micro --dataset digits --steps 2000 --out runs/s2
    python experiments/train.py ... --out runs/s2 --resume          # continue from the last checkpoint
    torchrun --nproc_per_node 8 experiments/train.py --model DiPoM-XL/2 --scale paper \\
        --dataset latents --data-path data/imagenet256_latents --batch-size 256 --steps 400000 --out runs/xl2

See docs/training.md. Every flag maps to a field of pomlab.train.TrainConfig.
"""
import argparse
import ast
import json
import os
import sys
import time

import _bootstrap  # noqa: F401

from pomlab.cli import HelpFormatter, run
from pomlab.data import DATASETS
from pomlab.diffusion import CONVENTIONS, PROCESSES
from pomlab.models.registry import parse_name
from pomlab.train import PRECISIONS, TrainConfig, train


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--override expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _shift(text: str):
    return text if text == "auto" else float(text)


def _cfg(text: str):
    return text if text == "paper" else float(text)


def default_run_folder(model: str, root: str = "runs") -> str:
    """runs/train-<model>-<YYYYmmdd-HHMMSS>, a name no earlier run has taken."""
    stem = f"{root}/train-{model.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = stem, 1
    while os.path.exists(name):
        n += 1
        name = f"{stem}-{n}"
    return name


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    a = p.add_argument
    a("--model", default=d.model, help="e.g. DiPoM-S/2, DiT-B/4 (sizes S,B,L,XL; patch 2,4,8)")
    a("--scale", default=d.scale, choices=["micro", "paper"])
    a("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
      help="model override for pomlab.models.create, e.g. depth=2 (repeatable)")
    a("--dataset", default=d.dataset, choices=DATASETS)
    a("--data-path", default=None, help="folder for --dataset folder|cifar10|latents")
    a("--image-size", type=int, default=None, help="side in pixels (digits 16, cifar10 32, folder 256)")
    a("--channels", type=int, default=None, choices=[1, 3])
    a("--num-workers", type=int, default=d.num_workers)
    a("--hflip", action="store_true", help="random horizontal flips (image folders; DiT's default)")
    a("--loss", default=d.loss, choices=PROCESSES)
    a("--shift", type=_shift, default=None, help="flow-matching time shift: a number or 'auto'")
    a("--steps", type=int, default=d.steps)
    a("--batch-size", type=int, default=d.batch_size, help="global batch (split over DDP ranks)")
    a("--lr", type=float, default=None, help="default: 1e-4 at paper scale (DiT), 1e-2 at micro")
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--warmup", type=int, default=d.warmup, help="linear learning-rate warm-up steps")
    a("--grad-clip", type=float, default=d.grad_clip, help="max grad norm (0 = off)")
    a("--ema-decay", type=float, default=d.ema_decay)
    a("--no-ema-warmup", action="store_true", help="constant EMA decay from the first step (DiT)")
    a("--seed", type=int, default=d.seed)
    a("--precision", default=d.precision, choices=PRECISIONS)
    a("--compile", action="store_true", help="torch.compile the model")
    a("--checkpointing", action="store_true",
      help="recompute each block's activations in backward (less memory, ~1 more forward)")
    a("--accumulate", type=int, default=d.accumulate, metavar="N",
      help="split each batch into N micro-batches, one optimizer step (same math, less memory)")
    a("--device", default=d.device)
    a("--out", default=None, help="run folder: checkpoints/, samples/, metrics.csv, config.json "
                                   "(default: a new runs/train-<model>-<time>)")
    a("--resume", action="store_true", help="continue from --out's last checkpoint")
    a("--log-every", type=int, default=d.log_every)
    a("--ckpt-every", type=int, default=d.ckpt_every, help="0: only at the end")
    a("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    a("--sample-every", type=int, default=d.sample_every, help="0: only at the end")
    a("--no-final-samples", action="store_true")
    a("--sample-steps", type=int, default=d.sample_steps)
    a("--sample-method", default=None, choices=["euler", "heun", "ddim", "ddpm"])
    a("--cfg", type=_cfg, default=d.sample_cfg, help="guidance scale for sample grids, or 'paper'")
    a("--guidance", default=d.sample_guidance, choices=CONVENTIONS,
      help="how --cfg reads: standard u + w(c - u), authors c + w(c - u)")
    a("--samples-per-class", type=int, default=d.samples_per_class)
    a("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.data_path is not None and args.dataset == "digits":
        raise ValueError(f"--data-path does not apply to --dataset digits (embedded, no files), "
                         f"got {args.data_path!r}: pass --dataset folder, cifar10 or latents")
    if args.data_path is not None and not os.path.exists(args.data_path):
        raise FileNotFoundError(f"--data-path {args.data_path!r} does not exist")
    if args.out is None:
        if args.resume:
            raise ValueError("--resume needs --out (the run folder to continue)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("--out is required under torchrun (every rank must write the same "
                             "folder)")
        args.out = default_run_folder(args.model)
        args.default_out = True
    config = TrainConfig(
        model=args.model, scale=args.scale, model_overrides=dict(args.override),
        dataset=args.dataset, data_path=args.data_path, image_size=args.image_size,
        channels=args.channels, hflip=args.hflip, num_workers=args.num_workers, loss=args.loss,
        shift=args.shift, steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup=args.warmup, grad_clip=args.grad_clip or None, ema_decay=args.ema_decay,
        ema_warmup=not args.no_ema_warmup, seed=args.seed, precision=args.precision,
        compile=args.compile, checkpointing=args.checkpointing, accumulate=args.accumulate,
        device=args.device, out=args.out, log_every=args.log_every,
        ckpt_every=args.ckpt_every, keep_checkpoints=args.keep_checkpoints,
        sample_every=args.sample_every, sample_at_end=not args.no_final_samples,
        sample_steps=args.sample_steps, sample_method=args.sample_method, sample_cfg=args.cfg,
        sample_guidance=args.guidance, samples_per_class=args.samples_per_class)
    return config, args


def main(argv=None):
    config, args = parse_args(argv)
    config.validate()
    parse_name(config.model)                  # an unknown --model fails before anything is named
    if getattr(args, "default_out", False):
        print(f"run folder: {config.out} (--out to choose one)", file=sys.stderr)
    result = train(config, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"model": config.model, "scale": config.scale, "dataset": config.dataset,
                          "loss": config.loss, "step": result.step,
                          "final_loss": result.final_loss, "images_per_s": result.images_per_s,
                          "device": result.history[-1]["device"] if result.history else None,
                          "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                          "samples": str(result.samples) if result.samples else None}))
    return result


if __name__ == "__main__":
    run(main)
