"""Log-log fits of a metric against training compute: log10 y = a + b log10 C (OLS).

Per model (one mixer and size, its evaluations along training) and across models (all sizes of
one mixer pooled). Slope b and intercept a come with 95% confidence intervals from the OLS
standard errors and Student's t with n - 2 degrees of freedom (scipy.stats.linregress); they are
NaN when n < 3 (no residual degrees of freedom), and the whole fit is NaN when n < 2 or the
compute does not vary.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from scipy import stats

from ..io import atomic_to_csv, atomic_write_json

LOG_BASE = 10
X_COLUMN = "train_compute_gflops"
METRICS = {"fid": "fid", "is": "is_mean"}          # fit name -> results.csv column
LABEL_COLUMNS = ("scale", "dataset", "backend", "fid_name", "is_name", "n_fake", "n_real",
                 "reference", "sample_steps", "sample_method", "cfg", "seed", "batch_size")
FIT_COLUMNS = ["metric", "group", "model", "mixer", "size", "patch", "n", "slope",
               "slope_ci95_low", "slope_ci95_high", "intercept", "intercept_ci95_low",
               "intercept_ci95_high", "r2", "compute_min", "compute_max"]


def loglog_fit(x, y) -> dict:
    """OLS of log10 y on log10 x: n, slope, intercept, their 95% CIs, r2 (see module doc)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of one length, got {x.shape} and {y.shape}")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(y)) or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("a log-log fit needs finite positive x and y")
    nan = float("nan")
    result = {"n": int(len(x)), "slope": nan, "intercept": nan, "slope_ci95": [nan, nan],
              "intercept_ci95": [nan, nan], "r2": nan}
    lx, ly = np.log10(x), np.log10(y)
    if len(x) < 2 or np.ptp(lx) == 0:
        return result
    fit = stats.linregress(lx, ly)
    result.update(slope=float(fit.slope), intercept=float(fit.intercept), r2=float(fit.rvalue ** 2))
    if len(x) >= 3:
        t = float(stats.t.ppf(0.975, len(x) - 2))
        result["slope_ci95"] = [fit.slope - t * fit.stderr, fit.slope + t * fit.stderr]
        result["intercept_ci95"] = [fit.intercept - t * fit.intercept_stderr,
                                    fit.intercept + t * fit.intercept_stderr]
    return result


def fit_table(results: pd.DataFrame) -> list[dict]:
    """Every fit of a results frame: per model ("model") and per mixer over sizes ("mixer"), for
    FID and IS. Models come in the frame's order."""
    fits = []
    for metric, column in METRICS.items():
        for (model, mixer, size, patch), part in results.groupby(
                ["model", "mixer", "size", "patch"], sort=False):
            fits.append(_fit_row(metric, "model", part, column, model=model, mixer=mixer,
                                 size=size, patch=int(patch)))
        for mixer, part in results.groupby("mixer", sort=False):
            sizes = ",".join(dict.fromkeys(part["size"]))
            fits.append(_fit_row(metric, "mixer", part, column, model=f"{mixer} ({sizes})",
                                 mixer=mixer, size=sizes, patch=None))
    return fits


def _fit_row(metric, group, part, column, **labels) -> dict:
    fit = loglog_fit(part[X_COLUMN], part[column])
    return {"metric": metric, "group": group, **labels, "n": fit["n"], "slope": fit["slope"],
            "slope_ci95_low": fit["slope_ci95"][0], "slope_ci95_high": fit["slope_ci95"][1],
            "intercept": fit["intercept"], "intercept_ci95_low": fit["intercept_ci95"][0],
            "intercept_ci95_high": fit["intercept_ci95"][1], "r2": fit["r2"],
            "compute_min": float(part[X_COLUMN].min()), "compute_max": float(part[X_COLUMN].max())}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _json_safe(float(value))
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_fits(results: pd.DataFrame, json_path: str | os.PathLike,
               csv_path: str | os.PathLike | None = None) -> dict:
    """Fit everything and write the JSON (labels, conventions, fits; NaN as null) and a tidy CSV."""
    fits = fit_table(results)
    labels = {c: sorted(set(results[c].dropna().tolist()), key=str) for c in LABEL_COLUMNS
              if c in results}
    document = _json_safe({
        "model": f"log{LOG_BASE}(metric) = intercept + slope * log{LOG_BASE}({X_COLUMN})",
        "x": f"{X_COLUMN}: 3 x forward GFLOPs per image (DiT convention) x images seen",
        "metrics": {"fid": "fid column (see fid_name)", "is": "is_mean column (see is_name)"},
        "groups": {"model": "one model's evaluations along training",
                   "mixer": "all sizes of one mixer pooled"},
        "ci": "95% (Student t, n - 2 dof); null when n < 3",
        "labels": labels,
        "fits": fits,
    })
    atomic_write_json(json_path, document)
    if csv_path is not None:
        atomic_to_csv(pd.DataFrame(fits, columns=FIT_COLUMNS), csv_path)
    return document


def slopes_table(fits: list[dict]) -> pd.DataFrame:
    """FID and IS slopes side by side, one row per model and per mixer (pooled), for printing:
    slope [95% CI], R^2 and n."""
    def cell(f):
        if f["slope"] is None or not np.isfinite(f["slope"]):
            return "n/a"
        low, high = f["slope_ci95_low"], f["slope_ci95_high"]
        ci = (f" [{low:+.2f}, {high:+.2f}]" if low is not None and np.isfinite(low) else "")
        return f"{f['slope']:+.3f}{ci}"

    rows = {}
    for f in fits:
        row = rows.setdefault((f["group"], f["model"]), {"model": f["model"], "fit": f["group"],
                                                         "n": f["n"]})
        row[f"{f['metric']} slope [95% CI]"] = cell(f)
        row[f"{f['metric']} R2"] = (f"{f['r2']:.3f}" if f["r2"] is not None and
                                    np.isfinite(f["r2"]) else "n/a")
    return pd.DataFrame(list(rows.values()))
