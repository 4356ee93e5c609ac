"""Train the digits-backend classifier and write its weights and record (JSON) atomically.

    python -m pomlab.metrics.train_digits_classifier            # rewrites the committed weights
    python -m pomlab.metrics.train_digits_classifier --out DIR --steps 200

Retraining changes the weights' hash and so invalidates every cached digits-backend statistic.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..cli import ConfigParser, run
from .digits_classifier import DEFAULT_INFO, DEFAULT_WEIGHTS, TrainSettings, save_classifier, \
    train_classifier


def main(argv: list[str] | None = None) -> dict:
    parser = ConfigParser(description=__doc__)
    parser.add_fields(TrainSettings)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS.parent,
                        help="folder for digits_classifier.pt/.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, record = train_classifier(TrainSettings(**parser.given(args, TrainSettings)),
                                     progress=not args.no_progress)
    weights, info = args.out / DEFAULT_WEIGHTS.name, args.out / DEFAULT_INFO.name
    save_classifier(model, record, weights, info)
    print(json.dumps({k: record[k] for k in ("train_accuracy", "heldout_accuracy", "train_seconds")}))
    print(f"wrote {weights} and {info}")
    return record


if __name__ == "__main__":
    run(main)
