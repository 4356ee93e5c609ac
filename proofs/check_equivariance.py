"""Proposition 1 (permutation equivariance of PoM), checked with symbolic tokens.

Tokens, weights and biases are sympy symbols and the activations (GELU, sigmoid, the
powers-form clamp) are *undefined* functions, so the check covers every parameter value
and every token-wise activation at once. For each permutation P of the n tokens we expand
PoM(XP) - PoM(X)P (or the relation being claimed) and require it to be identically zero.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import Claim, main_for  # noqa: E402

ACT = sp.Function("act")        # GELU in the paper; any token-wise function here
GATE = sp.Function("gate")      # sigmoid (products) / hardsigmoid (powers)


def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda r, c: sp.Symbol(f"{name}_{r}_{c}"))


def features(x: sp.Matrix, Wp, bp, degree: int, polynomial: str = "products", alpha=None,
             act=ACT) -> list:
    """h(x) of docs/pom.md §1 (products) or §2 (powers) for one token x (a column)."""
    z = Wp * x + bp
    if polynomial == "products":
        u = [act(zi) for zi in z]
        size = len(u) // degree
        chunks = [u[p * size:(p + 1) * size] for p in range(degree)]
        terms, running = [], [sp.Integer(1)] * size
        for chunk in chunks:
            running = [r * c for r, c in zip(running, chunk)]
            terms.extend(running)
        return terms
    a = [act(zi) for zi in z]
    return [sum(alpha[c, p] * a[c] ** (p + 1) for p in range(degree)) for c in range(len(a))]


def symbolic_mixer(n: int, dim: int, degree: int, expand: int, polynomial: str = "products",
                   state: str = "mean"):
    """Symbolic PoM: returns (X, M, C, forward) with forward(X, context=None, mask=None).

    state="mean" is PoM; state="position_weighted" replaces the mean by sum_i w_i h(x_i)
    with distinct weights w_i (a deliberately non-equivariant mixer, for false claims).
    """
    width = (degree if polynomial == "products" else 1) * expand * dim
    Wp, bp = _matrix("Wp", width, dim), _matrix("bp", width, 1)
    Ws, bs = _matrix("Ws", width, dim), _matrix("bs", width, 1)
    Wo, bo = _matrix("Wo", dim, width), _matrix("bo", dim, 1)
    alpha = _matrix("alpha", width, degree)
    eps = sp.Symbol("eps", positive=True)
    X = [_matrix(f"x{i}", dim, 1) for i in range(n)]
    C = [_matrix(f"c{i}", dim, 1) for i in range(n)]
    M = _matrix("m", n, n)

    def forward(tokens, context=None, mask=None):
        context = tokens if context is None else context
        h = [features(c, Wp, bp, degree, polynomial, alpha) for c in context]
        outs = []
        for j, x in enumerate(tokens):
            if state == "position_weighted":
                weights = [sp.Integer(i + 1) for i in range(len(context))]
            elif mask is None:
                weights = [sp.Integer(1)] * len(context)
            else:
                weights = [mask[j, i] for i in range(len(context))]
            norm = (eps + sum(weights)) if mask is not None else sp.Integer(len(context))
            H = [sum(w * hi[c] for w, hi in zip(weights, h)) / norm for c in range(width)]
            g = [GATE(v) for v in (Ws * x + bs)]
            outs.append(Wo * sp.Matrix([gi * Hi for gi, Hi in zip(g, H)]) + bo)
        return outs

    return X, M, C, forward


def _identically_equal(a: list, b: list) -> bool:
    return all(sp.expand(ai - bi) == sp.zeros(*ai.shape) for ai, bi in zip(a, b))


def check_relation(relation: str, n: int = 3, dim: int = 2, degree: int = 2, expand: int = 1,
                   polynomial: str = "products", state: str = "mean") -> tuple[bool, str]:
    """Does `relation` hold for every permutation P of n symbolic tokens?

    relation: "equivariant"         PoM(XP) = PoM(X)P
              "invariant"           PoM(XP) = PoM(X)
              "context_invariant"   PoM(Y, context=CP) = PoM(Y, context=C)
              "masked_equivariant"  PoM(XP, mask=P^T M P) = PoM(X, mask=M)P, M symbolic
    """
    X, M, C, forward = symbolic_mixer(n, dim, degree, expand, polynomial, state)
    base = {"equivariant": lambda: forward(X), "invariant": lambda: forward(X),
            "context_invariant": lambda: forward(X, C), "masked_equivariant":
            lambda: forward(X, mask=M)}[relation]()
    for perm in itertools.permutations(range(n)):
        if perm == tuple(range(n)):
            continue
        Xp = [X[p] for p in perm]
        if relation == "equivariant":
            lhs, rhs = forward(Xp), [base[p] for p in perm]
        elif relation == "invariant":
            lhs, rhs = forward(Xp), base
        elif relation == "context_invariant":
            lhs, rhs = forward(X, [C[p] for p in perm]), base
        else:
            Mp = sp.Matrix(n, n, lambda r, c: M[perm[r], perm[c]])
            lhs, rhs = forward(Xp, mask=Mp), [base[p] for p in perm]
        if not _identically_equal(lhs, rhs):
            return False, f"{relation} breaks for permutation {perm}"
    return True, f"{relation} for all {sp.factorial(n)} permutations (n={n}, dim={dim}, " \
                 f"degree={degree}, {polynomial}, {state})"


CLAIMS = [
    Claim("pom_equivariant", "PoM(XP) = PoM(X)P (products form)", check_relation,
          dict(relation="equivariant", n=3, dim=2, degree=2)),
    Claim("pom_equivariant_degree3", "PoM(XP) = PoM(X)P, degree 3", check_relation,
          dict(relation="equivariant", n=3, dim=1, degree=3)),
    Claim("pom_powers_equivariant", "PoM(XP) = PoM(X)P (powers form, docs/pom.md §2)",
          check_relation, dict(relation="equivariant", n=3, dim=1, degree=2, expand=2,
                               polynomial="powers")),
    Claim("cross_context_invariant", "PoM(Y, CP) = PoM(Y, C): the context is a multiset",
          check_relation, dict(relation="context_invariant", n=3, dim=1, degree=2)),
    Claim("masked_equivariant", "PoM(XP, P^T M P) = PoM(X, M)P for any mask M",
          check_relation, dict(relation="masked_equivariant", n=3, dim=1, degree=2)),
]

FALSE_CLAIMS = [
    Claim("pom_invariant", "PoM(XP) = PoM(X) (false: the gate is token-wise)", check_relation,
          dict(relation="invariant", n=3, dim=1, degree=2)),
    Claim("position_weighted_equivariant", "a position-weighted state is equivariant (false)",
          check_relation, dict(relation="equivariant", n=3, dim=1, degree=2,
                               state="position_weighted")),
]

if __name__ == "__main__":
    raise SystemExit(main_for(sys.modules[__name__]))
