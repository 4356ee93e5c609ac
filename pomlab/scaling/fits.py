"""Fits of a metric against training compute (or wall-clock time): the power law, the saturating
law y = a C^(-b) + c and the compute-optimal frontier, per model, mixer and frontier, with 95%
intervals (Student t with one seed, a bootstrap over seeds with several; docs/scaling.md)."""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..checks import check_choice
from ..io import atomic_to_csv, atomic_write_json

X_COLUMN = "train_compute_gflops"
WALL_COLUMN = "train_wall_seconds"       # cumulative measured training time (timings.csv)
X_AXES = {"compute": X_COLUMN, "wall": WALL_COLUMN}
BETTER = {"fid": "lower", "is": "higher"}
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
METRICS = {"fid": "fid", "is": "is_mean"}          # fit name -> results.csv column
LABEL_COLUMNS = ("scale", "dataset", "backend", "fid_name", "is_name", "n_fake", "n_real",
                 "reference", "sample_steps", "sample_method", "cfg", "seed", "batch_size")
FIT_COLUMNS = ["metric", "x", "group", "model", "mixer", "size", "patch", "n", "n_seeds", "ci",
               "slope", "slope_ci95_low", "slope_ci95_high", "intercept", "intercept_ci95_low",
               "intercept_ci95_high", "r2", "sat_a", "sat_b", "sat_b_ci95_low",
               "sat_b_ci95_high", "sat_c", "sat_c_ci95_low", "sat_c_ci95_high", "sat_r2",
               "x_min", "x_max"]
GROUP_KEYS = ["model", "mixer", "size", "patch"]
NAN = float("nan")


