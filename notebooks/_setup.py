"""First import of every notebook: makes ``import pomlab`` work from a plain checkout (as
experiments/_bootstrap.py does for the scripts) and runs the experiment scripts, the same
commands as the paper's runs, for a notebook's small run of its own."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_experiment(script: str, *args, threads: int = 1, show_lines: int = 15) -> str:
    """Run ``python experiments/<script> args...`` from the repository root with this kernel's
    interpreter and ``threads`` CPU threads (steadier timings on a shared machine); print the
    command and the last lines of its output; raise with its stderr when it fails. Returns the
    whole standard output."""
    args = [str(a) for a in args]
    print("$", shlex.join(["python", f"experiments/{script}", *args]))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"experiments/{script} failed with exit status {done.returncode}:\n"
                           f"{done.stderr[-4000:]}")
    if show_lines > 0:
        print("\n".join(done.stdout.rstrip().splitlines()[-show_lines:]))
    return done.stdout


def show(paths) -> None:
    """Display the PNG files among ``paths`` exactly as they were saved."""
    from IPython.display import Image, display

    for path in paths:
        if str(path).endswith(".png"):
            display(Image(filename=str(path)))
