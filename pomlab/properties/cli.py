"""Check a token mixer for the properties the PoM paper proves (permutation equivariance,
context-order invariance, mask causality, step = block-causal forward, contextual mapping,
universal approximation), as a table. Exit status 0 when every property that applies holds,
1 when one fails, 2 on bad input (one line on stderr, no traceback)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path

import torch

from ..io import atomic_write_text
from .checks import CHECKS, run_all
from .mixers import MixerError, load_factory

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2e}"


def format_table(reports, width: int = 100) -> str:
    """One row per property: result, measured vs tolerance, worst case (or why n/a)."""
    head = f"{'property':<30} {'result':<6} {'measured':>9}    {'tolerance':<9}  worst case / note"
    lines = [head, "-" * len(head)]
    for r in reports:
        note = (f"does not apply: {r.reason}" if not r.applies else
                r.worst_case + (f" [{r.reason}]" if r.reason else ""))
        compare = f"{r.passes_when:>2}" if r.applies else "  "
        first = (f"{r.property:<30} {r.verdict:<6} {_fmt(r.measured):>9} {compare} "
                 f"{_fmt(r.tolerance):<9}  ")
        wrapped = textwrap.wrap(note, max(40, width - len(first))) or [""]
        lines.append(first + wrapped[0])
        lines += [" " * len(first) + w for w in wrapped[1:]]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pomlab.properties", description=__doc__)
    p.add_argument("factory", metavar="MODULE:FACTORY", help="a callable dim -> mixer in MODULE, "
                   "a dotted module or a path to a .py file (e.g. my_mixer.py:make_mixer)")
    p.add_argument("--dim", type=int, default=64, help="token feature size (default 64)")
    p.add_argument("--quick", action="store_true", help="small settings: seconds, one toy task")
    p.add_argument("--only", help=f"comma-separated checks among {','.join(CHECKS)} (default: all)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float64",
                   help="dtype of the exactness checks (default float64)")
    p.add_argument("--seed", type=int, default=0, help="torch seed before building the mixer")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: more only add overhead on tiny models)")
    p.add_argument("--json", type=Path, default=None, help="also write the reports to this file")
    p.add_argument("--traceback", action="store_true", help="show tracebacks of bad input")
    args = p.parse_args(argv)
    try:
        for flag, value in (("--dim", args.dim), ("--threads", args.threads)):
            if value < 1:
                raise MixerError(f"{flag} must be >= 1, got {value}")
        only = None if args.only is None else [c.strip() for c in args.only.split(",") if c.strip()]
        if only is not None and (not only or any(c not in CHECKS for c in only)):
            raise MixerError(f"--only must name checks among {','.join(CHECKS)}, got {args.only!r}")
        torch.set_num_threads(args.threads)
        factory = load_factory(args.factory)
        torch.manual_seed(args.seed)
        reports = run_all(factory, args.dim, quick=args.quick, only=only,
                          dtype=DTYPES[args.dtype], progress=True)
    except MixerError as e:
        if args.traceback:
            raise
        print(f"python -m pomlab.properties: error: {e}", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full"
    print(f"\n{args.factory}: dim {args.dim}, {args.dtype}, {mode} settings, seed {args.seed}")
    print(format_table(reports))
    for r in reports:
        if r.property == "universal approximation" and r.applies and "table" in r.details:
            print(f"\nheld-out relative MSE by task (1 = predicting the mean; {r.reason}):")
            print(r.details["table"].to_string(float_format=lambda v: f"{v:.4f}"))
    failed = [r.property for r in reports if r.holds is False]
    skipped = [r.property for r in reports if r.holds is None]
    print(f"\n{len(reports) - len(failed) - len(skipped)} hold, {len(failed)} fail"
          + (f" ({', '.join(failed)})" if failed else "")
          + (f", {len(skipped)} do not apply" if skipped else ""))
    if args.json is not None:
        rows = [dict(r.as_row(), mixer=args.factory, dim=args.dim, dtype=args.dtype, mode=mode,
                     seed=args.seed) for r in reports]
        atomic_write_text(args.json, json.dumps(rows, indent=1, default=float) + "\n")
    return 1 if failed else 0
