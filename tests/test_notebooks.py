"""The notebooks run clean in a fresh kernel with small parameters and write their figures.

Each notebook is executed with nbclient (kernel "python3", which jupyter_client starts with
this interpreter), cwd = notebooks/, after a papermill-style "injected-parameters" cell that
overrides its "parameters" cell: OUT_DIR goes to a temporary folder and the small-run settings
shrink so that all of them together stay within a few minutes on 2 CPU cores.
"""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# name -> (small parameters, figures it must write under OUT_DIR/figures)
CASES = {
    "01_pom_in_practice.ipynb": (
        dict(LENGTHS="64,256,1024", REPEATS=2),
        ["masks", "cost_vs_attention"]),
    "02_properties.ipynb": (
        dict(SMALL_GRIDS="3:3:1", SMALL_TASKS="sort", SMALL_STEPS=20),
        ["contextual_mapping", "universal_approximation_params", "universal_approximation_degree"]),
    "03_scaling_laws.ipynb": (
        dict(SMALL_SIZES="S", SMALL_STEPS=16, SMALL_EVAL_POINTS=3, SMALL_FID_SAMPLES=64),
        ["scaling/scaling", "scaling/scaling_pom_vs_mha"]),
    "04_speed_memory.ipynb": (
        dict(SMALL_RESOLUTIONS="64,128,256", SMALL_FRAMES="1,2,4,8", SMALL_REPEATS=1),
        ["speed_cpu/speed_S_2_depth1_batch1_float32_fast", "state_memory/state_memory"]),
    "05_video_state.ipynb": (
        dict(SMALL_TRAIN_STEPS=20, FRAMES=4, SAMPLE_STEPS=3, SMALL_FRAMES="2,4,8"),
        ["generated_frame_by_frame", "video_memory/video_memory"]),
}


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def inject(nb, parameters: dict) -> None:
    """Papermill's convention: a cell tagged 'injected-parameters' right after 'parameters'."""
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_cell(nb) + 1, cell)


def test_every_notebook_has_a_case():
    assert {p.name for p in all_notebooks()} == set(CASES)


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.name)
def test_committed_without_outputs_and_with_parameters(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name} is committed with outputs: clear them"
    names = nb.cells[parameters_cell(nb)].source
    assert "OUT_DIR" in names and ("RESULTS_DIR" in names or "BENCH_CSV" in names)
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_clean_and_writes_its_figures(name, tmp_path):
    small, expected = CASES[name]
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    inject(nb, dict(small, OUT_DIR=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = NotebookClient(nb, kernel_name="python3", timeout=240, allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=env)           # raises CellExecutionError on the first failing cell
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
    for stem in expected:
        for suffix in (".png", ".pdf"):
            path = tmp_path / "figures" / f"{stem}{suffix}"
            if suffix == ".pdf" and stem == "generated_frame_by_frame":
                continue              # frame strips are PNG only
            assert path.is_file() and path.stat().st_size > 1000, f"{name} did not write {path}"
    shown = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert shown >= len(expected), f"{name} displayed {shown} figures, expected {len(expected)}"
