"""Lemma 3, steps 2-3: power sums separate multisets, and the integer readout's constants.

* Newton's identities  j·e_j = sum_{i=1..j} (-1)^(i-1) e_{j-i} p_i  (symbolic tokens), so the
  power sums p_1..p_n fix e_1..e_n, hence the monic polynomial prod_i (z - t_i), hence the
  multiset {t_i}.
* Exhaustively: on the alphabet {1..T}, (p_1..p_k) is injective on multisets of size n when
  k = n; with k = n - 1 it is not (Prouhet-Tarry-Escott collisions).
* The mixed-radix readout Phi(S) = sum_m R_m p_m(S), R_1 = 1, R_{m+1} = R_m B_m with
  B_m = n (T^m - 1) + 1: the telescoping bound sum_{m<m*} R_m (B_m - 1) = R_m* - 1 < R_m*
  (symbolic in the B_m), the digit bound |p_m(S) - p_m(S')| <= n (T^m - 1) = B_m - 1,
  and (exhaustively) |Phi(S) - Phi(S')| >= 1 for S != S'.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import Claim, main_for  # noqa: E402


def elementary_and_power_sums(n: int):
    t = sp.symbols(f"t1:{n + 1}")
    z = sp.Symbol("z")
    poly = sp.Poly(sp.prod([z - ti for ti in t]), z)
    coeffs = poly.all_coeffs()                        # z^n, z^(n-1), ..., z^0
    e = [sp.expand((-1) ** j * coeffs[j]) for j in range(n + 1)]   # e_0 = 1
    p = [None] + [sp.expand(sum(ti ** m for ti in t)) for m in range(1, n + 1)]
    return e, p


def check_newton(n_max: int, sign: int = -1) -> tuple[bool, str]:
    """j e_j = sum_{i=1..j} sign^(i-1) e_{j-i} p_i for every j <= n <= n_max (true for sign -1)."""
    for n in range(1, n_max + 1):
        e, p = elementary_and_power_sums(n)
        for j in range(1, n + 1):
            rhs = sum(sp.Integer(sign) ** (i - 1) * e[j - i] * p[i] for i in range(1, j + 1))
            if sp.expand(j * e[j] - rhs) != 0:
                return False, f"identity fails at n={n}, j={j}"
    return True, f"Newton's identities hold for n <= {n_max}"


def power_sum_vectors(n: int, k: int, T: int) -> dict:
    """Multisets of size n over {1..T}, keyed by their power-sum vector (p_1..p_k)."""
    table: dict = {}
    for S in itertools.combinations_with_replacement(range(1, T + 1), n):
        table.setdefault(tuple(sum(s ** m for s in S) for m in range(1, k + 1)), []).append(S)
    return table


def check_power_sums_separate(n: int, k: int, T: int) -> tuple[bool, str]:
    """(p_1..p_k) is injective on multisets of size n over {1..T}."""
    table = power_sum_vectors(n, k, T)
    collisions = [v for v in table.values() if len(v) > 1]
    if collisions:
        return False, f"collision {collisions[0][0]} vs {collisions[0][1]} (n={n}, k={k}, T={T})"
    return True, f"{len(table)} multisets (n={n}, T={T}) have distinct (p_1..p_{k})"


def proof_radices(n: int, T: int) -> list[int]:
    """B_1..B_(n-1) of the proof: B_m = n (T^m - 1) + 1, one more than the largest digit."""
    return [n * (T ** m - 1) + 1 for m in range(1, n)]


def place_values(radices: list[int]) -> list[int]:
    R = [1]
    for b in radices:
        R.append(R[-1] * b)
    return R


def check_telescoping(m_max: int, digit_fraction=1) -> tuple[bool, str]:
    """Signed digits |D_m| <= f (B_m - 1) cannot cancel the top digit (true for f <= 1).

    For symbolic radices B_m >= 2 and every m* <= m_max: sum_{m<m*} R_m f (B_m - 1) equals
    f (R_m* - 1) (telescoping) and that is < R_m* <= |R_m* D_m*|, so Phi(S) != Phi(S').
    """
    B = sp.symbols(f"B1:{m_max + 1}", positive=True)
    b_ge_2 = {b: b + 2 for b in B}                    # B_m = (positive) + 2 >= 2
    R = [sp.Integer(1)] + place_values(list(B))[1:]
    f = sp.nsimplify(digit_fraction)
    for m_star in range(1, m_max + 1):
        tail = sum((R[m - 1] * f * (B[m - 1] - 1) for m in range(1, m_star)), sp.Integer(0))
        if sp.expand(tail - f * (R[m_star - 1] - 1)) != 0:
            return False, f"telescoping fails at m*={m_star}"
        margin = sp.expand((R[m_star - 1] - tail).subs(b_ge_2))
        if not margin.is_positive:
            return False, f"tail {tail} may reach R_{m_star} (digit fraction {f})"
    return True, f"tail = {f}(R_m* - 1) < R_m* for m* <= {m_max} (symbolic B_m >= 2)"


def check_readout_separation(n: int, T: int, radices: list[int] | None = None,
                             degree: int | None = None) -> tuple[bool, str]:
    """The readout Phi = sum_{m<=degree} R_m p_m is covered by the proof and separates.

    Checks the digit bound n (T^m - 1) <= B_m - 1 for m < n (the lemma's hypothesis) and,
    exhaustively, |Phi(S) - Phi(S')| >= 1 for all distinct multisets S, S'.
    """
    radices = proof_radices(n, T) if radices is None else radices
    degree = n if degree is None else degree
    for m, b in enumerate(radices[:degree - 1], start=1):
        if n * (T ** m - 1) > b - 1:
            return False, f"digit bound fails: n(T^{m}-1) = {n * (T ** m - 1)} > B_{m} - 1"
    R = place_values(radices)
    values = sorted(sum(R[m - 1] * sum(s ** m for s in S) for m in range(1, degree + 1))
                    for S in itertools.combinations_with_replacement(range(1, T + 1), n))
    gap = min((b - a for a, b in zip(values, values[1:])), default=1)
    if gap < 1:
        return False, f"two multisets share Phi (min gap {gap}; n={n}, T={T}, degree={degree})"
    return True, f"Phi integer, min gap {gap} >= 1 over {len(values)} multisets, " \
                 f"R_n = {R[-1]} (n={n}, T={T})"


def check_counting_encoding(n: int, T: int, base: int) -> tuple[bool, str]:
    """Degree-1 remark: sum_i base^(a_i) is injective on multisets of size n over {0..T-1}.

    True for base = n + 1 (the sum lists the counts, each <= n < base, as base-(n+1) digits).
    """
    seen: dict = {}
    for S in itertools.combinations_with_replacement(range(T), n):
        value = sum(base ** a for a in S)
        if value in seen:
            return False, f"{seen[value]} and {S} both give {value} (base {base})"
        seen[value] = S
    return True, f"{len(seen)} multisets, distinct sums of {base}^a (n={n}, T={T})"


CLAIMS = [
    Claim("newton_identities", "j e_j = sum_i (-1)^(i-1) e_{j-i} p_i, n <= 6", check_newton,
          dict(n_max=6)),
    Claim("power_sums_n2", "p_1, p_2 separate pairs over {1..12}", check_power_sums_separate,
          dict(n=2, k=2, T=12)),
    Claim("power_sums_n3", "p_1..p_3 separate triples over {1..10}", check_power_sums_separate,
          dict(n=3, k=3, T=10)),
    Claim("power_sums_n4", "p_1..p_4 separate 4-multisets over {1..8}",
          check_power_sums_separate, dict(n=4, k=4, T=8)),
    Claim("counting_base_n_plus_1", "sum_i (n+1)^(a_i) separates multisets (n=4, T=6)",
          check_counting_encoding, dict(n=4, T=6, base=5)),
    Claim("telescoping", "sum_{m<m*} R_m (B_m-1) = R_m* - 1 < R_m*", check_telescoping,
          dict(m_max=6)),
    Claim("readout_n3_T9", "Phi separates by >= 1 (n=3, T=9)", check_readout_separation,
          dict(n=3, T=9)),
    Claim("readout_n4_T4", "Phi separates by >= 1 (n=4, T=4)", check_readout_separation,
          dict(n=4, T=4)),
]

FALSE_CLAIMS = [
    Claim("newton_wrong_sign", "Newton's identities without alternating signs", check_newton,
          dict(n_max=3, sign=1)),
    Claim("power_sums_k_lt_n", "p_1, p_2 separate triples over {1..5} (PTE: {1,4,4}, {2,2,5})",
          check_power_sums_separate, dict(n=3, k=2, T=5)),
    Claim("power_sums_n4_k3", "p_1..p_3 separate 4-multisets over {1..8}",
          check_power_sums_separate, dict(n=4, k=3, T=8)),
    Claim("counting_base_2", "sum_i 2^(a_i) separates 4-multisets (false: {0,0,0,2}, "
          "{0,1,1,1})", check_counting_encoding, dict(n=4, T=3, base=2)),
    Claim("telescoping_digits_too_large", "digits up to 2(B_m - 1) in absolute value cannot "
          "cancel the top digit (false: 1*B_1 - B_1 = 0)", check_telescoping,
          dict(m_max=3, digit_fraction=2)),
    Claim("readout_small_radices", "radices B_m = n (T^m - 1) are covered by the proof",
          check_readout_separation, dict(n=3, T=4, radices=[3 * 3, 3 * 15])),
    Claim("readout_degree_too_low", "Phi of degree n-1 separates (n=3, T=5)",
          check_readout_separation, dict(n=3, T=5, degree=2)),
]

if __name__ == "__main__":
    raise SystemExit(main_for(sys.modules[__name__]))
