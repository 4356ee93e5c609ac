"""Property checks for any token mixer: the properties the PoM paper proves, as a library.

A mixer is anything called as ``mixer(x, context=None, mask=None)`` with pomlab's mask
semantics (``pomlab.PoM``, ``pomlab.MHA``, a ``Polymorpher`` block, or your own module);
``step(x, state=None) -> (y, state)`` when it mixes frame by frame. Each check returns a
``PropertyReport`` (property, holds, measured deviation, tolerance, worst case) and has an
``assert_`` twin for pytest:

* ``check_equivariance``: f(XP) = f(X)P (Prop. 1), also with a permuted padding mask;
* ``check_context_invariance``: cross-mixing ignores the order of the context tokens;
* ``check_causality``: tokens a mask hides do not change a query's output (by perturbation;
  padding, per-query, causal and block-causal masks, self- and cross-mixing);
* ``check_step``: ``step`` over frames equals forward with the block-causal mask;
* ``check_contextual_mapping``: Definition 3.1 on a quantised grid (Lemma 3);
* ``check_universal_approximation``: held-out errors on toy seq2seq tasks beside PoM, MHA
  and the token-wise MLP.

``run_all(factory, dim)`` runs them all; ``python -m pomlab.properties MODULE:FACTORY``
prints them as a table. Strategies for hypothesis tests are in ``pomlab.testing``.
docs/properties.md has a worked example.
"""
from .checks import (MASK_KINDS, UA_FULL, UA_QUICK, PropertyReport, assert_causality,
                     assert_context_invariance, assert_contextual_mapping, assert_equivariance,
                     assert_step, assert_universal_approximation, check_causality,
                     check_context_invariance, check_contextual_mapping, check_equivariance,
                     check_step, check_universal_approximation, default_tolerance)
from .mixers import MixerError, check_signature, load_factory
from .runner import CHECKS, build_mixer, run_all

__all__ = [
    "PropertyReport", "default_tolerance", "MASK_KINDS", "UA_QUICK", "UA_FULL",
    "check_equivariance", "check_context_invariance", "check_causality", "check_step",
    "check_contextual_mapping", "check_universal_approximation",
    "assert_equivariance", "assert_context_invariance", "assert_causality", "assert_step",
    "assert_contextual_mapping", "assert_universal_approximation",
    "run_all", "build_mixer", "CHECKS", "MixerError", "check_signature", "load_factory",
]
