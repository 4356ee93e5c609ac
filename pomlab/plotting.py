"""One paper style for every figure: fonts, sizes, palette, log axes, PNG + PDF output."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:   # figures are files; a notebook keeps its inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import LogFormatter, NullFormatter, NullLocator  # noqa: E402

from .io import atomic_write  # noqa: E402

SIZES = ("S", "B", "L", "XL")
# One colour per model size (light to dark, so compute reads left to right), one per mixer.
SIZE_COLORS = dict(zip(SIZES, sns.color_palette("viridis", n_colors=len(SIZES))))
MIXER_COLORS = {"pom": "#d62728", "mha": "#1f77b4", "none": "#7f7f7f"}
MIXER_NAMES = {"pom": "PoM", "mha": "MHA", "none": "no mixing"}
MIXER_DASHES = {"pom": "-", "mha": "--", "none": ":"}

RC = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,      # editable text in the PDFs
}


def set_style() -> None:
    """Apply the paper style globally (seaborn whitegrid + our rc)."""
    sns.set_theme(style="whitegrid", context="paper", rc=RC)


@contextlib.contextmanager
def style():
    """Apply the paper style inside a block only."""
    with sns.axes_style("whitegrid", rc=RC), plt.rc_context(RC):
        yield


def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6, **kwargs):
    """A figure sized for a paper column per panel; returns (fig, axes)."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                        squeeze=False, **kwargs)


def loglog(ax, xlabel: str | None = None, ylabel: str | None = None) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.25)


def log_ticks(ax, values, labels=None, axis: str = "x", base: int = 2) -> None:
    """A log axis (base) with major ticks at the measured values only (frames, resolutions)."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    values = sorted(set(values))
    labels = [str(v) for v in values] if labels is None else list(labels)
    if len(labels) != len(values):
        raise ValueError(f"labels: expected {len(values)} (one per distinct value), got {len(labels)}")
    scale, ticks = (ax.set_xscale, ax.set_xticks) if axis == "x" else (ax.set_yscale, ax.set_yticks)
    scale("log", base=base)
    ticks(values, labels)
    getattr(ax, f"{axis}axis").set_minor_locator(NullLocator())


class _PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which log ticks to label, written as plain numbers (%g)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def plain_log_labels(ax, axis: str = "y", minor: bool = True) -> None:
    """Plain numbers (900, 0.03) instead of powers of ten on a log axis; with ``minor``, over up
    to two decades some minor ticks (all, under half a decade) are labelled too, so a short axis
    keeps several labels (leave it off on a wide axis whose minor labels would collide)."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    target.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5))
                               if minor else NullFormatter())


def distinct(frame, column: str, missing: str = "?") -> str:
    """The distinct values of a label column joined by "/" (first-seen order), for titles:
    every number says what produced it. ``missing`` when the table has no such column."""
    return "/".join(dict.fromkeys(frame[column].astype(str))) if column in frame else missing


def mixer_name(mixer: str) -> str:
    return MIXER_NAMES.get(mixer, mixer)


def save(fig, path_stem: str | os.PathLike, formats=("png", "pdf")) -> list[Path]:
    """Write the figure as PNG and PDF next to each other, atomically (pomlab.io), and close
    it (also when a write fails); returns the paths."""
    stem = Path(path_stem)
    if stem.suffix in {".png", ".pdf"}:
        stem = stem.with_suffix("")
    try:
        return [atomic_write(stem.with_name(f"{stem.name}.{fmt}"),
                             lambda f, fmt=fmt: fig.savefig(f, format=fmt)) for fmt in formats]
    finally:
        plt.close(fig)
