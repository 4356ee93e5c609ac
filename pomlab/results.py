"""Where the experiments write (`KINDS`; layout in docs/notebooks.md) and how figures and notebooks
find it: by file, at any depth, so `--out` may be anything and runs of one kind may coexist."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .checks import check_choice
from .io import read_csv_exact


@dataclass(frozen=True)
class ResultKind:
    """One kind of result: the file that marks it, its default folder and the command."""
    name: str
    file: str
    default_folder: str
    command: str
    columns: tuple[str, ...]          # the columns its figures need


KINDS: dict[str, ResultKind] = {k.name: k for k in (
    ResultKind("scaling", "results.csv", "results/scaling", "python experiments/scaling_laws.py",
               ("model", "mixer", "size", "patch", "fid", "is_mean", "train_compute_gflops",
                "fid_name", "is_name")),
    ResultKind("speed", "speed.csv", "results/speed_cpu (results/speed_cuda on a GPU)",
               "python experiments/speed.py",
               ("family", "mode", "resolution", "tokens", "seconds_per_image", "peak_bytes",
                "model", "depth", "batch", "dtype", "device")),
    ResultKind("state_memory", "state_memory.csv", "results/state_memory",
               "python experiments/bench_state_memory.py",
               ("method", "frames", "peak_bytes", "seconds_per_frame", "dim", "layers",
                "tokens_per_frame", "device")),
    ResultKind("video_memory", "video_memory.csv", "results/video_memory",
               "python experiments/video_memory.py",
               ("frames", "mode", "peak_mib", "working_mib", "seconds_per_frame", "model",
                "steps", "device")),
    ResultKind("contextual_mapping", "contextual_mapping.csv", "results/theory",
               "python experiments/contextual_mapping.py",
               ("levels", "tokens", "dim", "positional", "model", "holds", "relative_separation")),
    ResultKind("universal_approximation", "universal_approximation.csv", "results/theory",
               "python experiments/universal_approximation.py",
               ("task", "mixer", "width", "depth", "degree", "params", "test_rel_mse")),
)}


def find_results(root: str | os.PathLike, skip: str | os.PathLike | None = None
                 ) -> dict[str, list[Path]]:
    """For every kind, the folders under root (root included) holding its file, sorted; hidden
    folders, the sweep's per-run folders (runs/) and ``skip`` (the figures folder) left out."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {str(root)!r} does not exist")
    skip = Path(skip).resolve() if skip is not None else None
    found: dict[str, list[Path]] = {name: [] for name in KINDS}
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "runs"
                               and (skip is None or (here / d).resolve() != skip))
        for kind in KINDS.values():
            if kind.file in files:
                found[kind.name].append(here)
    return found


def locate(root: str | os.PathLike, kind: str) -> list[Path]:
    """The folders under root holding ``kind``'s results; FileNotFoundError (naming the command
    that writes them) when there are none."""
    spec = KINDS[check_choice("kind", kind, KINDS)]
    folders = find_results(root)[kind]
    if not folders:
        raise FileNotFoundError(f"no {spec.file} under {str(root)!r}: run `{spec.command}` "
                                f"(default --out {spec.default_folder})")
    return folders


def load_table(folder: str | os.PathLike, kind: str) -> pd.DataFrame:
    """The CSV of one kind in ``folder`` (floats exact), checked for the columns figures need."""
    spec = KINDS[check_choice("kind", kind, KINDS)]
    path = Path(folder) / spec.file
    if not path.is_file():
        raise FileNotFoundError(f"no {spec.file} in {str(folder)!r}: run `{spec.command} "
                                f"--out {folder}` first")
    frame = read_csv_exact(path)
    missing = [c for c in spec.columns if c not in frame]
    if missing:
        raise ValueError(f"{path} is not a {kind} result (missing columns {missing}; "
                         f"expected the output of {spec.command})")
    if frame.empty:
        raise ValueError(f"{path} has no rows")
    return frame


def load_all(root: str | os.PathLike, kind: str) -> list[tuple[Path, pd.DataFrame]]:
    """(folder, table) for every readable ``kind`` result under root; an unreadable file (foreign,
    truncated) is skipped with a warning, FileNotFoundError when none is left."""
    loaded = []
    for folder in locate(root, kind):
        try:
            loaded.append((folder, load_table(folder, kind)))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            warnings.warn(f"skipped {folder / KINDS[kind].file}: {error}", stacklevel=2)
    if not loaded:
        raise FileNotFoundError(f"no readable {KINDS[kind].file} under {str(root)!r} (see the "
                                "warnings above)")
    return loaded


def describe_layout() -> str:
    """A table of the kinds: file, default folder, command (for CLIs and notebooks)."""
    rows = [{"kind": k.name, "file": k.file, "default folder": k.default_folder,
             "written by": k.command} for k in KINDS.values()]
    return pd.DataFrame(rows).to_string(index=False)
