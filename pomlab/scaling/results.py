"""The files of a sweep folder (sweep.json, runs/<run>/evals.csv and timings.csv, their merges
results.csv and timings.csv), safe under kills and concurrent jobs: atomic writes, and locks on
shared read-modify-write steps (docs/scaling.md, "Resuming" and "Surviving kills")."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from ..io import atomic_to_csv, atomic_write_json, remove_stale_temp_files
from ..io import read_csv_exact as read_csv
from ..models.registry import FAMILIES, SIZES, parse_name
from .config import MIXERS, SETTINGS_FORMAT, SweepConfig
from .fits import with_seed

RESULTS_FILE = "results.csv"
TIMINGS_FILE = "timings.csv"
SETTINGS_FILE = "sweep.json"
RUNS_DIR = "runs"
RUN_EVALS = "evals.csv"
RUN_TIMINGS = "timings.csv"
LOCK_POLL_SECONDS = 0.02

# One row per evaluation; every number is labelled with what produced it.
RESULT_COLUMNS = ["model", "scale", "mixer", "size", "patch", "dataset", "backend", "fid_name",
                  "fid", "is_name", "is_mean", "is_std", "n_fake", "n_real", "reference", "step",
                  "batch_size", "images_seen", "gflops_per_image", "train_compute_gflops",
                  "sample_steps", "sample_method", "cfg", "cfg_guidance", "seed", "device",
                  "pr_name", "precision", "recall", "kid_name", "kid_mean", "kid_std"]
# Wall-clock facts depend on the machine's load: kept out of results.csv.
TIMING_COLUMNS = ["model", "seed", "step", "train_seconds", "eval_seconds", "train_cpu_seconds",
                  "eval_cpu_seconds", "resumed_from", "threads", "jobs", "world_size", "device"]


def _read_holder(handle) -> dict | None:
    """The holder a lock file records, with its "name" (None: released cleanly, or not ours)."""
    handle.seek(0)
    with contextlib.suppress(ValueError):
        holder = json.loads(handle.read() or "null")
        if isinstance(holder, dict) and "pid" in holder:
            return {**holder, "name": f"pid {holder['pid']} on {holder.get('host', '?')}"}
    return None


def _is_dead(holder: dict) -> bool:
    """True only when the holder ran on this host and its pid no longer exists."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        pass
    return False


@contextlib.contextmanager
def _file_lock(path: Path, busy: Callable[[], Exception] | None = None):
    """An exclusive flock on `path`, waited for (or busy() raised when held), recording its holder
    while held: a dead holder's lock is taken over or broken, with a notice (docs/scaling.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    while True:
        with open(path, "a+") as handle:
            try:                            # polled (not a blocking flock): a dead holder is
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)     # noticed while waiting
            except BlockingIOError:
                holder = _read_holder(handle)
                if holder is None or not _is_dead(holder):
                    if busy is not None:
                        raise busy() from None
                    time.sleep(LOCK_POLL_SECONDS)
                    continue
                print(f"notice: {path} is held although its holder ({holder['name']}) is gone; "
                      "breaking it", file=sys.stderr)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                        os.unlink(path)
                continue
            same = False
            with contextlib.suppress(FileNotFoundError):
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            if not same:                    # broken and replaced meanwhile: lock the new file
                continue
            holder = _read_holder(handle)
            if holder is not None:
                print(f"notice: taking over {path} from {holder['name']}, which died holding it",
                      file=sys.stderr)
            handle.truncate(0)              # "a+": the record is written at the (new) end
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                handle.flush()
                fcntl.flock(handle, fcntl.LOCK_UN)
            return


def folder_lock(out: str | os.PathLike):
    """OUT/.lock, waited for: merging, fitting and plotting by any job sharing OUT."""
    return _file_lock(Path(out) / ".lock")


def run_lock(folder: str | os.PathLike, model: str):
    """FOLDER/.train.lock, not waited for: one job trains a model (overlapping --sizes fail)."""
    return _file_lock(Path(folder) / ".train.lock", busy=lambda: RuntimeError(
        f"{model} is being trained by another job in {str(folder)!r}; give jobs sharing one "
        "--out disjoint --sizes/--mixers (rerun this one when that job ends: finished "
        "evaluations are skipped)"))


def check_settings(out: str | os.PathLike, config: SweepConfig) -> None:
    """Record config's settings in OUT/sweep.json, or refuse when OUT holds another sweep's."""
    path = Path(out) / SETTINGS_FILE
    wanted = json.loads(json.dumps(config.settings()))
    with folder_lock(out):
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("format") != SETTINGS_FORMAT:
                raise ValueError(f"{path} is not a pomlab scaling sweep ({stored.get('format')!r})")
            have = dict(stored["settings"])
            legacy_seed = have.pop("seed", 0)      # recorded before --seeds: runs are seed 0's
            if legacy_seed != 0:
                raise ValueError(f"{str(out)!r} holds a sweep made with --seed {legacy_seed} by an "
                                 "older pomlab (its run folders carry no seed); use another --out")
            diff = {k: (have.get(k), wanted.get(k)) for k in sorted(set(have) | set(wanted))
                    if have.get(k) != wanted.get(k)}
            if diff:
                lines = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise ValueError(f"{str(out)!r} holds a sweep with other settings ({lines}). "
                                 "Results of different settings are never mixed: use the same "
                                 "arguments (sizes and mixers may differ) or another --out")
            return
        atomic_write_json(path, {"format": SETTINGS_FORMAT, "settings": wanted})


def run_dir(out: str | os.PathLike, folder: str) -> Path:
    return Path(out) / RUNS_DIR / folder


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV written here (floats read back exactly), [] when there is none."""
    return read_csv(path).to_dict("records") if Path(path).is_file() else []


