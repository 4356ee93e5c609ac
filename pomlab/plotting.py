"""One paper style for every figure: fonts, sizes, palette, log axes, PNG + PDF output."""
from __future__ import annotations

import contextlib
import itertools
import os
import sys

import numpy as np
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:   # figures are files; a notebook keeps its inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ticker import LogFormatter, NullFormatter, NullLocator  # noqa: E402

from .checks import check_choice  # noqa: E402
from .models.registry import SIZES  # noqa: E402

# One colour per model size (light to dark, so compute reads left to right), one per mixer.
SIZE_COLORS = dict(zip(SIZES, sns.color_palette("viridis", n_colors=len(SIZES))))
MIXER_COLORS = {"pom": "#d62728", "mha": "#1f77b4", "none": "#7f7f7f"}
MIXER_NAMES = {"pom": "PoM", "mha": "MHA", "none": "no mixing"}
MIXER_DASHES = {"pom": "-", "mha": "--", "none": ":"}

RC = {"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight", "font.size": 9,
      "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
      "ytick.labelsize": 8, "lines.linewidth": 1.6, "lines.markersize": 4.5, "axes.grid": True,
      "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False,
      "pdf.fonttype": 42}      # 42: editable text in the PDFs


@contextlib.contextmanager
def style():
    """Apply the paper style inside a block only."""
    with sns.axes_style("whitegrid", rc=RC), plt.rc_context(RC):
        yield


def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6, **kwargs):
    """A figure sized for a paper column per panel; returns (fig, axes)."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                        squeeze=False, **kwargs)


def finish(fig, stem: str | os.PathLike, title: str | None = None, fontsize: float = 8,
           layout: bool = True, formats=("png", "pdf"), **title_kwargs) -> list[Path]:
    """The end of every figure: its suptitle (what produced the numbers), tight_layout, save."""
    if title:
        fig.suptitle(title, fontsize=fontsize, **title_kwargs)
    if layout:
        fig.tight_layout()
    return save(fig, stem, formats=formats)


def loglog(ax, xlabel: str | None = None, ylabel: str | None = None) -> None:
    """Log scales on both axes, the labels given, a grid at the minor ticks too."""
    labels = {k: v for k, v in (("xlabel", xlabel), ("ylabel", ylabel)) if v}
    ax.set(xscale="log", yscale="log", **labels)
    ax.grid(True, which="both", alpha=0.25)


def log_ticks(ax, values, labels=None, axis: str = "x", base: int = 2) -> None:
    """A log axis (base) with major ticks at the measured values only (frames, resolutions)."""
    check_choice("axis", axis, ("x", "y"))
    values = sorted(set(values))
    labels = [str(v) for v in values] if labels is None else list(labels)
    if len(labels) != len(values):
        raise ValueError(f"labels: expected {len(values)} (one per value), got {len(labels)}")
    getattr(ax, f"set_{axis}scale")("log", base=base)
    getattr(ax, f"set_{axis}ticks")(values, labels)
    getattr(ax, f"{axis}axis").set_minor_locator(NullLocator())


def _smallest_log_gap(multiples) -> float:
    """The smallest distance in decades between labelled multiples m * 10^k (m in 1..10)."""
    m = sorted({float(v) for v in multiples if 1 <= v < 10})
    return float(np.min(np.diff(np.log10(m + [10 * m[0]]))))


class _PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which log ticks to label, written as plain numbers (%g), thinned
    to what the drawn axis length leaves room for (matplotlib's choice, else 1, 2, 5 per decade,
    else 1, 3, else the decades only), so labels do not run together on a short axis."""

    THINNER = ({1, 2, 5}, {1, 3}, {1})

    def set_locs(self, locs=None):
        super().set_locs(locs)
        axis = self.axis
        if axis is None or axis.axes is None:
            return
        low, high = sorted(axis.get_view_interval())
        if not (low > 0 and high > low):
            return
        box, name = axis.axes.bbox, axis.axis_name
        room = (box.width if name == "x" else box.height) / np.log10(high / low)  # px per decade
        # what one label needs along its axis: a line's height (y), four digits' width (x)
        points = FontProperties(size=plt.rcParams[f"{name}tick.labelsize"]).get_size_in_points()
        needed = (1.3 if name == "y" else 2.6) * points * axis.axes.figure.dpi / 72
        for labels in (self._sublabels, *self.THINNER):
            if len(labels) == 1 or _smallest_log_gap(labels) * room >= needed:
                self._sublabels = set(labels)
                return

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def plain_log_labels(ax, axis: str = "y", minor: bool = True) -> None:
    """Plain numbers (900, 0.03) instead of powers of ten on a log axis; with ``minor``, over up
    to two decades some minor ticks (all, under half a decade) are labelled too, so a short axis
    keeps several labels (leave it off on a wide axis whose minor labels would collide)."""
    target = getattr(ax, f"{check_choice('axis', axis, ('x', 'y'))}axis")
    target.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    target.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5))
                               if minor else NullFormatter())


# Legend positions tried in order by place_legend; the last resort is outside the axes.
LEGEND_LOCATIONS = ("upper right", "lower left", "upper left", "lower right", "center right",
                    "center left", "upper center", "lower center")


def _marked_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "", " ", ",")]


