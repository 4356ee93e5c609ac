"""The scaling figure (the paper's Figure 5): FID and IS against training compute, log-log, one
colour per size, per-model regression lines, the all-sizes fit in black; one panel per mixer."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import ticker

from .. import plotting
from .config import FAMILY_OF, MIXERS
from .fits import METRICS, X_COLUMN

COMPUTE_LABEL = "training compute (GFLOPs)"


def describe_results(results: pd.DataFrame) -> str:
    """One line saying what produced the numbers (scale, data, metric backend, samples, device)."""
    def one(column):
        values = list(dict.fromkeys(results[column].astype(str)))
        return values[0] if len(values) == 1 else "/".join(values)
    return (f"{one('scale')} scale, {one('dataset')}, {one('fid_name')} & {one('is_name')} of "
            f"{one('n_fake')} samples vs {one('reference')}, {one('sample_method')} "
            f"{one('sample_steps')} steps, cfg {one('cfg')}, batch {one('batch_size')}, "
            f"{one('device')}")


def _plain_log_label(ax, value: float) -> str:
    """'%g' labels on a log axis: every tick within a decade, 1-2-3-5 over 1.5 decades, 1-2-5
    beyond, so minor labels never collide."""
    if value <= 0:
        return ""
    low, high = ax.get_ylim()
    decades = np.log10(high / low) if low > 0 else 3.0
    keep = range(1, 10) if decades < 0.8 else (1, 2, 3, 5) if decades < 1.5 else (1, 2, 5)
    lead = round(value / 10 ** np.floor(np.log10(value) + 1e-9))
    return f"{value:g}" if lead in keep else ""


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
    # Plain numbers on the metric axis, thinned to fit its span; no minor labels on compute.
    label = ticker.FuncFormatter(lambda value, _: _plain_log_label(ax, value))
    ax.yaxis.set_major_formatter(label)
    ax.yaxis.set_minor_formatter(label)
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.legend(title="size (slope)", loc="best", frameon=False)


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
        fig.tight_layout()
        return plotting.save(fig, stem)