def write_row(path: str | os.PathLike, row: dict, columns: list[str]) -> None:
    """Add (or replace, same model and step) one row of a per-run CSV, atomically."""
    rows = [r for r in read_rows(path) if (r["model"], r["step"]) != (row["model"], row["step"])]
    atomic_to_csv(pd.DataFrame([*rows, row], columns=columns).sort_values("step", kind="stable"),
                  path)


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Mixers (PoM, MHA), then sizes S..XL, patch, seed and step: one order for every merge."""
    def key(model, seed, step):
        family, size, patch = parse_name(model)
        return MIXERS.index(FAMILIES[family]), SIZES.index(size), patch, int(seed), int(step)

    keys = [key(*row) for row in frame[["model", "seed", "step"]].itertuples(index=False)]
    return frame.iloc[sorted(range(len(frame)), key=keys.__getitem__)].reset_index(drop=True)


def merge_results(out: str | os.PathLike, *, locked: bool = False) -> pd.DataFrame:
    """Rebuild OUT/results.csv and timings.csv from the runs' files, under the lock (locked: the
    caller holds it; it is not re-entrant); returns the results."""
    if not locked:
        with folder_lock(out):
            return merge_results(out, locked=True)
    out = Path(out)
    remove_stale_temp_files(out, recursive=False)    # OUT's own files are written under the lock
    for name, per_run, columns in ((TIMINGS_FILE, RUN_TIMINGS, TIMING_COLUMNS),
                                   (RESULTS_FILE, RUN_EVALS, RESULT_COLUMNS)):
        parts = [with_seed(part) for part in map(read_csv, (out / RUNS_DIR).glob(f"*/{per_run}"))
                 if not part.empty]                  # older per-run timings: seed 0
        frame = sort_rows(pd.concat(parts, ignore_index=True)[columns] if parts
                          else pd.DataFrame(columns=columns))
        atomic_to_csv(frame, out / name, fault="merge" if name == RESULTS_FILE else None)
    return frame


def load_results(out: str | os.PathLike) -> pd.DataFrame:
    """OUT/results.csv as a frame (floats exact; seed 0 where the file predates seeds)."""
    path = Path(out) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} in {str(out)!r}: run the sweep first")
    return with_seed(read_csv(path))


def load_timings(out: str | os.PathLike) -> pd.DataFrame | None:
    """OUT/timings.csv as a frame (seed 0 where the file predates seeds), None without one."""
    path = Path(out) / TIMINGS_FILE
    return with_seed(read_csv(path)) if path.is_file() else None
