"""pomlab.properties: the checks pass on pomlab's mixers and catch a mixer built to break each
property; the command's table, exit status and one-line errors; a user file outside the package.

Tolerances are the checks' defaults (float64): relative 1e-9 for exact properties, 1e-6 for
step (PoM's eps). Broken mixers miss by orders of magnitude (measured 1e-2 to 1)."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import pomlab
from pomlab import properties as props
from pomlab.properties import broken, examples
from pomlab.properties.cli import main
from pomlab.testing import mixer_configs, seeds

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "linear_attention.py"
FACTORIES = {"pom": examples.pom, "pom_powers": examples.pom_powers, "mha": examples.mha,
             "polymorpher": examples.polymorpher}
DIM = 16


def _pom_powers_visible(dim):
    """PoM "powers" with N(0, 1) alpha: its initial alpha (~1e-3) would hide the mixing."""
    pom = examples.pom_powers(dim)
    with torch.no_grad():
        pom.alpha.normal_()
    return pom


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_structural_properties_hold_on_pomlab_mixers(name):
    factory = _pom_powers_visible if name == "pom_powers" else FACTORIES[name]
    mixer = factory(DIM)
    for check in (props.assert_equivariance, props.assert_context_invariance,
                  props.assert_causality):
        report = check(mixer, DIM)
        assert report.holds and report.measured <= report.tolerance == 1e-9
    step = props.check_step(mixer, DIM)
    if name.startswith("pom"):
        assert step.holds and step.measured <= 1e-6, step.summary()
    else:
        assert step.holds is None and "no step" in step.reason


@given(cfg=mixer_configs(), seed=seeds())
@settings(max_examples=8)
def test_equivariance_and_causality_hold_for_drawn_configurations(cfg, seed):
    mixer = cfg.build(seed=seed)
    props.assert_equivariance(mixer, cfg.dim, trials=1, seed=seed)
    props.assert_causality(mixer, cfg.dim, tokens=6, frames=3, seed=seed)


@pytest.mark.parametrize("name", ["pom", "mha"])
def test_contextual_mapping_holds_at_initialisation(name):
    report = props.assert_contextual_mapping(FACTORIES[name](DIM), DIM, train=False)
    assert report.passes_when == ">" and report.measured > report.tolerance
    assert report.details["stage"] == "at initialisation" and not report.details["positional"]


def test_contextual_mapping_fails_for_a_token_wise_map_even_trained():
    class TokenWise(nn.Module):               # mixes nothing: a function of each token alone
        def __init__(self, dim):
            super().__init__()
            self.lin = nn.Linear(dim, dim)

        def forward(self, x, context=None, mask=None):
            return self.lin(x)

    report = props.check_contextual_mapping(TokenWise(8), 8, factory=TokenWise, steps=30)
    assert report.holds is False and report.measured == 0.0
    assert "after training" in report.details["stage"]
    assert not report.details["report"].condition2


def test_contextual_mapping_of_a_causal_mixer_is_checked_with_positions():
    class Causal(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dim, self.pom = dim, pomlab.PoM(dim)

        def forward(self, x, context=None, mask=None):
            return self.pom(x, context=context, mask="causal" if mask is None else mask)

    report = props.check_contextual_mapping(Causal(8), train=False)
    assert report.details["positional"] and "with positions" in report.reason


# --- each broken mixer is caught by the check it breaks --------------------------------------

def test_positional_bias_breaks_equivariance_only():
    mixer = broken.PositionalBias(DIM)
    report = props.check_equivariance(mixer)
    assert report.holds is False and report.measured > 1e-3, report.summary()
    assert "tokens permuted as" in report.worst_case
    with pytest.raises(AssertionError, match="permutation equivariance FAILS"):
        props.assert_equivariance(mixer)
    props.assert_causality(mixer)             # a positional bias hides nothing it should not


@pytest.mark.parametrize("leak", [3, 6])
def test_leaky_causal_mixer_names_the_leaking_position(leak):
    report = props.check_causality(broken.LeakyCausal(DIM, leak=leak), kinds=("causal",),
                                   cross=False)
    assert report.holds is False and report.measured > 1e-3
    assert report.details["position"] == leak and report.details["query"] < leak
    assert f"when token {leak}, which its mask hides, changes" in report.worst_case
    assert report.details["kind"] == "causal"


def test_position_weighted_context_breaks_context_invariance_only():
    mixer = broken.PositionWeightedContext(DIM)
    report = props.check_context_invariance(mixer)
    assert report.holds is False and report.measured > 1e-3 and "context permuted" in \
        report.worst_case
    props.assert_equivariance(mixer)          # self-mixing is untouched


def test_forgetful_step_breaks_step_equivalence_from_the_second_frame():
    report = props.check_step(broken.ForgetfulStep(DIM), frames=4)
    assert report.holds is False and report.measured > 1e-3
    per_frame = report.details["per_frame"]
    assert per_frame[0] <= 1e-6 < min(per_frame[1:])    # frame 0 has no state to forget
    assert report.details["frame"] >= 1


def test_unsupported_features_are_reported_as_not_applying():
    class SelfOnly(nn.Module):
        dim = 8

        def forward(self, x, context=None, mask=None):
            if context is not None or mask is not None:
                raise NotImplementedError("self-mixing without masks only")
            return x - x.mean(1, keepdim=True)

    report = props.check_context_invariance(SelfOnly())
    assert report.holds is None and "self-mixing without masks only" in report.reason
    assert props.check_causality(SelfOnly()).holds is None
    assert props.check_step(SelfOnly()).holds is None
    eq = props.check_equivariance(SelfOnly())
    assert eq.holds and "padding mask" in eq.reason
    with pytest.raises(AssertionError, match="does not apply"):
        props.assert_step(SelfOnly())


# --- universal approximation --------------------------------------------------------------

def test_universal_approximation_quick_side_by_side():
    """`center`, n = 4, 150 steps: a token-wise map cannot go below 1/n = 0.25 relative MSE;
    PoM reaches ~0.002 (measured 0.0017), MHA ~0.003. The check holds below 0.5 x the MLP."""
    report = props.assert_universal_approximation(examples.pom, name="my PoM", quick=True)
    table = report.details["table"]
    assert list(table.columns) == ["my PoM", "PoM", "MHA", "MLP (no mixing)"]
    assert table.loc["center", "MLP (no mixing)"] > 0.225
    assert table.loc["center", "my PoM"] < 0.05 and report.measured < 0.2
    assert all(r["steps"] == 150 and r["device"] for r in report.details["rows"])


def test_universal_approximation_fails_without_mixing():
    def no_mixing(dim):
        class Zero(nn.Module):
            def forward(self, x, context=None, mask=None):
                return torch.zeros_like(x)
        return Zero()

    report = props.check_universal_approximation(no_mixing, quick=True, baselines=("none",),
                                                 steps=60)
    assert report.holds is False and report.measured > 0.8


# --- bad input: one clear line ------------------------------------------------------------

def _write(tmp_path, text, name="user_mixers.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BAD_MIXERS = """
    import torch
    from torch import nn

    class TwoArgs(nn.Module):
        def forward(self, x, y):
            return x

    class Pools(nn.Module):
        def forward(self, x, context=None, mask=None):
            return x[:, ::2]

    def wrong_signature(dim):
        return TwoArgs()

    def drops_tokens(dim):
        return Pools()

    def crashes(dim):
        raise RuntimeError("out of ideas")
