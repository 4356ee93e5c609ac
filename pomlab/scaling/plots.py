"""The scaling figures: the paper's Figure 5 and PoM against MHA (docs/scaling.md)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plotting
from ..checks import check_choice
from .config import FAMILY_OF, MIXERS
from .fits import BETTER, METRICS, X_AXES, X_COLUMN, frontier, seed_means, with_seed

COMPUTE_LABEL = "training compute (GFLOPs)"
AXIS_LABELS = {"compute": COMPUTE_LABEL, "wall": "measured training time (s)"}
SIZE_MARKERS = {"S": "o", "B": "s", "L": "^", "XL": "D"}


def _mixers(results: pd.DataFrame) -> list[str]:
    mixers = [m for m in MIXERS if m in set(results["mixer"])]
    if not mixers:
        raise ValueError("no results to plot")
    return mixers


def describe_results(results: pd.DataFrame) -> str:
    """One line saying what produced the numbers (scale, data, metric backend, samples, device)."""
    one = functools.partial(plotting.distinct, results)
    guidance = (one("cfg_guidance") if "cfg_guidance" in results
                and results["cfg_guidance"].notna().any() else "standard")  # older rows: standard
    return (f"{one('scale')} scale, {one('dataset')}, {one('fid_name')} & {one('is_name')} of "
            f"{one('n_fake')} samples vs {one('reference')}, {one('sample_method')} "
            f"{one('sample_steps')} steps, cfg {one('cfg')} ({guidance}), "
            f"batch {one('batch_size')}, {one('device')}")


def _line(ax, fit: dict, x_min: float, x_max: float, saturating: bool = False, **style) -> None:
    """A fit's power law (saturating: its saturating law) over [x_min, x_max], if defined."""
    exponent = fit and fit.get("sat_b" if saturating else "slope")
    if exponent is None or not np.isfinite(exponent):
        return
    x = np.geomspace(x_min, x_max, 40 if saturating else 20)
    ax.plot(x, fit["sat_a"] * x ** -fit["sat_b"] + fit["sat_c"] if saturating
            else 10 ** (fit["intercept"] + fit["slope"] * np.log10(x)), **style)


def _panel(ax, results: pd.DataFrame, fits: dict, metric: str, mixer: str, axis: str) -> None:
    column, x = METRICS[metric], X_AXES[axis]
    part = results[results["mixer"] == mixer]
    points = seed_means(part, x, column)
    for (model, size), run in points.groupby(["model", "size"], sort=False):
        color = plotting.SIZE_COLORS.get(size, "grey")
        fit = fits.get((metric, axis, "model", model))
        slope = f" ({fit['slope']:+.2f})" if fit and np.isfinite(fit["slope"] or np.nan) else ""
        if int(run["n_seeds"].max()) > 1:                 # mean +- s.d. over seeds
            ax.errorbar(run[x], run[column], yerr=run["sd"], fmt="o", color=color, ms=4,
                        capsize=2, label=f"{size}{slope}")
        else:
            ax.plot(run[x], run[column], "o", color=color, label=f"{size}{slope}")
        _line(ax, fit, run[x].min(), run[x].max(), color=color, lw=1.2)
    pooled = next((f for (me, a, g, _), f in fits.items()
                   if (me, a, g, f["mixer"]) == (metric, axis, "mixer", mixer)), None)
    if pooled and len(part):
        _line(ax, pooled, points[x].min(), points[x].max(), color="grey", ls="--", lw=1.0,
              label=f"all sizes ({pooled['slope']:+.2f})")
    edge = fits.get((metric, axis, "frontier", f"{mixer} frontier"))
    if edge is not None and len(points):
        on_edge = frontier(points, x, column, BETTER[metric])
        ax.plot(on_edge[x], on_edge[column], "o", mfc="none", mec="black", ms=8, mew=1.0)
        slope = f"{edge['slope']:+.2f}" if edge["slope"] is not None else "n/a"
        _line(ax, edge, edge["x_min"], edge["x_max"], color="black", lw=1.6,
              label=f"frontier ({slope})")
        if metric == "fid" and edge.get("sat_r2") is not None:
            _line(ax, edge, edge["x_min"], edge["x_max"], saturating=True, color="black", ls=":",
                  lw=1.2, label=f"saturating, floor {edge['sat_c']:.3g} (b {edge['sat_b']:.2f})")
    ax.set_title(f"{FAMILY_OF.get(mixer, mixer)} ({plotting.mixer_name(mixer)})")
    name = part[f"{metric}_name"].iloc[0] if len(part) else metric.upper()
    plotting.loglog(ax, AXIS_LABELS[axis], name)
    # Plain numbers; compute spans several decades, so only its decades are labelled.
    plotting.plain_log_labels(ax, "y")
    plotting.plain_log_labels(ax, "x", minor=False)


