"""Lemma 3 end to end: one residual PoM layer of degree k >= n - 1 gives a contextual mapping.

Construction (proofs/lemma3_contextual_mapping.md): token ids a in {0..T-1}, t_a = a + 1,
z_a = GELU^{-1}(t_a), alpha = 4T + 2, token value c_a = z_a / alpha. PoM of dim 1, degree k,
expansion 1: poly weights alpha (bias 0), gate weights 0 (bias 0, so sigmoid = 1/2), out
weights 2 n R_m on the m-th product term (bias 0). Then

    q(a)_i = c_{a_i} + PoM(c)_i = c_{a_i} + Phi_k(S(a)),   Phi_k(S) = sum_{m<=k} R_m p_m(S),

and q separates distinct (multiset, token) keys by at least gamma = 1 / (G* alpha).
The PoM evaluation is checked symbolically (u = GELU(alpha c_a) is the symbol t_a); the
separation is checked exhaustively at 50 significant digits with mpmath.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import mpmath as mp
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import Claim, main_for  # noqa: E402
from check_equivariance import features  # noqa: E402
from check_gelu import G_STAR  # noqa: E402
from check_power_sums import place_values, proof_radices  # noqa: E402

DIGITS = 50


def lemma_degree(n: int) -> int:
    """The degree Lemma 3 needs for n tokens: n - 1 (at least 1)."""
    return max(1, n - 1)


def constructed_weights(n: int, T: int, degree: int, out_scale: int | None = None) -> dict:
    """The proof's PoM parameters (dim 1, degree k, expansion 1) as sympy matrices."""
    alpha = 4 * T + 2
    R = place_values(proof_radices(n, T))[:degree]
    out_scale = 2 * n if out_scale is None else out_scale
    return dict(alpha=alpha, R=R,
                Wp=sp.Matrix([alpha] * degree), bp=sp.zeros(degree, 1),
                Ws=sp.zeros(degree, 1), bs=sp.zeros(degree, 1),
                Wo=sp.Matrix([[out_scale * r for r in R]]), bo=sp.zeros(1, 1))


def check_pom_computes_readout(n: int, T: int, degree: int | None = None,
                               out_scale: int | None = None) -> tuple[bool, str]:
    """With the constructed weights, PoM(c)_i = Phi_k(S) = sum_m R_m p_m exactly (symbolic t)."""
    degree = lemma_degree(n) if degree is None else degree
    w = constructed_weights(n, T, degree, out_scale)
    t = sp.symbols(f"t1:{n + 1}", positive=True)
    c = sp.symbols(f"c1:{n + 1}", positive=True)
    # u = GELU(alpha c_i) = t_i by the choice c_i = GELU^{-1}(t_i) / alpha.
    to_t = {w["alpha"] * ci: ti for ci, ti in zip(c, t)}
    h = [features(sp.Matrix([ci]), w["Wp"], w["bp"], degree, act=lambda z: to_t[z]) for ci in c]
    H = [sum(hi[m] for hi in h) / n for m in range(degree)]
    phi = sum(w["R"][m - 1] * sum(ti ** m for ti in t) for m in range(1, degree + 1))
    for ci in c:
        gate = [1 / (1 + sp.exp(-s)) for s in (w["Ws"] * sp.Matrix([ci]) + w["bs"])]
        out = (w["Wo"] * sp.Matrix([g * Hm for g, Hm in zip(gate, H)]) + w["bo"])[0]
        if sp.expand(out - phi) != 0:
            return False, f"PoM(c)_i = {sp.expand(out)} != Phi = {phi}"
    return True, f"PoM(c)_i = sum_(m<={degree}) R_m p_m for n={n} (R = {w['R']})"


def gelu_mp(x):
    return x * (1 + mp.erf(x / mp.sqrt(2))) / 2


def token_values(T: int, alpha) -> list:
    """c_a = GELU^{-1}(a + 1) / alpha at DIGITS significant digits."""
    return [mp.findroot(lambda z: gelu_mp(z) - (a + 1), a + 1) / alpha for a in range(T)]


def check_separation(n: int, T: int, degree: int | None = None, alpha=None) -> tuple[bool, str]:
    """q(a)_i = c_{a_i} + Phi_degree(S(a)) separates distinct keys (S(a), a_i) by >= gamma."""
    degree = lemma_degree(n) if degree is None else degree
    alpha = 4 * T + 2 if alpha is None else alpha
    with mp.workdps(DIGITS):
        c = token_values(T, alpha)
        gamma = 1 / (mp.mpf(sp.N(G_STAR, DIGITS + 5)) * alpha)
        if not all(0 < ca < mp.mpf(1) / 2 for ca in c):
            return False, f"token values leave (0, 1/2): max c = {mp.nstr(max(c), 8)}"
        R = place_values(proof_radices(n, T))
        values = {}                                     # key (multiset, token) -> q
        for S in itertools.combinations_with_replacement(range(T), n):
            phi = sum(R[m - 1] * sum((s + 1) ** m for s in S) for m in range(1, degree + 1))
            for a in set(S):
                values[(S, a)] = c[a] + phi
        ordered = sorted(values.values())
        gap = min(b - a for a, b in zip(ordered, ordered[1:]))
        ok = gap >= gamma
        return ok, (f"min gap {mp.nstr(gap, 6)} {'>=' if ok else '<'} gamma = 1/(G* alpha) = "
                    f"{mp.nstr(gamma, 6)} over {len(values)} keys (n={n}, T={T}, "
                    f"degree={degree})")


CLAIMS = [
    Claim("pom_computes_readout_n3", "the constructed PoM outputs Phi_2(S) (n=3)",
          check_pom_computes_readout, dict(n=3, T=9)),
    Claim("pom_computes_readout_n5", "the constructed PoM outputs Phi_5(S) (n=5, degree 5)",
          check_pom_computes_readout, dict(n=5, T=4, degree=5)),
    Claim("separation_n2_T16", "degree 1: keys separated by >= 1/(G*(4T+2)) (n=2, T=16)",
          check_separation, dict(n=2, T=16)),
    Claim("separation_n3_T9", "degree 2: keys separated by >= 1/(G*(4T+2)) (n=3, T=9)",
          check_separation, dict(n=3, T=9)),
    Claim("separation_n3_T5", "degree 2 despite the PTE pair {1,4,4}, {2,2,5} (n=3, T=5)",
          check_separation, dict(n=3, T=5)),
    Claim("separation_n4_T5", "degree 3: keys separated by >= 1/(G*(4T+2)) (n=4, T=5)",
          check_separation, dict(n=4, T=5)),
    Claim("separation_n4_T5_degree4", "degree n also works (n=4, T=5)",
          check_separation, dict(n=4, T=5, degree=4)),
    Claim("separation_n5_T4", "degree 4: keys separated by >= 1/(G*(4T+2)) (n=5, T=4)",
          check_separation, dict(n=5, T=4)),
]

FALSE_CLAIMS = [
    Claim("readout_without_gate_factor", "out weights n R_m (forgetting sigmoid(0) = 1/2)",
          check_pom_computes_readout, dict(n=3, T=9, out_scale=3)),
    Claim("separation_degree_n_minus_2", "degree n-2 separates (false, n=4, T=5: "
          "{1,1,4,4} and {1,2,2,5} share token 1 and p_1, p_2)",
          check_separation, dict(n=4, T=5, degree=2)),
    Claim("separation_small_alpha", "alpha = 2T keeps token values in (0, 1/2) (T=4)",
          check_separation, dict(n=2, T=4, alpha=8)),
]

if __name__ == "__main__":
    raise SystemExit(main_for(sys.modules[__name__]))
