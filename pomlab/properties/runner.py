"""Every check on one mixer factory: what ``python -m pomlab.properties`` runs."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from . import checks
from .checks import PropertyReport
from .mixers import MixerError, mixer_name, prepare, probe

__all__ = ["CHECKS", "build_mixer", "run_all"]

# name -> (check, settings in quick mode, settings otherwise)
CHECKS = {
    "equivariance": (checks.check_equivariance, dict(trials=2), dict(trials=3)),
    "context_invariance": (checks.check_context_invariance, dict(trials=2), dict(trials=3)),
    "causality": (checks.check_causality, dict(tokens=8, frames=4), dict(tokens=12, frames=4)),
    "step": (checks.check_step, dict(frames=3), dict(frames=5)),
    "contextual_mapping": (checks.check_contextual_mapping,
                           dict(levels=3, tokens=3, steps=150), dict(levels=4, tokens=4,
                                                                     steps=400)),
    "universal_approximation": (checks.check_universal_approximation, dict(quick=True),
                                dict(quick=False)),
}


def build_mixer(factory, dim: int, dtype: torch.dtype = torch.float64):
    """factory(dim), checked: a mixer with the right signature that mixes (2, 5, dim) tokens
    into (2, 5, dim). Raises MixerError with one clear line otherwise."""
    try:
        mixer = factory(dim)
    except Exception as e:
        raise MixerError(f"{mixer_name(factory)}({dim}) failed: {type(e).__name__}: {e}") from e
    if mixer is None or not callable(mixer):
        raise MixerError(f"{mixer_name(factory)}({dim}) returned {type(mixer).__name__}, "
                         f"expected a mixer (an nn.Module or callable)")
    prepared, _ = prepare(mixer, dim, dtype)
    probe(prepared, dim, dtype)
    return mixer


def run_all(factory, dim: int = 64, *, quick: bool = False, only=None,
            dtype: torch.dtype = torch.float64, name: str | None = None,
            progress: bool = False) -> list[PropertyReport]:
    """Run every check (or those named in ``only``) on ``factory(dim)``; the universal
    approximation check trains mixers built by ``factory`` at its own width. A check that
    raises (the mixer crashes on some input) is reported as failing, with the error."""
    only = list(CHECKS) if only is None else list(only)
    unknown = [c for c in only if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose among {list(CHECKS)}")
    mixer = build_mixer(factory, dim, dtype)
    name = name or mixer_name(mixer)
    reports = []
    bar = tqdm(only, desc="properties", disable=not progress)
    for check_name in bar:
        bar.set_postfix_str(check_name)
        check, quick_settings, full_settings = CHECKS[check_name]
        settings = quick_settings if quick else full_settings
        try:
            if check_name == "universal_approximation":
                report = check(factory, name=name, progress=progress, **settings)
            elif check_name == "contextual_mapping":
                report = check(mixer, dim, factory=factory, **settings)
            else:
                report = check(mixer, dim, dtype=dtype, **settings)
        except MixerError:
            raise
        except Exception as e:
            report = PropertyReport(check_name.replace("_", " "), False, float("nan"),
                                    float("nan"), f"raised {type(e).__name__}: {e}",
                                    "the check could not run")
        reports.append(report)
    return reports
