"""Figures of the theory studies (kept in one place so they can move to pomlab/plotting.py)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = ["save_figure", "plot_error_vs_params", "plot_error_vs_degree",
           "plot_contextual_separation"]

MIXER_LABELS = {"pom": "PoM", "mha": "MHA", "none": "token-wise MLP (no mixing)"}
PALETTE = {"PoM": "#1f77b4", "MHA": "#ff7f0e", "token-wise MLP (no mixing)": "#7f7f7f"}


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Write stem.png and stem.pdf; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return paths


def _ladder(df: pd.DataFrame) -> pd.DataFrame:
    """The capacity-ladder rows: PoM at the default degree 2, every MHA/MLP row."""
    rows = df[(df.mixer != "pom") | (df.degree == 2)].copy()
    rows["mixer"] = rows.mixer.map(MIXER_LABELS)
    return rows.sort_values("params")


def plot_error_vs_params(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Held-out relative MSE against parameters, one panel per task, one line per mixer."""
    sns.set_theme(style="whitegrid", context="paper")
    rows = _ladder(df)
    grid = sns.relplot(data=rows, x="params", y="test_rel_mse", hue="mixer", col="task",
                       col_wrap=3, kind="line", marker="o", palette=PALETTE, height=2.6,
                       aspect=1.2, facet_kws={"sharey": False}, estimator=None, sort=True)
    grid.set(xscale="log", yscale="log")
    grid.set_axis_labels("parameters", "held-out relative MSE")
    ladder = sorted(set(zip(rows.width, rows.depth)))
    grid.figure.suptitle("Toy seq2seq tasks: held-out error vs parameters; models (width, "
                         f"depth) = {', '.join(map(str, ladder))}; synthetic data, CPU", y=1.03)
    return save_figure(grid.figure, stem)


def plot_error_vs_degree(df: pd.DataFrame, stem: str | Path, width: int = 16,
                         depth: int = 1) -> list[Path]:
    """PoM's held-out relative MSE against its degree at a fixed width and depth."""
    sns.set_theme(style="whitegrid", context="paper")
    rows = df[(df.mixer == "pom") & (df.width == width) & (df.depth == depth)]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    sns.lineplot(data=rows, x="degree", y="test_rel_mse", hue="task", marker="o", ax=ax)
    ax.set(yscale="log", xlabel="PoM degree k", ylabel="held-out relative MSE",
           title=f"PoM, width {width}, depth {depth}")
    ax.set_xticks(sorted(rows.degree.unique()))
    return save_figure(fig, stem)


def plot_contextual_separation(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Relative separation of each model's context values; failures drawn at the floor."""
    sns.set_theme(style="whitegrid", context="paper")
    rows = df.copy()
    rows["grid"] = rows.apply(lambda r: f"L={r.levels}, n={r.tokens}, d={r.dim}"
                              + (", +pos" if r.positional else ""), axis=1)
    positive = rows.loc[rows.holds & (rows.relative_separation > 0), "relative_separation"]
    floor = positive.min() / 10 if len(positive) else 1e-12
    rows["shown"] = np.where(rows.holds, rows.relative_separation, floor)
    rows["verdict"] = np.where(rows.holds, "contextual mapping", "fails")
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    sns.scatterplot(data=rows, y="model", x="shown", hue="grid", style="verdict",
                    markers={"contextual mapping": "o", "fails": "X"}, s=70, ax=ax)
    ax.set(xscale="log", xlabel="relative separation (min distance / radius of values)",
           ylabel="")
    ax.axvline(floor, color="grey", lw=0.8, ls=":")
    ax.annotate("fails\n(sep. 0)", (floor, 0), xytext=(4, 0), textcoords="offset points",
                xycoords=("data", "axes fraction"), fontsize=7, color="grey", va="bottom")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)
    ax.set_title("Contextual mapping check (Yun et al. Def. 3.1) on quantised grids")
    return save_figure(fig, stem)
