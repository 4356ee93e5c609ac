"""FID/IS (and precision/recall, KID) of saved samples against a reference set; docs/metrics.md."""
from __future__ import annotations

import json
from pathlib import Path

from ..cli import ConfigParser, run
from ..io import atomic_write_text
from .api import describe, evaluate, reference_datasets
from .backends import BACKENDS
from .images import load_samples
from .scores import IS_SPLITS


def main(argv: list[str] | None = None) -> dict:
    parser = ConfigParser(prog="python -m pomlab.metrics", description=__doc__.split(";")[0])
    parser.add_argument("--fake", required=True, help="folder of PNGs or .npz of generated images")
    parser.add_argument("--real", default="digits", help=f"dataset[:split] from "
                        f"{reference_datasets()} (split: train) or a folder/.npz of real images")
    parser.add_argument("--backend", choices=BACKENDS, default="digits")
    parser.add_argument("--size", type=int, help="side of dataset references (default: fake side)")
    parser.add_argument("--key", help="array name inside an .npz")
    parser.add_argument("--weights", help="weights file (default: built-in / torch hub cache)")
    parser.add_argument("--splits", type=int, default=IS_SPLITS, help="IS splits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the IS split permutation")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device")
    parser.add_argument("--no-cache", action="store_true", help="no cached reference statistics")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    dataset, _, split = args.real.partition(":")
    registered = dataset in reference_datasets()
    result = evaluate(load_samples(args.fake, key=args.key),
                      dataset if registered else load_samples(args.real, key=args.key),
                      split or "train", args.backend, size=args.size, splits=args.splits,
                      seed=args.seed, cache=not args.no_cache, batch_size=args.batch_size,
                      device=args.device, weights=args.weights)
    result["fake"] = args.fake
    if not registered:
        result["reference"] = args.real                     # the folder or file, not "real"
    text = json.dumps(result, indent=2)
    print(text if args.json else describe(result))
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    return result


if __name__ == "__main__":
    run(main)
