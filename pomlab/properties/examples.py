"""Factories ``dim -> mixer`` for pomlab's own mixers, to run the command on them:
``python -m pomlab.properties pomlab.properties.examples:pom --quick``."""
from __future__ import annotations

from ..nn import MHA, Polymorpher, PoM
from ..theory.tasks import default_heads


def pom(dim: int) -> PoM:
    """PoM, the paper's "products" polynomial, degree 2, expansion 2."""
    return PoM(dim, degree=2, expand=2)


def pom_powers(dim: int) -> PoM:
    """PoM with the 2026 "powers" polynomial, degree 3."""
    return PoM(dim, degree=3, expand=2, polynomial="powers")


def mha(dim: int) -> MHA:
    """Multi-head attention, heads of about 16 features (at least one)."""
    return MHA(dim, default_heads(dim))


def polymorpher(dim: int) -> Polymorpher:
    """The Polymorpher block (pre-norm PoM + FFN, both residual)."""
    return Polymorpher(dim)
