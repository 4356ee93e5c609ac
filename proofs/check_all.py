"""Run every machine check of the proofs: `python proofs/check_all.py`.

Every claim of every proofs/check_*.py must hold and every deliberately false claim must
fail (which shows each check can fail). Exit status 0 only when both are true.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import check_scripts, load, run_claims  # noqa: E402


def run_all(verbose: bool = True) -> bool:
    start = time.perf_counter()
    ok, counts = True, [0, 0]
    for path in check_scripts():
        module = load(path)
        if verbose:
            print(path.name)
        ok &= run_claims(module.CLAIMS, True, "claim", verbose)
        ok &= run_claims(module.FALSE_CLAIMS, False, "false", verbose)
        counts[0] += len(module.CLAIMS)
        counts[1] += len(module.FALSE_CLAIMS)
    if verbose:
        print(f"{'ALL CHECKS PASS' if ok else 'SOME CHECKS FAILED'}: {counts[0]} claims, "
              f"{counts[1]} false claims rejected, {time.perf_counter() - start:.1f}s")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if run_all() else 1)