"""


@pytest.mark.parametrize("factory, words", [
    ("does_not_exist", "has no factory 'does_not_exist'; callables defined there: Pools, TwoArgs, crashes, "
                       "drops_tokens, wrong_signature"),
    ("wrong_signature", "TwoArgs.forward must take (x, context=None, mask=None), but it takes "
                        "(x, y)"),
    ("drops_tokens", "Pools changed the token count: input (2, 5, 64) gave output (2, 3, 64)"),
    ("crashes", "crashes(64) failed: RuntimeError: out of ideas"),
])
def test_bad_factories_give_one_line(tmp_path, capsys, factory, words):
    path = _write(tmp_path, BAD_MIXERS)
    assert main([f"{path}:{factory}", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m pomlab.properties: error:") and "\n" not in err
    assert words in err, err


@pytest.mark.parametrize("spec, words", [
    ("no_such_module_xyz:make", "no module named 'no_such_module_xyz'"),
    ("missing_file.py:make", "no file 'missing_file.py'"),
    ("just_a_name", "expected MODULE:FACTORY"),
])
def test_bad_specs_give_one_line(capsys, spec, words):
    assert main([spec]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err, err


def test_library_refuses_bad_mixers_clearly():
    with pytest.raises(props.MixerError, match="dim must be given"):
        props.check_equivariance(lambda x, context=None, mask=None: x)
    with pytest.raises(props.MixerError, match="no context or mask argument|no mask"):
        props.check_signature(lambda x, context=None: x)
    with pytest.raises(props.MixerError, match="changed the token count"):
        props.check_equivariance(lambda x, context=None, mask=None: x[:, :1], dim=4)


# --- the command on files outside the package ----------------------------------------------

def _run_cli(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "pomlab.properties", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_on_the_documented_linear_attention(tmp_path):
    """docs/properties.md's example, copied out of the checkout and run from there."""
    user_file = tmp_path / "elsewhere" / "linear_attention.py"
    user_file.parent.mkdir()
    shutil.copy(EXAMPLE, user_file)
    done = _run_cli([f"{user_file}:make_mixer", "--dim", "32", "--quick", "--json",
                     str(tmp_path / "reports.json")], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for prop in ("permutation equivariance", "context-order invariance", "mask causality",
                 "step = block-causal forward", "contextual mapping", "universal approximation"):
        line = next(l for l in out.splitlines() if l.startswith(prop))
        assert " holds " in line, line
    assert "LinearAttention" in out and "MLP (no mixing)" in out and "6 hold, 0 fail" in out
    assert "Traceback" not in done.stderr
    import json
    rows = json.loads((tmp_path / "reports.json").read_text())
    assert {r["result"] for r in rows} == {"holds"} and rows[0]["dim"] == 32


@pytest.mark.slow
def test_cli_exit_status_1_and_one_line_errors_in_a_subprocess(tmp_path):
    _write(tmp_path, """
        from pomlab.properties.broken import PositionalBias

        def make(dim):
            return PositionalBias(dim)
    """, "biased.py")
    done = _run_cli(["biased:make", "--only", "equivariance,step", "--dim", "8"], cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = " ".join(done.stdout.split())                  # the table wraps long notes
    assert "FAILS" in out and "does not apply: PositionalBias has no step(x, state=None)" in out
    assert "0 hold, 1 fail (permutation equivariance), 1 do not apply" in out
    _write(tmp_path, BAD_MIXERS)
    bad = _run_cli(["user_mixers.py:drops_tokens"], cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("python -m pomlab.properties: error: "
                                                          "Pools changed the token count")


def test_report_rows_and_summary():
    report = props.check_step(examples.pom(8))
    row = report.as_row()
    assert row["result"] == "holds" and row["passes_when"] == "<=" and row["tolerance"] == 1e-6
    assert report.summary().startswith("step = block-causal forward holds")
    with pytest.raises(ValueError, match="unknown check"):
        props.run_all(examples.pom, 8, only=["nope"])
