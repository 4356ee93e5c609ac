"""The machine checks of the proofs: every claim holds, every false claim is rejected."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "proofs"))
import _claims  # noqa: E402

SCRIPTS = _claims.check_scripts()
MODULES = {p.stem: _claims.load(p) for p in SCRIPTS}


def test_check_all_script_exits_zero():
    result = subprocess.run([sys.executable, str(ROOT / "proofs" / "check_all.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL CHECKS PASS" in result.stdout


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_check_function_is_shown_to_fail(name):
    """Each check function used by a true claim is also given a false claim somewhere."""
    module = MODULES[name]
    assert module.CLAIMS and module.FALSE_CLAIMS
    used = {c.check for c in module.CLAIMS}
    refuted = {c.check for c in module.FALSE_CLAIMS}
    assert used <= refuted, f"never given a false claim: {[f.__name__ for f in used - refuted]}"


@pytest.mark.parametrize("claim", [c for m in MODULES.values() for c in m.FALSE_CLAIMS],
                         ids=lambda c: c.name)
def test_false_claim_fails(claim):
    outcome = claim.evaluate()
    assert not outcome.holds, outcome.detail


def test_runner_reports_a_false_claim_listed_as_true():
    """check_all's verdict goes red when a false claim sits among the claims."""
    false = MODULES["check_power_sums"].FALSE_CLAIMS[0]
    assert _claims.run_claims([false], expect=True, label="claim", verbose=False) is False
    true = MODULES["check_power_sums"].CLAIMS[0]
    assert _claims.run_claims([true], expect=False, label="false", verbose=False) is False


def test_proof_constants_match_the_torch_construction():
    """pomlab.theory implements the constants the proofs check (G*, place values, degree)."""
    import sympy as sp

    from pomlab.theory import G_STAR, lemma_degree, readout_place_values
    gelu, power_sums, cm = (MODULES[k] for k in ("check_gelu", "check_power_sums",
                                                  "check_contextual_mapping"))
    assert float(sp.N(gelu.G_STAR, 30)) == pytest.approx(G_STAR, rel=1e-15)
    for n, T in [(2, 7), (3, 9), (4, 5), (5, 4)]:
        k = cm.lemma_degree(n)
        assert k == lemma_degree(n)
        assert power_sums.place_values(power_sums.proof_radices(n, T))[:k] == \
            readout_place_values(n, T, k)
