"""Train an image model (DiT or DiPoM) with flow matching or diffusion; resumable; DDP via torchrun.

    python experiments/train.py --model DiPoM-S/2 --scale micro --dataset digits --steps 2000 --out runs/s2
    python experiments/train.py ... --out runs/s2 --resume          # continue from the last checkpoint
    torchrun --nproc_per_node 8 experiments/train.py --model DiPoM-XL/2 --scale paper \\
        --dataset latents --data-path data/imagenet256_latents --batch-size 256 --steps 400000 --out runs/xl2

    python experiments/train.py --config runs/s2/config.yaml --out runs/s2_again   # repeat a run

See docs/training.md. Every flag is a field of pomlab.train.TrainConfig (same name).
"""
import argparse
import json
import os
import sys
import time

import _bootstrap  # noqa: F401

from pomlab.cli import ConfigParser, run
from pomlab.models.registry import parse_name
from pomlab.train import TrainConfig, train


def default_run_folder(model: str, root: str = "runs") -> str:
    """runs/train-<model>-<YYYYmmdd-HHMMSS>, a name no earlier run has taken."""
    stem = f"{root}/train-{model.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = stem, 1
    while os.path.exists(name):
        n += 1
        name = f"{stem}-{n}"
    return name


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    p = ConfigParser(description=__doc__)
    p.add_fields(TrainConfig, defaults={"out": "a new runs/train-<model>-<time>"})
    p.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    config = TrainConfig(**p.given(args, TrainConfig))
    if config.data_path is not None and config.dataset == "digits":
        raise ValueError(f"--data-path does not apply to --dataset digits (embedded, no files), "
                         f"got {config.data_path!r}: pass --dataset folder, cifar10 or latents")
    if config.data_path is not None and not os.path.exists(config.data_path):
        raise FileNotFoundError(f"--data-path {config.data_path!r} does not exist")
    if config.out is None:
        if args.resume:
            raise ValueError("--resume needs --out (the run folder to continue)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("--out is required under torchrun (every rank must write the same "
                             "folder)")
        config.out = default_run_folder(config.model)
        args.default_out = True
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
