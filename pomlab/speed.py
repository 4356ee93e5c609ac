"""Analysis of the speed/memory measurements of experiments/speed.py (the paper's Figure 1).

Everything is computed from the tidy speed.csv alone (one row per model x mode x resolution),
so the summary, the figure and a notebook agree whether or not speed_summary.json was kept:

* ``loglog_slope``: slope of log time against log tokens (1 = linear, 2 = quadratic);
* ``crossover``: the token count where DiPoM *training* becomes cheaper than DiT *inference*
  (log-log interpolation between measured points);
* ``speed_configurations``: a CSV may hold several measured configurations (--resume with other
  settings, --reference-pom); each one is summarised and plotted on its own;
* ``summarise_speed``: the speed_summary.json document of one configuration.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .results import KINDS

# Columns that identify one measured configuration (with the model's size/patch; everything
# but family, mode and resolution).
CONFIG_COLUMNS = ("depth", "batch", "dtype", "optimizer", "pom_path", "device")
REQUIRED_COLUMNS = KINDS["speed"].columns        # what pomlab.results checks when it loads one


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y on log x over the finite positive points (NaN if < 2):
    pomlab.scaling's log-log fit, skipping the points a variant did not measure."""
    from .scaling.fits import loglog_fit          # loads the training stack: only when fitting

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return loglog_fit(x[ok], y[ok])["slope"]


def crossover(tokens, dipom_train, dit_inference) -> float | None:
    """Token count where DiPoM training time falls to DiT inference time (log-log interpolation
    between measured points, tokens ascending); None when it does not happen inside the range."""
    log_ratio = np.log(np.asarray(dipom_train, dtype=float) / np.asarray(dit_inference, dtype=float))
    log_n = np.log(np.asarray(tokens, dtype=float))
    for i in range(len(log_ratio) - 1):
        a, b = log_ratio[i], log_ratio[i + 1]
        if np.isfinite(a) and np.isfinite(b) and a > 0 >= b:
            return float(np.exp(log_n[i] + a / (a - b) * (log_n[i + 1] - log_n[i])))
    return None


def check_speed_frame(df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"speed results miss the columns {missing} (expected the speed.csv of "
                         "experiments/speed.py)")


def speed_configurations(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Split a speed.csv frame into its measured configurations (see CONFIG_COLUMNS)."""
    check_speed_frame(df)
    keys = [_size_patch(df)] + [df[c] for c in CONFIG_COLUMNS if c in df]
    return [part.reset_index(drop=True)
            for _, part in df.groupby(keys, sort=False, dropna=False)]


def _size_patch(df: pd.DataFrame) -> pd.Series:
    """'S/2' from 'DiPoM-S/2' and 'DiT-S/2': the two families of one measurement share it."""
    return df["model"].astype(str).str.split("-", n=1).str[1].rename("size_patch")


def configuration_label(df: pd.DataFrame) -> str:
    """A file-name-safe label of one configuration, e.g. 'DiPoM-S_2_depth1_float32_fast'."""
    row = df.iloc[0]
    size_patch = _size_patch(df).iloc[0].replace("/", "_")
    label = f"{size_patch}_depth{int(row['depth'])}_batch{int(row['batch'])}_{row['dtype']}"
    if "pom_path" in df:
        label += f"_{row['pom_path']}"
    if "optimizer" in df and not bool(row["optimizer"]):
        label += "_no-optimizer"
    return label


def summarise_speed(df: pd.DataFrame) -> dict:
    """Slopes per (family, mode), DiPoM-training / DiT-inference ratios and their crossover,
    for ONE configuration (use speed_configurations first); the speed_summary.json document."""
    parts = speed_configurations(df)
    if len(parts) != 1:
        raise ValueError(f"speed results hold {len(parts)} configurations; summarise each of "
                         "speed_configurations(df) on its own")
    row = df.iloc[0]
    size, patch = _size_patch(df).iloc[0].split("/")
    summary = {"model_size": size, "patch": int(patch), "depth": int(row["depth"]),
               "device": str(row["device"]), "dtype": str(row["dtype"]), "batch": int(row["batch"]),
               "optimizer_step_in_training": bool(row.get("optimizer", True)), "slopes": {}}
    for (family, mode), part in df.groupby(["family", "mode"]):
        part = part.sort_values("tokens")
        n, s = part.tokens.to_numpy(float), part.seconds_per_image.to_numpy(float)
        ok = np.isfinite(s)
        summary["slopes"][f"{family}/{mode}"] = {
            "all_points": loglog_slope(n, s),
            "last_two_points": loglog_slope(n[ok][-2:], s[ok][-2:])}
    pivot = df.pivot_table(index="tokens", columns=["family", "mode"],
                           values="seconds_per_image").sort_index()
    if ("DiPoM", "training") in pivot and ("DiT", "inference") in pivot:
        ratio = pivot[("DiPoM", "training")] / pivot[("DiT", "inference")]
        summary["dipom_training_over_dit_inference"] = {int(k): float(v) for k, v in ratio.items()}
        n_star = crossover(pivot.index.to_numpy(), pivot[("DiPoM", "training")].to_numpy(),
                           pivot[("DiT", "inference")].to_numpy())
        summary["crossover_tokens"] = n_star
        # paper scale: latents at 1/8 of the image side, patch p -> side = 8 p sqrt(tokens)
        summary["crossover_resolution_px"] = (None if n_star is None
                                              else 8 * int(patch) * math.sqrt(n_star))
        if n_star is None:
            summary["crossover_note"] = (
                "DiPoM training is cheaper than DiT inference at every measured resolution"
                if (ratio <= 1).all() else
                "DiPoM training stays dearer than DiT inference inside the measured range"
                if (ratio > 1).all() else "no single crossing inside the range")
    return summary
