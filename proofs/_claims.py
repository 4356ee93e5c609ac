"""Claims checked by machine, and the runner shared by every proofs/check_*.py script.

A claim is data: a statement in words, a check function and the arguments it is checked
with. ``check(**data)`` returns ``(holds, detail)``. Each script lists the claims the proofs
rely on (``CLAIMS``, which must hold) and deliberately false variants (``FALSE_CLAIMS``,
which must fail), so every run also shows that each check is able to fail.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    check: Callable[..., tuple[bool, str]]
    data: dict = field(default_factory=dict)

    def evaluate(self) -> "Outcome":
        start = time.perf_counter()
        holds, detail = self.check(**self.data)
        return Outcome(self, bool(holds), detail, time.perf_counter() - start)


@dataclass(frozen=True)
class Outcome:
    claim: Claim
    holds: bool
    detail: str
    seconds: float


def check_scripts() -> list[Path]:
    """Every proofs/check_*.py except the runner itself, in name order."""
    return sorted(p for p in HERE.glob("check_*.py") if p.name != "check_all.py")


def load(path: Path):
    """Import a check script by path (works both as `python proofs/x.py` and from tests)."""
    spec = importlib.util.spec_from_file_location(f"proofs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_claims(claims: list[Claim], expect: bool, label: str, verbose: bool = True) -> bool:
    """Evaluate claims; True when every one holds (expect=True) or every one fails (False)."""
    ok = True
    for claim in claims:
        out = claim.evaluate()
        good = out.holds == expect
        ok &= good
        if verbose:
            verdict = ("holds" if out.holds else "FAILS") if expect else \
                      ("fails as it should" if not out.holds else "HOLDS (check cannot fail!)")
            mark = "ok " if good else "BAD"
            print(f"  [{mark}] {label} {claim.name}: {verdict} ({out.seconds:.2f}s) - {out.detail}")
    return ok


def main_for(module) -> int:
    """Entry point of one script: its true claims must hold, its false claims must fail."""
    print(f"{Path(module.__file__).name}")
    ok = run_claims(module.CLAIMS, True, "claim")
    ok &= run_claims(module.FALSE_CLAIMS, False, "false")
    return 0 if ok else 1
