"""Property checks for any token mixer (docs/properties.md): each ``check_*`` returns a
``PropertyReport`` and has an ``assert_`` twin for pytest; ``run_all`` and ``python -m
pomlab.properties MODULE:FACTORY`` run them all. Hypothesis strategies: ``pomlab.testing``."""
from .checks import (CAUSALITY_MASK_KINDS, CHECKS, UA_FULL, UA_QUICK, PropertyReport,
                     assert_causality, assert_context_invariance, assert_contextual_mapping,
                     assert_equivariance, assert_step, assert_universal_approximation,
                     check_causality, check_context_invariance, check_contextual_mapping,
                     check_equivariance, check_step, check_universal_approximation,
                     default_tolerance, run_all)
from .mixers import MixerError, build_mixer, check_signature, load_factory

__all__ = [
    "PropertyReport", "default_tolerance", "CAUSALITY_MASK_KINDS", "UA_QUICK", "UA_FULL",
    "check_equivariance", "check_context_invariance", "check_causality", "check_step",
    "check_contextual_mapping", "check_universal_approximation", "assert_equivariance",
    "assert_context_invariance", "assert_causality", "assert_step", "assert_contextual_mapping",
    "assert_universal_approximation", "run_all", "build_mixer", "CHECKS", "MixerError",
    "check_signature", "load_factory",
]
