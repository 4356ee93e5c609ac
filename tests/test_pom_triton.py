"""The Triton kernels of pomlab/nn/pom_triton.py, tested on CPU through Triton's interpreter.

The cases live in tests/triton_cases.py and run here in a fresh process with TRITON_INTERPRET=1:
Triton reads that variable when it is imported and when it decorates kernels (its own library
functions included), and another test module of the same worker has usually imported Triton
already, compiled for GPUs. The child's output is shown when a case fails.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]


def test_triton_kernels_under_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "triton_cases.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], \
        proc.stdout[-2000:]
