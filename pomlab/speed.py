"""Analysis of experiments/speed.py's measurements (the paper's Figure 1) from the tidy speed.csv
alone (one row per model x mode x resolution): the summary, figure and notebooks agree."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .results import KINDS

# With the model's size/patch, the columns that identify one measured configuration
CONFIG_COLUMNS = ("depth", "batch", "dtype", "optimizer", "pom_path", "device")


def loglog_slope(x, y) -> float:
    """pomlab.scaling's least-squares slope of log y on log x over the finite positive points
    (NaN if < 2), skipping the points a variant did not measure."""
    from .scaling.fits import loglog_fit          # loads the training stack: only when fitting

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return loglog_fit(x[ok], y[ok])["slope"]


def crossover(tokens, dipom_train, dit_inference) -> float | None:
    """Token count where DiPoM training time falls to DiT inference time (log-log interpolation
    between measured points, tokens ascending); None when it does not happen inside the range."""
    log_ratio = np.log(np.asarray(dipom_train, dtype=float) / np.asarray(dit_inference, dtype=float))
    log_n = np.log(np.asarray(tokens, dtype=float))
    for i, (a, b) in enumerate(zip(log_ratio, log_ratio[1:])):
        if np.isfinite(a) and np.isfinite(b) and a > 0 >= b:
            return float(np.exp(log_n[i] + a / (a - b) * (log_n[i + 1] - log_n[i])))
    return None


def speed_configurations(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Split a speed.csv frame into its measured configurations (see CONFIG_COLUMNS)."""
    if missing := [c for c in KINDS["speed"].columns if c not in df]:
        raise ValueError(f"speed results miss the columns {missing} (expected the speed.csv of "
                         "experiments/speed.py)")
    keys = [_size_patch(df)] + [df[c] for c in CONFIG_COLUMNS if c in df]
    return [part.reset_index(drop=True) for _, part in df.groupby(keys, sort=False, dropna=False)]


def _size_patch(df: pd.DataFrame) -> pd.Series:
    """'S/2' from 'DiPoM-S/2' and 'DiT-S/2': the two families of one measurement share it."""
    return df["model"].astype(str).str.split("-", n=1).str[1].rename("size_patch")


def configuration_label(df: pd.DataFrame) -> str:
    """A file-name-safe label of one configuration, e.g. 'S_2_depth1_batch1_float32_fast'."""
    row = df.iloc[0]
    label = (f"{_size_patch(df).iloc[0].replace('/', '_')}_depth{int(row['depth'])}"
             f"_batch{int(row['batch'])}_{row['dtype']}")
    label += f"_{row['pom_path']}" if "pom_path" in df else ""
    return label + ("_no-optimizer" if "optimizer" in df and not bool(row["optimizer"]) else "")


def summarise_speed(df: pd.DataFrame) -> dict:
    """speed_summary.json of ONE configuration (see speed_configurations): slopes of log time on
    log tokens per (family, mode), DiPoM-training / DiT-inference ratios and their crossover."""
    if (configurations := len(speed_configurations(df))) != 1:
        raise ValueError(f"speed results hold {configurations} configurations; "
                         "summarise each of speed_configurations(df) on its own")
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
            "all_points": loglog_slope(n, s), "last_two_points": loglog_slope(n[ok][-2:], s[ok][-2:])}
    pivot = df.pivot_table(index="tokens", columns=["family", "mode"],
                           values="seconds_per_image").sort_index()
    if ("DiPoM", "training") in pivot and ("DiT", "inference") in pivot:
        train, infer = pivot[("DiPoM", "training")], pivot[("DiT", "inference")]
        ratio = train / infer
        summary["dipom_training_over_dit_inference"] = {int(k): float(v) for k, v in ratio.items()}
        n_star = summary["crossover_tokens"] = crossover(pivot.index, train, infer)
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
