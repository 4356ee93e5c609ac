"""Every fenced ```python and ```bash block of README.md and docs/*.md runs, so no snippet rots.

The blocks of one Markdown file run in order, each in its own subprocess, in one scratch folder
that mirrors the repository root (a symlink per top-level entry, so `python experiments/x.py`
and `import pomlab` work while outputs such as runs/ and results/ land in the scratch folder).
A later block may use a file an earlier one wrote (docs/training.md trains, then loads).

- A block with `<!-- no-run -->` on the line just before its fence is skipped on purpose:
  installs, GPU commands, the long jobs.
- One documented substitution keeps the suite fast: in bash blocks, `--steps N` with N > 100
  runs as `--steps N // 100` (the training examples' 2000 steps run as 20).
- Blocks in other languages (output listings, layouts) are not code and are not run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NO_RUN = "<!-- no-run -->"
RUNNABLE = ("python", "bash")
TIMEOUT_S = 600                     # per block; the slowest take ~20 s on 2 idle cores
# Entries of the root not mirrored into the scratch folder: outputs the snippets write, and
# what they never need.
NOT_MIRRORED = {".git", "results", "runs", ".venv", ".venv-ci", ".pytest_cache", ".hypothesis"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.S | re.M)
STEPS = re.compile(r"--steps(\s+|=)(\d+)")


@dataclass
class Snippet:
    path: Path
    line: int                       # the fence's line, 1-based
    lang: str
    code: str
    run: bool                       # False: marked <!-- no-run -->

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def extract(path: Path, text: str | None = None) -> list[Snippet]:
    """Every fenced block of a Markdown file (indented fences too, dedented)."""
    text = path.read_text() if text is None else text
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        blocks.append(Snippet(path, text.count("\n", 0, match.start()) + 1,
                              match.group("lang").lower(), textwrap.dedent(match.group("body")),
                              before != NO_RUN))
    return blocks


def runnable(snippets: list[Snippet]) -> list[Snippet]:
    return [s for s in snippets if s.lang in RUNNABLE and s.run]


def cheap(code: str) -> str:
    """The documented substitution: --steps N (N > 100) -> --steps N // 100."""
    def shorter(match):
        n = int(match.group(2))
        return match.group(0) if n <= 100 else f"--steps{match.group(1)}{n // 100}"
    return STEPS.sub(shorter, code)


def scratch_root(folder: Path) -> Path:
    """A folder that looks like the repository root: one symlink per top-level entry."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name not in NOT_MIRRORED and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    return folder


def run_snippet(snippet: Snippet, cwd: Path, timeout: float = TIMEOUT_S) -> None:
    """Run one block; AssertionError naming the file and line, with the output's tail, when it
    fails or times out."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               MPLBACKEND="Agg", OMP_NUM_THREADS="1", POMLAB_CACHE=str(cwd / ".cache"),
               PYTHONUNBUFFERED="1")
    if snippet.lang == "python":
        command = [sys.executable, "-c", snippet.code]
    elif snippet.lang == "bash":
        command = ["bash", "-e", "-o", "pipefail", "-c", cheap(snippet.code)]
    else:
        raise ValueError(f"{snippet}: cannot run a {snippet.lang!r} block")
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{snippet} ({snippet.lang}) ran past {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise AssertionError(f"{snippet} ({snippet.lang}) failed with exit status "
                             f"{done.returncode}:\n{tail}")


# --- the documentation -------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_of_the_doc_runs(doc, tmp_path):
    cwd = scratch_root(tmp_path / "root")
    for snippet in runnable(extract(doc)):
        run_snippet(snippet, cwd)


def test_every_fence_is_parsed_and_code_blocks_are_run_or_marked():
    """A fence the parser missed would silently escape the test: count them independently."""
    for doc in DOCS:
        text = doc.read_text()
        fences = sum(1 for line in text.splitlines() if line.lstrip().startswith("```"))
        snippets = extract(doc)
        assert fences == 2 * len(snippets), f"{doc}: unbalanced or unparsed ``` fences"
        for s in snippets:
            if s.lang in ("py", "python3", "sh", "shell", "console"):
                pytest.fail(f"{s}: use ```python or ```bash so the block is tested")


def test_main_job_and_install_are_not_run_but_the_pom_example_is():
    readme = extract(ROOT / "README.md")
    skipped = "\n".join(s.code for s in readme if not s.run)
    ran = "\n".join(s.code for s in runnable(readme))
    assert "scaling_laws.py --sizes S,B,L,XL" in skipped and "pip install" in skipped
    assert "pomlab.PoM(" in ran and "pip install" not in ran


# --- the runner fails on broken snippets ---------------------------------------------------------

def _doc(tmp_path, text):
    path = tmp_path / "broken.md"
    path.write_text(text)
    return path


def test_runner_fails_on_a_broken_python_block(tmp_path):
    doc = _doc(tmp_path, "Intro.\n\n```python\nimport torch\nx = torch.ones(2)\ny = x + text\n```\n")
    (snippet,) = runnable(extract(doc))
    with pytest.raises(AssertionError, match=r"(?s)broken\.md:3 \(python\) failed.*NameError: name 'text'"):
        run_snippet(snippet, scratch_root(tmp_path / "root"))


def test_runner_fails_on_a_broken_bash_block_and_a_bad_cli_flag(tmp_path):
    doc = _doc(tmp_path, "```bash\ntrue\nfalse\necho never\n```\n\n"
                         "```bash\npython experiments/train.py --steps -5 --no-progress --out runs/x\n```\n")
    first, second = runnable(extract(doc))
    cwd = scratch_root(tmp_path / "root")
    with pytest.raises(AssertionError, match=r"broken\.md:1 \(bash\) failed with exit status 1"):
        run_snippet(first, cwd)
    with pytest.raises(AssertionError, match="error: steps must be >= 1, got -5"):
        run_snippet(second, cwd)


def test_runner_times_out(tmp_path):
    (snippet,) = runnable(extract(_doc(tmp_path, "```python\nimport time\ntime.sleep(30)\n```\n")))
    with pytest.raises(AssertionError, match="ran past 1 s"):
        run_snippet(snippet, tmp_path, timeout=1)


def test_no_run_marker_skips_only_the_next_block(tmp_path):
    doc = _doc(tmp_path, "<!-- no-run -->\n```bash\nexit 1\n```\n\n<!-- no-run -->\n\nText.\n\n"
                         "```python\nprint('runs')\n```\n\n   <!-- no-run -->\n   ```bash\n   exit 1\n   ```\n"
                         "\n```\nan output listing\n```\n")
    snippets = extract(doc)
    assert [(s.lang, s.run) for s in snippets] == [("bash", False), ("python", True),
                                                   ("bash", False), ("", True)]
    assert snippets[2].code == "exit 1\n"              # indented fences are dedented
    (only,) = runnable(snippets)
    run_snippet(only, tmp_path)


def test_cheap_substitution_is_the_documented_one():
    assert cheap("train.py --steps 2000 --out a\n  --steps=5000 --steps 20") == \
        "train.py --steps 20 --out a\n  --steps=50 --steps 20"
    assert "--steps N // 100" in __doc__