def plot_scaling(results: pd.DataFrame, fits: list[dict], stem: str | os.PathLike,
                 metrics: tuple[str, ...] = ("fid", "is"), x: str = "compute") -> list[Path]:
    """The paper's Figure 5 with the frontier (metrics in rows, mixers in columns) against x:
    "compute" or "wall" (see fits.with_wall_clock), as stem.png and stem.pdf."""
    check_choice("x", x, X_AXES)
    mixers = _mixers(results)
    results = with_seed(results)
    by_key = {(f["metric"], f.get("x", "compute"), f["group"], f["model"]): f for f in fits}
    with plotting.style():
        fig, axes = plotting.figure(ncols=len(mixers), nrows=len(metrics), width=3.6, height=2.9,
                                    sharey="row")
        for r, metric in enumerate(metrics):
            for c, mixer in enumerate(mixers):
                _panel(axes[r][c], results, by_key, metric, mixer, x)
                if c:
                    axes[r][c].set_ylabel("")
        seeds = ",".join(map(str, sorted(set(results["seed"]))))
        fig.suptitle(f"{describe_results(results)}, seeds {seeds}", fontsize=7)
        # right of each panel: one place for every panel (the data fill the log-log panels)
        plotting.legends_and_layout(fig, axes.flat, inside=False, title="size (slope)",
                                    frameon=False)
        return plotting.save(fig, stem)


def plot_mixer_comparison(results: pd.DataFrame, fits: list[dict], stem: str | os.PathLike,
                          metrics: tuple[str, ...] = ("fid", "is")) -> list[Path]:
    """PoM against MHA, one panel per metric, with each mixer's all-sizes fit: stem.png, .pdf."""
    mixers = _mixers(results)
    pooled = {(f["metric"], f["mixer"]): f for f in fits
              if f["group"] == "mixer" and f.get("x", "compute") == "compute"}
    with plotting.style():
        fig, axes = plotting.figure(ncols=len(metrics), width=3.6, height=2.9)
        for ax, metric in zip(axes[0], metrics):
            for mixer in mixers:
                part = results[results["mixer"] == mixer]
                color = plotting.MIXER_COLORS[mixer]
                for size, run in part.groupby("size", sort=False):
                    ax.plot(run[X_COLUMN], run[METRICS[metric]], SIZE_MARKERS.get(size, "o"),
                            color=color, alpha=0.8, label=f"{FAMILY_OF[mixer]}-{size}")
                fit = pooled.get((metric, mixer))
                slope = f" {fit['slope']:+.2f}" if fit and np.isfinite(fit["slope"]) else " n/a"
                _line(ax, fit, part[X_COLUMN].min(), part[X_COLUMN].max(), color=color,
                      ls=plotting.MIXER_DASHES[mixer], label=f"{plotting.mixer_name(mixer)} fit,"
                      f" slope{slope}")
            plotting.loglog(ax, COMPUTE_LABEL, results[f"{metric}_name"].iloc[0])
            plotting.plain_log_labels(ax, "y")
            plotting.plain_log_labels(ax, "x", minor=False)     # decades only: no crowding
        fig.suptitle("PoM vs MHA: " + describe_results(results), fontsize=7)
        plotting.legends_and_layout(fig, axes[0], outside="below", frameon=False, fontsize=6.5,
                                    ncol=2)
        return plotting.save(fig, stem)
