"""Checkpoint files (out/checkpoints/step_XXXXXXXX.pt): model, EMA, optimiser, step, every
rank's RNG states and data order, the configs, so a resumed run continues exactly."""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..diffusion import make_process
from .config import TrainConfig

CHECKPOINT_FORMAT = "pomlab-train-v1"
CHECKPOINT_DIR = "checkpoints"
_CKPT_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(out: str | os.PathLike, step: int) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(out: str | os.PathLike) -> list[Path]:
    """The checkpoints in out/checkpoints, oldest first."""
    folder = Path(out) / CHECKPOINT_DIR
    return sorted(p for p in folder.glob("step_*.pt") if _CKPT_NAME.match(p.name))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint file (or a run folder's latest) with clear errors for broken files."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"no checkpoints under {str(path / CHECKPOINT_DIR)!r}")
        path = found[-1]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        # mmap: resuming DDP ranks share the file's pages (model + EMA + AdamW: 11 GB at XL/2)
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as err:   # zip reader / unpickler errors differ between torch versions
        others = [p.name for p in list_checkpoints(path.parent.parent) if p != path]
        hint = f"; other checkpoints there: {', '.join(others)}" if others else ""
        raise ValueError(f"checkpoint {str(path)!r} is truncated or corrupt and cannot be read "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:200]}){hint}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a pomlab training checkpoint "
                         f"(format {ckpt.get('format') if isinstance(ckpt, dict) else None!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    ckpt["path"] = str(path)
    return ckpt


def verify_checkpoint(path: Path, step: int) -> None:
    """Read a new checkpoint back (memory-mapped); a bad one is deleted and reported (OSError)."""
    try:
        ok, reason = load_checkpoint(path)["step"] == step, f"its step is not {step}"
    except (ValueError, FileNotFoundError) as err:
        ok, reason = False, str(err)
    if not ok:
        path.unlink(missing_ok=True)
        raise OSError(f"checkpoint {str(path)!r} did not verify after writing ({reason}); the "
                      "previous checkpoints are kept")


def load_trained(path: str | os.PathLike | dict, *, ema: bool = True, device="cpu"):
    """(model, process, config, step) from a checkpoint file or run folder (or a checkpoint
    already read with load_checkpoint); the EMA weights by default."""
    from .. import models

    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    model = models.create(**ckpt["model_config"])
    model.load_state_dict({k.removeprefix("module."): v for k, v in ckpt["ema"].items()
                           if k.startswith("module.")} if ema else ckpt["model"])
    return (model.to(device).eval(), make_process(**ckpt["process"]),
            TrainConfig.from_dict(ckpt["train_config"]), ckpt["step"])


def rng_state(device: torch.device) -> dict:
    """Every generator's state, as tensors and plain types (weights_only checkpoints)."""
    name, keys, pos, gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                      "has_gauss": int(gauss), "cached_gaussian": float(cached)},
            "python": random.getstate()}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