def _positive_pair(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of one length, got {x.shape} and {y.shape}")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(y)) or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError(f"{what} needs finite positive x and y")
    return x, y


def _no_fit(n: int, values: tuple[str, ...], intervals: tuple[str, ...]) -> dict:
    """A fit's result before (or without) fitting: every value NaN."""
    return {"n": n, **dict.fromkeys(values, NAN), **{f"{k}_ci95": [NAN, NAN] for k in intervals}}


def _t95(estimate: float, stderr: float, dof: int) -> list[float]:
    """Student-t 95% interval of an estimate."""
    t = float(stats.t.ppf(0.975, dof))
    return [estimate - t * stderr, estimate + t * stderr]


def loglog_fit(x, y, *, intervals: bool = True) -> dict:
    """OLS of log10 y on log10 x: n, slope, intercept, their 95% CIs, r2 (see module doc);
    intervals=False: slope and intercept alone (the bootstrap's quick refits)."""
    x, y = _positive_pair(x, y, "a log-log fit")
    result = _no_fit(len(x), ("slope", "intercept", "r2"), ("slope", "intercept"))
    lx, ly = np.log10(x), np.log10(y)
    if len(x) < 2 or np.ptp(lx) == 0:
        return result
    if not intervals:
        slope, intercept = np.polyfit(lx, ly, 1)
        return {**result, "slope": float(slope), "intercept": float(intercept)}
    fit = stats.linregress(lx, ly)
    result.update(slope=float(fit.slope), intercept=float(fit.intercept), r2=float(fit.rvalue ** 2))
    if len(x) >= 3:
        result["slope_ci95"] = _t95(fit.slope, fit.stderr, len(x) - 2)
        result["intercept_ci95"] = _t95(fit.intercept, fit.intercept_stderr, len(x) - 2)
    return result


def saturating_fit(x, y, start: dict | None = None, *, intervals: bool = True) -> dict:
    """y = a * x^(-b) + c, least squares on log10 y: n, a, b, c, t 95% CIs of b and c (n >= 4),
    r2 on log10 y; NaN when n < 3 or the fit fails. `start`: a similar fit to start from."""
    x, y = _positive_pair(x, y, "a saturating fit")
    result = _no_fit(len(x), ("a", "b", "c", "r2"), ("b", "c"))
    lx, ly = np.log10(x), np.log10(y)
    if len(x) < 3 or np.ptp(lx) == 0:
        return result
    x0 = float(np.mean(lx))                  # a at the data's middle: well-conditioned
    scale = float(np.min(y))

    def model(lx, log_a, b, c):              # c in units of min(y)
        return np.log10(10.0 ** (log_a - b * (lx - x0)) + c * scale)

    if start is not None and np.isfinite(start["b"]):   # one start: a nearby fit's answer
        guesses = [[np.log10(start["a"]) - start["b"] * x0, start["b"], start["c"] / scale]]
    else:                                    # a few starts: the floor is often near min(y)
        line = loglog_fit(x, y)
        at_x0 = 10 ** (line["intercept"] + line["slope"] * x0)
        guesses = [[np.log10(max(at_x0 - c0 * scale, 1e-12 * scale)),
                    max(-line["slope"], 1e-3), c0] for c0 in (0.0, 0.5, 0.9)]
    best = None
    for guess in guesses:
        try:
            with warnings.catch_warnings():      # no covariance (a bound hit): CIs NaN below
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, cov = optimize.curve_fit(model, lx, ly, p0=guess,
                                                 bounds=([-np.inf, 0.0, 0.0],
                                                         [np.inf, 20.0, np.inf]), max_nfev=5000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((model(lx, *params) - ly) ** 2))
        if best is None or sse < best[0]:
            best = (sse, params, cov)
    if best is None:
        return result
    _, (log_a, b, c), cov = best
    total = float(np.sum((ly - ly.mean()) ** 2))        # r2 on log10 y, as the power law's
    r2 = 1.0 - float(np.sum((ly - model(lx, log_a, b, c)) ** 2)) / total if total > 0 else NAN
    result.update(a=float(10 ** (log_a + b * x0)), b=float(b), c=float(c * scale), r2=r2)
    if intervals and len(x) >= 4 and np.all(np.isfinite(cov)):
        se_b, se_c = np.sqrt(np.maximum(np.diag(cov)[1:], 0.0))
        result["b_ci95"] = _t95(b, se_b, len(x) - 3)
        result["c_ci95"] = [v * scale for v in _t95(c, se_c, len(x) - 3)]
    return result


def frontier(points: pd.DataFrame, x: str, y: str, better: str = "lower") -> pd.DataFrame:
    """The compute-optimal frontier of `points`: sorted by x, the rows whose y strictly beats
    (better: "lower" or "higher") every row with x at most theirs."""
    check_choice("better", better, ("lower", "higher"))
    sign = 1.0 if better == "lower" else -1.0
    ordered = points.assign(_key=sign * points[y]).sort_values([x, "_key"], kind="stable")
    key = ordered["_key"].to_numpy(dtype=np.float64)
    best_before = np.fmin.accumulate(np.concatenate([[np.inf], key[:-1]]))   # NaN: no record
    return ordered[key < best_before].drop(columns="_key").reset_index(drop=True)


def with_wall_clock(results: pd.DataFrame, timings: pd.DataFrame | None) -> pd.DataFrame:
    """results with WALL_COLUMN: each run's train_seconds summed up to that evaluation."""
    results = with_seed(results)
    if timings is None or timings.empty:
        return results.assign(**{WALL_COLUMN: np.nan})
    timings = with_seed(timings).sort_values(["model", "seed", "step"], kind="stable")
    timings = timings.assign(**{WALL_COLUMN: timings.groupby(["model", "seed"])["train_seconds"]
                                .cumsum()})
    return results.drop(columns=[WALL_COLUMN], errors="ignore").merge(
        timings[["model", "seed", "step", WALL_COLUMN]], on=["model", "seed", "step"], how="left")


def with_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Files written before --seeds have no seed column: their runs used seed 0."""
    return frame if "seed" in frame else frame.assign(seed=0)


def seed_means(results: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One point per (model, step): x and y averaged over the seeds (n_seeds of them; sd: y's
    standard deviation over them)."""
    results = with_seed(results)
    if "step" not in results:                 # a bare table: each run's rows in order
        results = results.assign(step=results.groupby([*GROUP_KEYS, "seed"]).cumcount())
    points = results[[*GROUP_KEYS, "step", "seed", x, y]].dropna(subset=[x, y])
    grouped = points.groupby([*GROUP_KEYS, "step"], sort=False)
    return grouped.agg(**{x: (x, "mean"), y: (y, "mean"), "sd": (y, "std"),
                          "n_seeds": ("seed", "nunique")}).reset_index()


def _fits_of_points(points: pd.DataFrame, metric: str, x: str, y: str,
                    starts: dict | None = None) -> dict:
    """Every fit of one metric against one x, keyed (group, model); starts: earlier fits to start
    from (the bootstrap's quick refits)."""
    fits = {}

    def add(group, model, part, labels):
        # no saturating law through sizes pooled: each size has its own floor
        start = starts[(group, model)]["sat"] if starts and (group, model) in starts else None
        intervals = starts is None
        sat = (saturating_fit(part[x], part[y], start, intervals=intervals) if group != "mixer"
               else saturating_fit([], []))
        line = loglog_fit(part[x], part[y], intervals=intervals)
        fits[(group, model)] = {"labels": labels, "rows": part, "line": line, "sat": sat}

    for (model, mixer, size, patch), part in points.groupby(GROUP_KEYS, sort=False):
        add("model", model, part, dict(mixer=mixer, size=size, patch=int(patch)))
    for mixer, part in points.groupby("mixer", sort=False):
        sizes = ",".join(dict.fromkeys(part["size"]))
        add("mixer", f"{mixer} ({sizes})", part, dict(mixer=mixer, size=sizes, patch=None))
        edge = frontier(part, x, y, BETTER[metric])
        add("frontier", f"{mixer} frontier", edge,
            dict(mixer=mixer, size=",".join(dict.fromkeys(edge["size"])), patch=None))
    return fits


def _bootstrap(results: pd.DataFrame, metric: str, x: str, y: str, resamples: int,
               seed: int, starts: dict) -> dict:
    """(group, model) -> arrays of slope, intercept, sat b, sat c over resamples of the runs:
    each resample draws every model's seeds with replacement and refits the means."""
    rng = np.random.default_rng(seed)
    blocks = []                              # per model: seeds x steps tables of x and y
    for keys, frame in with_seed(results).groupby(GROUP_KEYS, sort=False):
        table = frame.pivot_table(index="seed", columns="step", values=[x, y], dropna=False)
        blocks.append((keys, table[x].columns.to_numpy(), table[x].to_numpy(np.float64),
                       table[y].to_numpy(np.float64)))
    draws: dict = {}
    for _ in range(resamples):
        parts = []
        for (model, mixer, size, patch), steps, table_x, table_y in blocks:
            pick = rng.integers(0, len(table_x), len(table_x))
            with warnings.catch_warnings():  # a step no drawn seed reached: NaN, dropped below
                warnings.simplefilter("ignore", RuntimeWarning)
                mean_x, mean_y = np.nanmean(table_x[pick], 0), np.nanmean(table_y[pick], 0)
            parts.append(pd.DataFrame({"model": model, "mixer": mixer, "size": size,
                                       "patch": patch, "step": steps, x: mean_x, y: mean_y,
                                       "n_seeds": len(table_x)}))
        points = pd.concat(parts, ignore_index=True).dropna(subset=[x, y])
        for key, fit in _fits_of_points(points, metric, x, y, starts).items():
            values = (fit["line"]["slope"], fit["line"]["intercept"], fit["sat"]["b"],
                      fit["sat"]["c"])
            draws.setdefault(key, []).append(values)
    return {key: np.asarray(values, dtype=np.float64) for key, values in draws.items()}


def fit_table(results: pd.DataFrame, timings: pd.DataFrame | None = None, *,
              resamples: int | None = None, seed: int = BOOTSTRAP_SEED) -> list[dict]:
    """Every fit of a results frame (rows of FIT_COLUMNS, models in the frame's order): per metric,
    x (compute; wall-clock with timings) and group, both laws with 95% intervals."""
    resamples = BOOTSTRAP_RESAMPLES if resamples is None else resamples
    results = with_seed(results)
    axes = {"compute": X_COLUMN}
    if timings is not None and not timings.empty:
        results = with_wall_clock(results, timings)
        axes["wall"] = WALL_COLUMN
    many_seeds = len(results) and int(results.groupby("model")["seed"].nunique().min()) > 1
    rows = []
    for metric, y in METRICS.items():
        for axis, x in axes.items():
            if results[x].isna().all():
                continue
            fits = _fits_of_points(seed_means(results, x, y), metric, x, y)
            boot = _bootstrap(results, metric, x, y, resamples, seed, fits) if many_seeds else {}
            for (group, model), fit in fits.items():
                line, sat, part = fit["line"], fit["sat"], fit["rows"]
                draws = boot.get((group, model))
                row = {"metric": metric, "x": axis, "group": group, "model": model,
                       **fit["labels"], **{k: line[k] for k in ("n", "slope", "intercept", "r2")},
                       **{f"sat_{k}": sat[k] for k in ("a", "b", "c", "r2")},
                       "n_seeds": int(part["n_seeds"].min()) if len(part) else 0,
                       "ci": "t (one run: too narrow)" if draws is None else "bootstrap over seeds",
                       "x_min": float(part[x].min()), "x_max": float(part[x].max())}
                t_intervals = (line["slope_ci95"], line["intercept_ci95"], sat["b_ci95"],
                               sat["c_ci95"])
                for i, name in enumerate(("slope", "intercept", "sat_b", "sat_c")):  # _bootstrap's
                    finite = draws[np.isfinite(draws[:, i]), i] if draws is not None else None
                    row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = (   # percentile bootstrap
                        t_intervals[i] if draws is None else [NAN, NAN] if len(finite) < 2
                        else [float(v) for v in np.percentile(finite, [2.5, 97.5])])
                rows.append(row)
    return rows


def _json_safe(value):
    """NumPy scalars as Python numbers, NaN and inf as None (JSON null), through dicts and lists."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    value = value.item() if isinstance(value, (np.integer, np.floating)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_fits(results: pd.DataFrame, json_path: str | os.PathLike,
               csv_path: str | os.PathLike | None = None,
               timings: pd.DataFrame | None = None) -> dict:
    """fit_table, written as JSON (labels, conventions, fits; NaN as null) and a tidy CSV."""
    fits = fit_table(results, timings)
    labels = {c: sorted(set(results[c].dropna().tolist()), key=str) for c in LABEL_COLUMNS
              if c in results}
    document = _json_safe({
        "model": "log10(metric) = intercept + slope * log10(x); saturating: "
                 "metric = sat_a * x^(-sat_b) + sat_c (least squares on log10 metric)",
        "x": {"compute": f"{X_COLUMN}: 3 x forward GFLOPs per image (DiT convention) x images seen",
              "wall": f"{WALL_COLUMN}: measured training seconds of the run up to the "
                      "evaluation (timings.csv; depends on the machine and its load)"},
        "metrics": {"fid": "fid column (see fid_name)", "is": "is_mean column (see is_name)"},
        "groups": {"model": "one model's evaluations along training (means over seeds)",
                   "mixer": "all sizes of one mixer pooled (power law only)",
                   "frontier": "compute-optimal frontier of one mixer: evaluations no cheaper "
                               "one beats (lowest FID / highest IS so far)"},
        "ci": "95%. 't (one run: too narrow)': Student t on the residuals (n - 2 dof line, "
              "n - 3 saturating), treating one run's evaluations as independent; 'bootstrap "
              f"over seeds': percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples) of the "
              "seeds of every model; null when undefined",
        "r2": "on log10 metric, for both laws", "labels": labels, "fits": fits})
    atomic_write_json(json_path, document)
    if csv_path is not None:
        atomic_to_csv(pd.DataFrame(fits, columns=FIT_COLUMNS), csv_path)
    return document


def slopes_table(fits: list[dict]) -> pd.DataFrame:
    """FID and IS slopes against compute side by side, one row per fit group and model."""
    def number(value, fmt):
        return format(value, fmt) if value is not None and np.isfinite(value) else "n/a"

    rows = {}
    for f in (f for f in fits if f.get("x", "compute") == "compute"):
        row = rows.setdefault((f["group"], f["model"]), {"model": f["model"], "fit": f["group"],
                                                         "n": f["n"], "seeds": f.get("n_seeds", 1)})
        slope, low, high = number(f["slope"], "+.3f"), f["slope_ci95_low"], f["slope_ci95_high"]
        if slope != "n/a" and number(low, "") != "n/a":
            slope += f" [{low:+.2f}, {high:+.2f}]"
        row[f"{f['metric']} slope [95% CI]"] = slope
        row[f"{f['metric']} R2"] = number(f["r2"], ".3f")
        if f["metric"] == "fid":
            row["fid floor c"] = number(f.get("sat_c"), ".3g")
            row["saturating R2"] = number(f.get("sat_r2"), ".3f")
    return pd.DataFrame(list(rows.values()))
