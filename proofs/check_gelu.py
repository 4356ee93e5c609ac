"""Lemma 3, the activation facts: exact GELU on [0, inf) is an increasing bijection with
1/2 <= GELU' <= G* := (1 + erf 1)/2 + 1/(e sqrt(pi)) ~ 1.1289, and GELU(v) >= v/2.

GELU(v) = v Phi(v), Phi the standard normal CDF, phi its density. The checks derive
GELU'' = phi(v) (2 - v^2) symbolically; as phi > 0, GELU' increases on [0, sqrt 2] and
decreases on [sqrt 2, inf) towards 1, so on [0, inf) its minimum is GELU'(0) = 1/2 and its
maximum GELU'(sqrt 2) = G*. GELU(v) - v/2 = v (Phi(v) - 1/2) >= 0 since Phi(v) >= Phi(0) = 1/2.
"""
from __future__ import annotations

import sys
from pathlib import Path

import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import Claim, main_for  # noqa: E402

v = sp.Symbol("v", real=True)
PHI = (1 + sp.erf(v / sp.sqrt(2))) / 2                      # standard normal CDF
DENSITY = sp.exp(-v ** 2 / 2) / sp.sqrt(2 * sp.pi)          # standard normal density
GELU = v * PHI
G_STAR = (1 + sp.erf(1)) / 2 + 1 / (sp.E * sp.sqrt(sp.pi))  # max of GELU' on [0, inf)
HALF_LINE = sp.Interval(0, sp.oo)


def _le(a, b, digits: int = 40) -> bool:
    """a <= b for real constants, decided exactly when sympy can, else at `digits` digits."""
    diff = sp.simplify(b - a)
    if diff.is_nonnegative is not None:
        return bool(diff.is_nonnegative)
    return bool(sp.N(diff, digits) >= 0)


def slope_extrema() -> tuple:
    """(second derivative factor, critical points in [0, inf), inf and max of GELU' there)."""
    d1, d2 = sp.diff(GELU, v), sp.diff(GELU, v, 2)
    factor = sp.simplify(d2 / DENSITY)                     # = 2 - v^2
    critical = sp.solveset(factor, v, HALF_LINE)
    candidates = [d1.subs(v, 0), sp.limit(d1, v, sp.oo)] + [d1.subs(v, c) for c in critical]
    return factor, critical, d1, candidates


def check_second_derivative(factor: str) -> tuple[bool, str]:
    """GELU''(v) = phi(v) * factor(v), factor given as text in v (true for "2 - v**2")."""
    claimed = sp.sympify(factor, locals={"v": v})
    d2 = sp.diff(GELU, v, 2)
    ok = sp.simplify(d2 - DENSITY * claimed) == 0
    return ok, f"GELU''(v) {'=' if ok else '!='} phi(v) ({claimed})"


def check_slope_bounds(lower, upper) -> tuple[bool, str]:
    """lower <= GELU'(v) <= upper for every v >= 0."""
    factor, critical, d1, candidates = slope_extrema()
    if not DENSITY.is_positive:
        return False, "density not provably positive"
    if set(critical) != {sp.sqrt(2)}:
        return False, f"unexpected critical points {critical}"
    # GELU' is monotone between 0, sqrt 2 and inf, so its extremes are among the candidates.
    smallest = min(candidates, key=lambda c: sp.N(c, 40))
    largest = max(candidates, key=lambda c: sp.N(c, 40))
    if sp.simplify(largest - G_STAR) != 0:
        return False, f"max of GELU' is {largest}, not G*"
    ok = _le(lower, smallest) and _le(largest, upper)
    return ok, (f"min GELU' = {smallest}, max = G* = {sp.N(G_STAR, 8)}; claimed "
                f"[{sp.N(lower, 6)}, {sp.N(upper, 6)}]")


def check_lower_line(slope) -> tuple[bool, str]:
    """GELU(v) >= slope * v for every v >= 0 (true iff slope <= min Phi = 1/2)."""
    if sp.simplify(GELU - slope * v - v * (PHI - slope)) != 0:
        return False, "factorisation failed"
    if not sp.simplify(sp.diff(PHI, v) - DENSITY) == 0:
        return False, "Phi' != phi"
    phi_min = PHI.subs(v, 0)                            # Phi increasing: min at v = 0
    ok = _le(slope, phi_min)
    return ok, f"GELU(v) - {slope} v = v (Phi(v) - {slope}), min Phi on [0, inf) = {phi_min}"


CLAIMS = [
    Claim("gelu_second_derivative", "GELU'' = phi (2 - v^2)", check_second_derivative,
          dict(factor="2 - v**2")),
    Claim("gelu_slope_bounds", "1/2 <= GELU' <= G* on [0, inf)", check_slope_bounds,
          dict(lower=sp.Rational(1, 2), upper=G_STAR)),
    Claim("gelu_slope_decimal_bound", "GELU' <= 1.129 on [0, inf)", check_slope_bounds,
          dict(lower=sp.Rational(1, 2), upper=sp.Rational(1129, 1000))),
    Claim("gelu_above_half_line", "GELU(v) >= v/2 on [0, inf)", check_lower_line,
          dict(slope=sp.Rational(1, 2))),
]

FALSE_CLAIMS = [
    Claim("gelu_second_derivative_wrong", "GELU'' = phi (1 - v^2) (false)",
          check_second_derivative, dict(factor="1 - v**2")),
    Claim("gelu_slope_at_most_one", "GELU' <= 1 on [0, inf) (false: GELU'(sqrt 2) > 1)",
          check_slope_bounds, dict(lower=sp.Rational(1, 2), upper=1)),
    Claim("gelu_slope_at_least_0.6", "GELU' >= 0.6 on [0, inf) (false: GELU'(0) = 1/2)",
          check_slope_bounds, dict(lower=sp.Rational(3, 5), upper=G_STAR)),
    Claim("gelu_above_0.6_line", "GELU(v) >= 0.6 v on [0, inf) (false near 0)",
          check_lower_line, dict(slope=sp.Rational(3, 5))),
]

if __name__ == "__main__":
    raise SystemExit(main_for(sys.modules[__name__]))
