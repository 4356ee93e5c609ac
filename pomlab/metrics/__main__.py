"""Ad-hoc FID/IS of saved samples against a reference set.

    python -m pomlab.metrics --backend digits --real digits --fake samples.npz
    python -m pomlab.metrics --backend digits --real digits:heldout --fake DIR --json
    python -m pomlab.metrics --backend inception --real REAL_DIR --fake FAKE_DIR --weights W.pth
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..io import atomic_write
from .api import describe, evaluate, fid, inception_score_with_std
from .backends import BACKENDS, get_backend
from .reference import reference_datasets
from .sample_files import load_samples
from .scores import IS_SPLITS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m pomlab.metrics",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake", required=True, help="folder of PNGs or .npz of generated images")
    parser.add_argument("--real", default="digits",
                        help=f"dataset[:split] from {reference_datasets()} or a folder/.npz of real "
                             "images (default: digits, i.e. digits:train)")
    parser.add_argument("--backend", choices=BACKENDS, default="digits")
    parser.add_argument("--size", type=int, default=None,
                        help="pixels at which dataset references are loaded (default: fake size)")
    parser.add_argument("--key", default=None, help="array name inside an .npz")
    parser.add_argument("--weights", default=None, help="backend weights file (default: built-in "
                        "digits classifier / torch hub cache for Inception)")
    parser.add_argument("--splits", type=int, default=IS_SPLITS, help="IS splits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the IS split permutation")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-cache", action="store_true", help="do not read/write cached statistics")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    fake = load_samples(args.fake, key=args.key)
    backend = get_backend(args.backend, weights=args.weights, device=args.device)
    dataset, _, split = args.real.partition(":")
    if dataset in reference_datasets():
        result = evaluate(fake, dataset, split or "train", backend, size=args.size, splits=args.splits,
                          seed=args.seed, cache=not args.no_cache, batch_size=args.batch_size)
    else:
        real = load_samples(args.real, key=args.key)
        is_mean, is_std = inception_score_with_std(fake, backend, splits=args.splits,
                                                   seed=args.seed, batch_size=args.batch_size)
        result = {"fid": fid(real, fake, backend, batch_size=args.batch_size),
                  "is_mean": is_mean, "is_std": is_std, **backend.labels, "n_fake": len(fake),
                  "n_real": len(real), "reference": str(args.real),
                  "image_size": f"{fake.shape[-2]}x{fake.shape[-1]}", "is_splits": args.splits}
    result["fake"] = str(args.fake)
    text = json.dumps(result, indent=2)
    print(text if args.json else describe(result))
    if args.out is not None:
        atomic_write(args.out, lambda handle: handle.write(text.encode() + b"\n"))
    return result


if __name__ == "__main__":
    try:
        main()
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
