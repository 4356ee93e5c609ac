"""The scripts in experiments/: one shared entry point (pomlab.cli.run) that turns bad input into
one line, `--help` that shows the defaults, and the flags that do not apply refused."""
import argparse
import io
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from pomlab import cli
from test_figures import experiment

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))


script = experiment            # an experiments/ script as a module


def run_script(*args, env=None, timeout=300):
    import os
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_script_uses_the_shared_entry_point_and_help_formatter(path):
    text = path.read_text()          # ConfigParser: --config FILE.yaml, and HelpFormatter
    assert re.search(r"from pomlab\.cli import [\w, ]*\bConfigParser\b[\w, ]*\brun\b", text)
    assert "ConfigParser(" in text and "ArgumentParser(" not in text
    assert text.rstrip().endswith(("run(main)", "run(lambda: exit_status(main()))"))
    assert "RawDescriptionHelpFormatter" not in text


def _run_main(main, argv, monkeypatch, env=None):
    monkeypatch.setattr(sys, "argv", ["script.py", *argv])
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main)
    return exit_info.value.code


@pytest.mark.parametrize("error", [ValueError("steps must be a positive int, got -5"),
                                   FileNotFoundError(2, "No such file or directory", "/x/y"),
                                   ImportError("needs pomlab[inception]"),
                                   RuntimeError("line one\nline two")])
def test_user_errors_are_one_line_and_exit_2(error, monkeypatch, capsys):
    def main():
        raise error
    assert _run_main(main, [], monkeypatch) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--debug" in err
    assert "line one; line two" in err if "line one" in str(error) else True


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch):
    seen = []

    def main():
        seen.append(list(sys.argv))
        raise ValueError("bad")
    with pytest.raises(ValueError, match="bad"):
        _run_main(main, ["--steps", "3", "--debug"], monkeypatch)
    assert seen[-1] == ["script.py", "--steps", "3"]            # --debug removed before parsing
    with pytest.raises(ValueError, match="bad"):
        _run_main(main, [], monkeypatch, env={"POMLAB_DEBUG": "1"})


def test_exit_status_bugs_and_interrupts(monkeypatch, capsys):
    assert _run_main(lambda: None, [], monkeypatch) == 0
    assert _run_main(lambda: 1, [], monkeypatch) == 1
    assert _run_main(lambda: True, [], monkeypatch) == 0         # a returned flag is not a status

    def interrupted():
        raise KeyboardInterrupt
    assert _run_main(interrupted, [], monkeypatch) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.count("\n") == 1

    def bug():
        raise ZeroDivisionError("a bug keeps its traceback")
    monkeypatch.setattr(sys, "argv", ["script.py"])
    with pytest.raises(ZeroDivisionError):
        cli.run(bug)


def test_help_shows_defaults_without_repeating_them():
    p = argparse.ArgumentParser(formatter_class=cli.HelpFormatter)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=0.1, help="learning rate")
    p.add_argument("--out", default=None, help="run folder")
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--sizes", default="S,B", help="sizes (default S,B)")
    text = p.format_help()
    assert "default: 1000" in text and "learning rate (default: 0.1)" in text
    assert "None" not in text and "False" not in text and text.count("S,B") == 1


@pytest.mark.slow
def test_train_cli_bad_input_gives_one_line(tmp_path):
    train = ROOT / "experiments" / "train.py"
    cases = {("--steps", "-5"): "steps must be >= 1, got -5",
             ("--model", "DiPoM-Q/3"): "unknown model name 'DiPoM-Q/3'",
             ("--dataset", "folder", "--data-path", str(tmp_path / "missing")): "missing' does not exist",
             ("--data-path", str(tmp_path)): "--data-path does not apply to --dataset digits",
             ("--resume",): "--resume needs --out"}
    for args, message in cases.items():
        done = run_script(train, *args, "--no-progress", timeout=300)
        assert done.returncode == 2, (args, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    help_text = " ".join(run_script(train, "--help").stdout.split())
    assert "--steps STEPS training steps (default: 1000)" in help_text


def test_train_names_a_fresh_default_run_folder(tmp_path, monkeypatch):
    train = script("train")
    monkeypatch.chdir(tmp_path)
    config, _ = train.parse_args(["--model", "DiT-B/4"])
    assert config.out.startswith("runs/train-DiT-B-4-")
    Path(config.out).mkdir(parents=True)
    assert train.default_run_folder("DiT-B/4") != config.out or \
        Path(train.default_run_folder("DiT-B/4")).name.endswith("-2")
    with pytest.raises(ValueError, match="--out is required under torchrun"):
        monkeypatch.setenv("WORLD_SIZE", "2")
        train.parse_args([])


def test_train_without_out_saves_into_the_named_folder(tmp_path, monkeypatch, capsys):
    train = script("train")
    monkeypatch.chdir(tmp_path)
    result = train.main(["--model", "DiT-S/4", "--image-size", "8", "--model-overrides", "depth=1",
                         "--batch-size", "4", "--steps", "2", "--sample-steps", "1",
                         "--samples-per-class", "1", "--no-progress"])
    folder = Path(result.out).resolve()
    assert folder.parent == (tmp_path / "runs").resolve() and folder.name.startswith("train-DiT-S-4-")
    assert result.checkpoint is not None and Path(result.checkpoint).is_file()
    assert f"run folder: runs/{folder.name}" in capsys.readouterr().err


def test_scaling_laws_refuses_flags_the_dataset_ignores(tmp_path):
    scaling_laws = script("scaling_laws")
    with pytest.raises(ValueError, match="--data-path / data_path does not apply to dataset 'digits'"):
        scaling_laws.build_config(scaling_laws.parse_args(
            ["--data-path", "/nonexistent/path", "--out", str(tmp_path / "o"), "--device", "cpu"]))
    with pytest.raises(ValueError, match="--vae / vae decodes latent samples"):
        scaling_laws.build_config(scaling_laws.parse_args(["--vae", "x", "--device", "cpu"]))
    with pytest.raises(ValueError, match="--reference-samples"):
        scaling_laws.build_config(scaling_laws.parse_args(
            ["--reference", "stats.npz", "--reference-samples", "10", "--device", "cpu"]))
    assert not (tmp_path / "o").exists()
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        scaling_laws.parse_args(["--help"])
    text = " ".join(out.getvalue().split())                 # argparse wraps lines
    assert "comma-separated sizes from S,B,L,XL (default: S,B,L,XL)" in text
