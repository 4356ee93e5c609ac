"""Train the digits-backend classifier and write its weights and record (JSON) atomically.

    python -m pomlab.metrics.train_digits_classifier            # rewrites the committed weights
    python -m pomlab.metrics.train_digits_classifier --out DIR --steps 200

Retraining changes the weights' hash and so invalidates every cached digits-backend statistic.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import torch

from .digits_classifier import DEFAULT_INFO, DEFAULT_WEIGHTS, TrainSettings, save_classifier, \
    train_classifier


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainSettings()
    for field in fields(TrainSettings):
        default = getattr(defaults, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for digits_classifier.pt/.json (default: {DEFAULT_WEIGHTS.parent})")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})
    model, record = train_classifier(settings, progress=not args.no_progress)
    weights = DEFAULT_WEIGHTS if args.out is None else args.out / DEFAULT_WEIGHTS.name
    info = DEFAULT_INFO if args.out is None else args.out / DEFAULT_INFO.name
    save_classifier(model, record, weights, info)
    print(json.dumps({k: record[k] for k in ("train_accuracy", "heldout_accuracy", "train_seconds")}))
    print(f"wrote {weights} and {info}")
    return record


if __name__ == "__main__":
    main()
