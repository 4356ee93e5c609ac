"""Theorem 2, the token-wise steps: interpolation (Lemma A), ramp quantiser, positions.

* Lemma A: psi(s) = y_1 + sum_{m=1}^{N-1} (sigma_m - sigma_{m-1}) ReLU(s - s_m), with
  sigma_0 = 0 and sigma_m = (y_{m+1} - y_m) / (s_{m+1} - s_m), equals y_j at every s_j
  (symbolic points s_1 < ... < s_N and values y_j): one hidden ReLU layer of width N - 1
  realises any map on N distinct scalars exactly.
* Ramp quantiser: Q_eta(x) = delta sum_{b=1}^{L-1} ramp((x - b delta + eta) / eta), with
  ramp(s) = ReLU(s) - ReLU(s - 1), equals the step quantiser delta min(floor(x/delta), L-1)
  on [0, 1] outside the boundary layers U_b (b delta - eta, b delta), symbolically in
  0 < eta < delta; the layers have total length (L - 1) eta.
* Positional encoding: adding i to every coordinate of token i and quantising on [0, n)^d
  makes the multiset of token ids determine the whole sequence (ids of different positions
  are disjoint), so Lemma 3's multiset argument gives Definition 3.1 with L != L'.
"""
from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import Claim, main_for  # noqa: E402


def relu(z):
    return sp.Max(0, z)


def interpolant(s_points, y_points, variant: str = "slope_changes"):
    """psi of Lemma A as a function of s (variant "slopes" is the classic mistake)."""
    N = len(s_points)
    sigma = [sp.Integer(0)] + [(y_points[m + 1] - y_points[m]) / (s_points[m + 1] - s_points[m])
                               for m in range(N - 1)]
    if variant == "slope_changes":
        coeffs = [sigma[m] - sigma[m - 1] for m in range(1, N)]
    else:
        coeffs = [sigma[m] for m in range(1, N)]
    return lambda s: y_points[0] + sum(c * relu(s - s_points[m]) for m, c in enumerate(coeffs))


def check_interpolation(n_points: int, variant: str = "slope_changes") -> tuple[bool, str]:
    """psi(s_j) = y_j for symbolic s_1 < ... < s_N (s_{m+1} = s_m + d_m, d_m > 0) and y_j."""
    s1 = sp.Symbol("s1", real=True)
    d = sp.symbols(f"d1:{n_points}", positive=True)
    s_points = [s1 + sum(d[:m]) for m in range(n_points)]
    y_points = list(sp.symbols(f"y1:{n_points + 1}", real=True))
    psi = interpolant(s_points, y_points, variant)
    for j, (sj, yj) in enumerate(zip(s_points, y_points)):
        if sp.simplify(psi(sj) - yj) != 0:
            return False, f"psi(s_{j + 1}) != y_{j + 1} ({variant})"
    return True, f"psi interpolates {n_points} symbolic points exactly with {n_points - 1} ReLUs"


def _ramp(z):
    return relu(z) - relu(z - 1)


