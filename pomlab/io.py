"""Atomic file writes: write a temporary file beside the target, fsync, then os.replace. A crash
mid-write leaves the previous file intact (never a truncated one under the real name)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from .faults import fault_point

# Floats read back exactly: pandas >= 3 by default (the option deprecated), 2.x with round_trip
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[object], None], mode: str = "wb",
                 *, fault: str | None = None) -> Path:
    """write(file_object) to a temp file in path's folder, renamed onto path; a full disk is an
    OSError naming the file. `fault`: a pomlab.faults point before the rename (tests only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:              # owns fd from here: closed on any error
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)           # mkstemp makes 0600 files; honour the umask
            write(f)
            f.flush()
            if fault is not None:
                fault_point(fault)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            free = shutil.disk_usage(path.parent).free / 2**20      # statvfs works on full disks
            raise OSError(err.errno, f"no space left on the device writing {str(path)!r} "
                          f"({free:.0f} MiB free there); free some space or choose another "
                          "output folder, then rerun: the files already written are intact"
                          ) from err
        raise
    return path


def remove_stale_temp_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete killed writers' atomic_write temp files in `folder`; only while holding its lock."""
    found = (Path(folder).rglob if recursive else Path(folder).glob)(f".*{TEMP_SUFFIX}")
    stale = [p for p in found if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_torch_save(obj, path: str | os.PathLike, *, fault: str | None = None) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f), fault=fault)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_to_csv(frame, path: str | os.PathLike, *, fault: str | None = None) -> Path:
    """Write a pandas DataFrame as CSV atomically."""
    return atomic_write(path, lambda f: frame.to_csv(f, index=False), mode="w", fault=fault)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (memoised on path, size and mtime: weights files are large)."""
    stat = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_csv_exact(path: str | os.PathLike) -> pd.DataFrame:
    """pandas.read_csv with floats read back exactly as written (any pandas version)."""
    return pd.read_csv(path, **_EXACT_FLOATS)


def atomic_write_yaml(path: str | os.PathLike, obj: dict) -> Path:
    """A config as YAML (keys in the dataclass's order), written atomically."""
    import yaml
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))
