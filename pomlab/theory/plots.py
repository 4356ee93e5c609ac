"""Figures of the theory studies, in the paper style of pomlab.plotting (PNG + PDF)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from .. import plotting
from .training import MIXER_LABELS, ladder_rows

PALETTE = {MIXER_LABELS[m]: plotting.MIXER_COLORS[m] for m in MIXER_LABELS}
NO_DEVICE = "device not recorded"           # rows of CSVs written before devices were recorded


def plot_error_vs_params(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Held-out relative MSE against parameters, one panel per task, one line per mixer."""
    rows = ladder_rows(df).assign(mixer=lambda r: r.mixer.map(MIXER_LABELS)).sort_values("params")
    with plotting.style():
        grid = sns.relplot(data=rows, x="params", y="test_rel_mse", hue="mixer", col="task",
                           col_wrap=min(3, rows.task.nunique()), kind="line", marker="o",
                           palette=PALETTE, height=2.4, aspect=1.2, estimator=None, sort=True,
                           facet_kws={"sharey": False})
        for ax in grid.axes.flat:
            plotting.loglog(ax)
        grid.set_axis_labels("parameters", "held-out relative MSE")
        ladder = sorted(set(zip(rows.width, rows.depth)))
        grid.figure.suptitle("Toy seq2seq tasks: held-out error vs parameters; models (width, "
                             f"depth) = {', '.join(map(str, ladder))}; synthetic data, "
                             f"{plotting.distinct(rows, 'device', NO_DEVICE)}", y=1.03)
        return plotting.save(grid.figure, stem)


def plot_error_vs_degree(df: pd.DataFrame, stem: str | Path, width: int = 16,
                         depth: int = 1) -> list[Path]:
    """PoM's held-out relative MSE against its degree at a fixed width and depth."""
    rows = df[(df.mixer == "pom") & (df.width == width) & (df.depth == depth)]
    if rows.empty:
        raise ValueError(f"no PoM rows at width {width}, depth {depth} to plot against degree")
    with plotting.style():
        fig, [[ax]] = plotting.figure(width=4.0, height=2.9)
        sns.lineplot(data=rows, x="degree", y="test_rel_mse", hue="task", marker="o", ax=ax)
        ax.set(yscale="log", xlabel="PoM degree k", ylabel="held-out relative MSE",
               title=f"PoM, width {width}, depth {depth}; synthetic data, "
                     f"{plotting.distinct(rows, 'device', NO_DEVICE)}")
        ax.set_xticks(sorted(rows.degree.unique()))
        return plotting.save(fig, stem)


def plot_contextual_separation(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Relative separation of each model's context values; failures drawn at the floor."""
    rows = df.copy()
    rows["grid"] = rows.apply(lambda r: f"L={r.levels}, n={r.tokens}, d={r.dim}"
                              + (", +pos" if r.positional else ""), axis=1)
    positive = rows.loc[rows.holds & (rows.relative_separation > 0), "relative_separation"]
    floor = positive.min() / 10 if len(positive) else 1e-12
    rows["shown"] = np.where(rows.holds, rows.relative_separation, floor)
    rows["verdict"] = np.where(rows.holds, "contextual mapping", "fails")
    with plotting.style():
        fig, [[ax]] = plotting.figure(width=7.0, height=3.6)
        sns.scatterplot(data=rows, y="model", x="shown", hue="grid", style="verdict",
                        markers={"contextual mapping": "o", "fails": "X"}, s=55, ax=ax)
        ax.set(xscale="log", xlabel="relative separation (min distance / radius of values)",
               ylabel="")
        ax.axvline(floor, color="grey", lw=0.8, ls=":")
        ax.annotate("fails\n(sep. 0)", (floor, 0), xytext=(4, 0), textcoords="offset points",
                    xycoords=("data", "axes fraction"), fontsize=7, color="grey", va="bottom")
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)
        ax.set_title("Contextual mapping check (Yun et al. Def. 3.1) on quantised grids")
        return plotting.save(fig, stem)