def check_ramp_quantiser(levels: int, include_boundary_layers: bool = False,
                         samples: int = 200, seed: int = 0) -> tuple[bool, str]:
    """Q_eta = step quantiser on [0, 1] minus the boundary layers, for every 0 < eta < delta.

    Symbolic part: eta = delta / (1 + r) with r > 0; on cell b, x = b delta + s with
    0 <= s <= delta - eta, every ramp argument is >= 1 (ramps b' <= b) or <= 0 (b' > b) at
    both ends of the cell (the arguments are affine in s). Sampled part: exact rationals
    x in [0, 1], optionally also inside the boundary layers (where the claim is false).
    """
    delta = sp.Rational(1, levels)
    r = sp.Symbol("r", positive=True)
    eta = delta / (1 + r)
    for b in range(levels):
        ends = [b * delta, (b + 1) * delta - eta] if b < levels - 1 else [b * delta, 1]
        for b2 in range(1, levels):
            for x in ends:
                arg = sp.simplify((x - b2 * delta + eta) / eta)
                ok = (arg - 1).is_nonnegative if b2 <= b else (-arg).is_nonnegative
                if not ok:
                    return False, f"ramp {b2} not saturated on cell {b} (argument {arg})"
    rng = random.Random(seed)
    eta_val = delta / rng.choice([2, 7, 100])
    for _ in range(samples):
        x = sp.Rational(rng.randrange(0, 10 ** 6 + 1), 10 ** 6)
        in_layer = any(b * delta - eta_val < x < b * delta for b in range(1, levels))
        if in_layer and not include_boundary_layers:
            continue
        q = delta * sum(_ramp((x - b * delta + eta_val) / eta_val) for b in range(1, levels))
        step = delta * min(sp.floor(x / delta), levels - 1)
        if q != step:
            return False, f"Q_eta({x}) = {q} != {step} (eta = {eta_val})"
    layers = sp.Union(*[sp.Interval.open(b * delta - eta_val, b * delta)
                        for b in range(1, levels)])
    if layers.measure != (levels - 1) * eta_val:
        return False, f"boundary layers measure {layers.measure}"
    return True, f"exact outside layers of total length (L-1) eta (L={levels})"


def positional_ids(sequence, levels: int, dim: int, positional: bool = True) -> tuple:
    """Ids of the tokens of a sequence of grid levels (tuples of length dim) after adding
    position i to every coordinate and quantising on [0, n)^dim with step 1/levels."""
    n = len(sequence)
    base = n * levels
    return tuple(sum((g + (i * levels if positional else 0)) * base ** j
                     for j, g in enumerate(token)) for i, token in enumerate(sequence))


def check_positional_ids(n: int, levels: int, dim: int, positional: bool = True
                         ) -> tuple[bool, str]:
    """The multiset of positional token ids determines the sequence (no permutation aliasing)."""
    tokens = list(itertools.product(range(levels), repeat=dim))
    seen: dict = {}
    for seq in itertools.product(tokens, repeat=n):
        key = tuple(sorted(positional_ids(seq, levels, dim, positional)))
        if key in seen and seen[key] != seq:
            return False, f"sequences {seen[key]} and {seq} give the same multiset of ids"
        seen[key] = seq
    return True, f"{len(seen)} sequences, {len(seen)} distinct id multisets (n={n}, L={levels}, " \
                 f"d={dim})"


CLAIMS = [
    Claim("interpolation_2", "Lemma A with 2 points", check_interpolation, dict(n_points=2)),
    Claim("interpolation_6", "Lemma A with 6 points", check_interpolation, dict(n_points=6)),
    Claim("ramp_quantiser_L4", "ramp quantiser exact off the layers (L=4)",
          check_ramp_quantiser, dict(levels=4)),
    Claim("ramp_quantiser_L7", "ramp quantiser exact off the layers (L=7)",
          check_ramp_quantiser, dict(levels=7)),
    Claim("positional_ids_n3", "positional ids determine the sequence (n=3, L=3, d=1)",
          check_positional_ids, dict(n=3, levels=3, dim=1)),
    Claim("positional_ids_d2", "positional ids determine the sequence (n=2, L=2, d=2)",
          check_positional_ids, dict(n=2, levels=2, dim=2)),
]

FALSE_CLAIMS = [
    Claim("interpolation_slopes", "psi with slopes instead of slope changes interpolates",
          check_interpolation, dict(n_points=3, variant="slopes")),
    Claim("ramp_quantiser_everywhere", "the ramp quantiser is exact inside the layers too",
          check_ramp_quantiser, dict(levels=4, include_boundary_layers=True, samples=4000)),
    Claim("no_positional_encoding", "without positions the id multiset determines the sequence",
          check_positional_ids, dict(n=2, levels=2, dim=1, positional=False)),
]

if __name__ == "__main__":
    raise SystemExit(main_for(sys.modules[__name__]))
