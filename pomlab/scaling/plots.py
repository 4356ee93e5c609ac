"""The scaling figure (the paper's Figure 5): FID and IS against training compute, log-log, one
colour per size, per-model regression lines, the all-sizes fit in black; one panel per mixer."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plotting
from .config import FAMILY_OF, MIXERS
from .fits import METRICS, X_COLUMN

COMPUTE_LABEL = "training compute (GFLOPs)"


def describe_results(results: pd.DataFrame) -> str:
    """One line saying what produced the numbers (scale, data, metric backend, samples, device)."""
    def one(column):
        return plotting.distinct(results, column)
    guidance = (one("cfg_guidance") if "cfg_guidance" in results
                and results["cfg_guidance"].notna().any() else "standard")  # older rows: standard
    return (f"{one('scale')} scale, {one('dataset')}, {one('fid_name')} & {one('is_name')} of "
            f"{one('n_fake')} samples vs {one('reference')}, {one('sample_method')} "
            f"{one('sample_steps')} steps, cfg {one('cfg')} ({guidance}), batch {one('batch_size')}, "
            f"{one('device')}")


def _line(ax, fit: dict, x_min: float, x_max: float, **style) -> None:
    if fit is None or not np.isfinite(fit["slope"]):
        return
    x = np.geomspace(x_min, x_max, 20)
    ax.plot(x, 10 ** (fit["intercept"] + fit["slope"] * np.log10(x)), **style)


def _panel(ax, results: pd.DataFrame, fits: dict, metric: str, mixer: str) -> None:
    column = METRICS[metric]
    part = results[results["mixer"] == mixer]
    for (model, size), run in part.groupby(["model", "size"], sort=False):
        color = plotting.SIZE_COLORS.get(size, "grey")
        fit = fits.get((metric, "model", model))
        slope = f" ({fit['slope']:+.2f})" if fit and np.isfinite(fit["slope"]) else ""
        ax.plot(run[X_COLUMN], run[column], "o", color=color, label=f"{size}{slope}")
        _line(ax, fit, run[X_COLUMN].min(), run[X_COLUMN].max(), color=color, lw=1.2)
    pooled = [f for (m, g, _), f in fits.items() if m == metric and g == "mixer" and
              f["mixer"] == mixer]
    if pooled and len(part):
        fit = pooled[0]
        _line(ax, fit, part[X_COLUMN].min(), part[X_COLUMN].max(), color="black", ls="--",
              lw=1.0, label=f"all sizes ({fit['slope']:+.2f})")
    family = FAMILY_OF.get(mixer, mixer)
    ax.set_title(f"{family} ({plotting.mixer_name(mixer)})")
    name = part[f"{metric}_name"].iloc[0] if len(part) else metric.upper()
    plotting.loglog(ax, COMPUTE_LABEL, name)
    # Plain numbers; compute spans several decades, so only its decades are labelled.
    plotting.plain_log_labels(ax, "y")
    plotting.plain_log_labels(ax, "x", minor=False)


def plot_scaling(results: pd.DataFrame, fits: list[dict], stem: str | os.PathLike,
                 metrics: tuple[str, ...] = ("fid", "is")) -> list[Path]:
    """Rows: metrics; columns: mixers present (PoM, then MHA). Writes stem.png and stem.pdf."""
    mixers = [m for m in MIXERS if m in set(results["mixer"])]
    if not mixers:
        raise ValueError("no results to plot")
    by_key = {(f["metric"], f["group"], f["model"]): f for f in fits}
    with plotting.style():
        fig, axes = plotting.figure(ncols=len(mixers), nrows=len(metrics), width=3.6, height=2.9,
                                    sharey="row")
        for r, metric in enumerate(metrics):
            for c, mixer in enumerate(mixers):
                _panel(axes[r][c], results, by_key, metric, mixer)
                if c:
                    axes[r][c].set_ylabel("")
        fig.suptitle(describe_results(results), fontsize=7)
        # right of each panel: one place for every panel (the data fill the log-log panels)
        plotting.legends_and_layout(fig, axes.flat, inside=False, title="size (slope)",
                                    frameon=False)
        return plotting.save(fig, stem)


SIZE_MARKERS = {"S": "o", "B": "s", "L": "^", "XL": "D"}


def plot_mixer_comparison(results: pd.DataFrame, fits: list[dict], stem: str | os.PathLike,
                          metrics: tuple[str, ...] = ("fid", "is")) -> list[Path]:
    """PoM against MHA on shared axes: one panel per metric, every evaluation (colour = mixer,
    marker = size) and each mixer's all-sizes fit with its slope. Writes stem.png and .pdf."""
    mixers = [m for m in MIXERS if m in set(results["mixer"])]
    if not mixers:
        raise ValueError("no results to plot")
    pooled = {(f["metric"], f["mixer"]): f for f in fits if f["group"] == "mixer"}
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