def data_points(ax) -> np.ndarray:
    """(n, 2) display coordinates of every plotted marker of ax (lines drawn with a marker and
    scatter collections): the measured data a legend must not hide."""
    points = [ax.transData.transform(np.column_stack(line.get_data()).astype(float))
              for line in _marked_lines(ax) if line.get_visible()]
    points += [c.get_offset_transform().transform(np.asarray(c.get_offsets(), dtype=float))
               for c in ax.collections if c.get_visible() and len(c.get_offsets())]
    xy = np.concatenate([np.empty((0, 2)), *points])
    return xy[np.isfinite(xy).all(axis=1)]


def hidden_points(ax, legend, renderer) -> int:
    """How many of ax's markers the legend's box covers (any part of the marker)."""
    box = legend.get_window_extent(renderer)
    radius = max((line.get_markersize() for line in _marked_lines(ax)), default=0.0) / 2
    pad = radius * ax.figure.dpi / 72                 # any part of a marker counts
    x, y = data_points(ax).T
    inside = (x > box.x0 - pad) & (x < box.x1 + pad) & (y > box.y0 - pad) & (y < box.y1 + pad)
    return int(inside.sum())


def place_legend(ax, outside: str = "right", inside: bool = True, **kwargs):
    """ax.legend(**kwargs) at the first of LEGEND_LOCATIONS where it hides no marker of ax, else
    (or with inside=False) `outside` "right" or "below" the axes, the figure grown to fit it.
    Call it once the layout is final (or use legends_and_layout)."""
    check_choice("outside", outside, ("right", "below"))
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    for loc in LEGEND_LOCATIONS if inside else ():
        legend = ax.legend(loc=loc, **kwargs)
        if hidden_points(ax, legend, renderer) == 0:
            return legend
    if outside == "right":
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                           **kwargs)
        grow = (legend.get_window_extent(renderer).width / fig.dpi + 0.1, 0.0)
    else:
        box = ax.get_window_extent(renderer)
        below = ax.get_tightbbox(renderer).y0            # under the tick and axis labels
        legend = ax.legend(loc="upper center", borderaxespad=0.0,
                           bbox_to_anchor=(0.5, (below - box.y0) / box.height - 0.02), **kwargs)
        grow = (0.0, legend.get_window_extent(renderer).height / fig.dpi + 0.1)
    fig.set_size_inches(fig.get_figwidth() + grow[0], fig.get_figheight() + grow[1])
    return legend


def legends_and_layout(fig, axes, **kwargs) -> None:
    """tight_layout with a legend per axes placed by place_legend(**kwargs); a legend that the
    final layout left over data moves outside."""
    fig.tight_layout()
    for ax in axes:
        place_legend(ax, **kwargs)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    moved = [place_legend(ax, **{**kwargs, "inside": False}) for ax in axes   # one at a time
             if ax.get_legend() is not None and hidden_points(ax, ax.get_legend(), renderer)]
    if moved:
        fig.tight_layout()


def overlapping_tick_labels(ax, renderer) -> list[tuple[str, str]]:
    """Pairs of drawn tick labels of one axis whose text boxes overlap (shown ticks only)."""
    pairs = []
    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        low, high = min(low, high), max(low, high)
        boxes = [(tick.label1.get_text(), tick.label1.get_window_extent(renderer))
                 for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                 if tick.label1.get_visible() and tick.label1.get_text()
                 and low <= tick.get_loc() <= high]
        pairs += [(text_a, text_b) for (text_a, a), (text_b, b) in itertools.combinations(boxes, 2)
                  if min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5
                  and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5]
    return pairs


def legibility_problems(fig) -> list[str]:
    """What makes a drawn figure hard to read: overlapping tick labels, legends over data
    points (of their own axes, or of any axes for figure legends)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for n, ax in enumerate(fig.axes):
        name = ax.get_title() or f"axes {n}"
        for a, b in overlapping_tick_labels(ax, renderer):
            problems.append(f"{name}: tick labels {a!r} and {b!r} overlap")
        legend = ax.get_legend()
        hidden = legend is not None and legend.get_visible() and hidden_points(ax, legend, renderer)
        if hidden:
            problems.append(f"{name}: the legend hides {hidden} data point(s)")
        for legend in fig.legends:
            if hidden_points(ax, legend, renderer):
                problems.append(f"{name}: the figure legend hides data points")
    return problems


def distinct(frame, column: str, missing: str = "?") -> str:
    """The distinct values of a label column joined by "/" (first-seen order), for titles:
    every number says what produced it. ``missing`` when the table has no such column."""
    return "/".join(dict.fromkeys(frame[column].astype(str))) if column in frame else missing


def mixer_name(mixer: str) -> str:
    return MIXER_NAMES.get(mixer, mixer)


def save(fig, path_stem: str | os.PathLike, formats=("png", "pdf")) -> list[Path]:
    """Write the figure as PNG and PDF next to each other and close it (also when a write fails);
    returns the paths. Plain writes: a torn figure loses nothing, it is redrawn from results."""
    stem = Path(path_stem)
    stem = stem.with_suffix("") if stem.suffix in {".png", ".pdf"} else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    try:
        for path, fmt in zip(paths, formats):
            fig.savefig(path, format=fmt)
    finally:
        plt.close(fig)
    return paths
