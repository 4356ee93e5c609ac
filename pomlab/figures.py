"""The paper's figures, drawn from saved results in the one style of pomlab.plotting: each takes
the loaded table(s) and a path stem and writes stem.png + stem.pdf, wherever it is called from
(experiments, make_figures, notebooks). The list of figures is in docs/notebooks.md."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from . import plotting
from .models.registry import FAMILIES
from .results import KINDS, find_results, load_table
from .speed import configuration_label, loglog_slope, speed_configurations, summarise_speed
from .theory.plots import plot_contextual_separation, plot_error_vs_degree, plot_error_vs_params

MiB = 2 ** 20
_one = plotting.distinct        # a label column's distinct values, for titles
MODE_LINES = {"training": dict(ls="-", marker="o"), "inference": dict(ls="--", marker="s")}
# Frame-by-frame generation (PoM's carried state) against all frames at once.
SCHEDULES = {name: dict(color=plotting.MIXER_COLORS[mixer], marker=marker, ls=ls, label=label)
             for name, mixer, marker, ls, label in (
                 ("sequential", "pom", "o", "-", "frame by frame (PoM state carried)"),
                 ("parallel", "mha", "s", "--", "parallel, block-causal mask"),
                 ("parallel_reference", "none", "^", ":",
                  "parallel, reference pom.py (dense mask)"))}


def _speed_setup(summary: dict) -> str:
    """What produced a speed.py summary's numbers, for titles."""
    return (f"{summary['model_size']}/{summary['patch']} paper scale, depth {summary['depth']}, "
            f"batch {summary['batch']}, {summary['dtype']}, {summary['device']}")


# --- Figure 1 ---------------------------------------------------------------------------------

def speed_figure(df: pd.DataFrame, stem: str | os.PathLike, summary: dict | None = None
                 ) -> list[Path]:
    """Figure 1: seconds per image and peak memory of DiPoM and DiT (training and inference)
    against the image side, log-log, with slopes in the legend and the crossover where DiPoM
    training gets cheaper than DiT inference. ``df``: one configuration of speed.csv."""
    summary = summary or summarise_speed(df)
    tokens = df.groupby("resolution").tokens.first()          # sorted by resolution
    with plotting.style():
        fig, axes = plotting.figure(ncols=2, width=3.7, height=3.0)
        time_ax, memory_ax = axes[0]
        for (family, mode), part in df.groupby(["family", "mode"], sort=False):
            part = part.sort_values("resolution")
            slope = summary["slopes"][f"{family}/{mode}"]["all_points"]
            style = dict(color=plotting.MIXER_COLORS[FAMILIES.get(family, "none")],
                         label=f"{family} {mode} (slope {slope:.2f})", **MODE_LINES[mode])
            time_ax.plot(part.resolution, part.seconds_per_image, **style)
            memory = part.peak_bytes.astype(float) / MiB
            if memory.notna().any():
                memory_ax.plot(part.resolution, memory, **style)
        if summary.get("crossover_resolution_px"):
            r = summary["crossover_resolution_px"]
            time_ax.axvline(r, color="grey", lw=0.8, ls=":")
            time_ax.text(r, 0.02, f" DiPoM training <\n DiT inference\n beyond ~{r:.0f} px",
                         transform=time_ax.get_xaxis_transform(), fontsize=7, color="dimgrey")
        labels = [f"{r}\n{int(n)} tok" for r, n in tokens.items()]
        for ax, ylabel in ((time_ax, "seconds per image"),
                           (memory_ax, "peak memory above start (MiB)")):
            plotting.loglog(ax, "image side (pixels) / tokens", ylabel)
            plotting.log_ticks(ax, tokens.index, labels)
        fig.suptitle(f"DiPoM vs DiT {_speed_setup(summary)}; experiments/speed.py", fontsize=8)
        plotting.legends_and_layout(fig, [time_ax], title="slope: log time vs log tokens",
                                    title_fontsize=7, fontsize=7)
        return plotting.finish(fig, stem, layout=False)


def memory_budget_figure(df: pd.DataFrame, stem: str | os.PathLike, summary: dict) -> list[Path]:
    """Training memory of DiPoM and DiT (with and without activation checkpointing) against the
    image side, with the budget line and each variant's largest fitting side
    (experiments/speed.py --memory-budget)."""
    finite = df[df.training_bytes.astype(float) < float("inf")]
    with plotting.style():
        fig, axes = plotting.figure(width=4.2, height=3.0)
        ax = axes[0][0]
        for variant, part in finite.groupby("variant", sort=False):
            part = part.sort_values("resolution")
            best, first = summary["largest_resolution_px"].get(variant), part.iloc[0]
            recompute = bool(first.get("pom_recompute", False))
            ax.plot(part.resolution, part.training_bytes.astype(float) / 2**30,
                    color=plotting.MIXER_COLORS[FAMILIES.get(first.family, "none")],
                    ls=("-." if recompute else "--") if first.checkpointing
                    else (":" if recompute else "-"),
                    marker="s" if first.get("attention") == "math" else "o", ms=3,
                    label=f"{variant} (largest {best or 'none'} px)")
        ax.axhline(summary["budget_gib"], color="grey", lw=0.8, ls=":")
        ax.text(0.02, summary["budget_gib"], f" budget {summary['budget_gib']:g} GiB",
                transform=ax.get_yaxis_transform(), fontsize=7, va="bottom", color="dimgrey")
        plotting.loglog(ax, "image side (pixels)", "training memory (GiB)")
        plotting.log_ticks(ax, finite.resolution)
        ax.legend(fontsize=7)
        return plotting.finish(fig, stem, f"{_speed_setup(summary)}; speed.py --memory-budget",
                               fontsize=7)


# --- frame-by-frame memory --------------------------------------------------------------------

def _schedule_panels(df, method_column, memory_label, title, stem) -> list[Path]:
    """Two log-log panels against frames: peak memory (peak_mib) and time per frame
    (seconds_per_frame), one line per method of ``method_column`` (and the working memory of the
    sequential one when the table has it)."""
    with plotting.style():
        fig, axes = plotting.figure(ncols=2, width=3.5, height=2.8)
        memory_ax, time_ax = axes[0]
        for method, style in SCHEDULES.items():
            part = df[df[method_column] == method].sort_values("frames")
            if part.empty:
                continue
            memory_ax.plot(part.frames, part.peak_mib, **style)
            time_ax.plot(part.frames, part.seconds_per_frame * 1e3, **style)
            if method == "sequential" and "working_mib" in part:
                memory_ax.plot(part.frames, part.working_mib, color=style["color"], ls=":",
                               label="frame by frame, without noise + output clip")
        plotting.loglog(memory_ax, "frames", memory_label)
        plotting.loglog(time_ax, "frames", "time per frame (ms)")
        for ax in (memory_ax, time_ax):
            plotting.log_ticks(ax, df.frames.unique())
            plotting.plain_log_labels(ax, "y")
        fig.suptitle(title, fontsize=8)
        fig.tight_layout()
        fig.legend(*memory_ax.get_legend_handles_labels(), loc="upper center", ncol=2,
                   bbox_to_anchor=(0.5, 0.0), frameon=False, fontsize=7)   # below: no overlap
        return plotting.finish(fig, stem, layout=False)


def state_memory_figure(df: pd.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """Peak memory and time per frame of residual PoM layers mixing a video frame by frame
    (PoM.step) vs all frames at once (block-causal mask), from state_memory.csv."""
    frame = df.assign(peak_mib=df.peak_bytes.astype(float) / MiB)
    title = (f"{_one(df, 'layers')} PoM layers, D={_one(df, 'dim')}, "
             f"{_one(df, 'tokens_per_frame')} tokens/frame, inference, {_one(df, 'device')}; "
             "experiments/bench_state_memory.py")
    return _schedule_panels(frame, "method", "peak memory above start (MiB)", title, stem)


def video_memory_figure(df: pd.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """Peak tensor memory and time per frame of video generation (pomlab.video.sample) frame
    by frame vs in parallel, from video_memory.csv; the dotted line leaves out the noise and
    output clip (O(frames) but tiny) to show the working memory."""
    title = (f"{_one(df, 'model')}, batch 1, {_one(df, 'steps')} {_one(df, 'sampler')} steps, "
             f"{_one(df, 'device')}; experiments/video_memory.py")
    return _schedule_panels(df, "mode", "peak tensor memory (MiB)", title, stem)


def video_strip_figure(rows: dict, stem: str | os.PathLike, title: str | None = None,
                       formats=("png",)) -> list[Path]:
    """Frames left to right, one labelled row per clip: ``rows`` maps a row name to a clip
    (T, C, H, W) with pixels in [0, 1] (the first channel is shown, grey)."""
    if not rows:
        raise ValueError("rows: expected at least one clip")
    frames = next(iter(rows.values())).shape[0]
    with plotting.style():
        fig, axes = plotting.figure(frames, len(rows), width=0.62, height=0.62)
        for r, (name, clip) in enumerate(rows.items()):
            for f, ax in enumerate(axes[r]):
                ax.imshow(clip[f, 0].detach().cpu().float().numpy(), cmap="gray", vmin=0,
                          vmax=1, interpolation="nearest")
                ax.set(xticks=[], yticks=[])
                ax.grid(False)
                if r == 0:
                    ax.set_title(f"t={f}", fontsize=7)
            axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        return plotting.finish(fig, stem, title, fontsize=9, layout=False, formats=formats, y=1.04)


# --- PoM vs attention per layer -----------------------------------------------------------------

COST_VARIANTS = {"fast": ("PoM (fast path)", plotting.MIXER_COLORS["pom"], "-"),
                 "reference": ("PoM (reference pom.py)", plotting.MIXER_COLORS["pom"], ":"),
                 "matmuls": ("PoM's three matmuls (floor)", plotting.MIXER_COLORS["none"], ":"),
                 "compiled": ("PoM (fast, compiled)", plotting.MIXER_COLORS["pom"], "-."),
                 "mha": ("MHA (SDPA)", plotting.MIXER_COLORS["mha"], "--")}


def mixer_cost_figure(df: pd.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """One PoM layer vs one MHA layer: milliseconds per call against sequence length, log-log,
    one panel per mode (forward, train), slopes in the legend; from experiments/bench_pom.py's
    CSV (columns ``<variant>_ms``)."""
    variants = [c[:-3] for c in df.columns if c.endswith("_ms")]
    if not variants or "tokens" not in df or "mode" not in df:
        raise ValueError("expected experiments/bench_pom.py's CSV (mode, tokens, <variant>_ms)")
    modes = list(dict.fromkeys(df["mode"]))
    with plotting.style():
        fig, axes = plotting.figure(len(modes), width=3.5 if len(modes) > 1 else 4.2, height=2.8,
                                    sharey=True)
        for ax, mode in zip(axes[0], modes):
            part = df[df["mode"] == mode].sort_values("tokens")
            for v in variants:
                label, color, ls = COST_VARIANTS.get(v, (v, None, "-"))
                slope = loglog_slope(part.tokens, part[f"{v}_ms"])
                ax.plot(part.tokens, part[f"{v}_ms"], color=color, ls=ls, marker="o",
                        label=f"{label} (slope {slope:.2f})")
            plotting.loglog(ax, "tokens n", "ms per call" if ax is axes[0, 0] else None)
            plotting.log_ticks(ax, part.tokens)
            ax.set_title({"forward": "forward", "train": "forward + backward"}.get(mode, mode))
            ax.legend(fontsize=6.5)
        return plotting.finish(fig, stem, f"one layer, D={_one(df, 'dim')}, batch "
                               f"{_one(df, 'batch')}, {_one(df, 'dtype')}, {_one(df, 'device')}; "
                               "experiments/bench_pom.py")


# --- every figure from a results folder -------------------------------------------------------

def _speed_figures(table: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 1 for each measured configuration of speed.csv (suffixed when there are several)."""
    parts = speed_configurations(table)
    paths = []
    for part in parts:
        name = stem.name if len(parts) == 1 else f"{stem.name}_{configuration_label(part)}"
        paths += speed_figure(part, stem.with_name(name))
    return paths


def _refit(plot: str) -> Callable[[pd.DataFrame, Path], list[Path]]:
    """A pomlab.scaling figure drawn with fits recomputed from results.csv (no retraining);
    pomlab.scaling loads the training stack, so only when a sweep is drawn."""
    def draw(results: pd.DataFrame, stem: Path) -> list[Path]:
        from . import scaling
        return getattr(scaling, plot)(results, scaling.fit_table(results), stem)
    return draw


@dataclass(frozen=True)
class PaperFigure:
    name: str                                          # also its file stem
    kind: str                                          # the pomlab.results kind it is drawn from
    description: str
    draw: Callable[[pd.DataFrame, Path], list[Path]]   # (table, stem) -> files written

    def make(self, source: Path, out: Path) -> list[Path]:
        """Draw it from the results in folder `source` into folder `out`."""
        return self.draw(load_table(source, self.kind), out / self.name)


FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("speed", "speed", "Figure 1: time and peak memory vs resolution, DiPoM vs DiT",
                _speed_figures),
    PaperFigure("scaling", "scaling", "Figure 5: FID and IS vs training compute per mixer, "
                "one colour per size, log-log fits", _refit("plot_scaling")),
    PaperFigure("scaling_pom_vs_mha", "scaling", "Figure 5 companion: PoM and MHA on shared "
                "axes with their all-sizes fits", _refit("plot_mixer_comparison")),
    PaperFigure("state_memory", "state_memory", "PoM layers: frame by frame (state) vs "
                "parallel block-causal, memory and time vs frames", state_memory_figure),
    PaperFigure("video_memory", "video_memory", "video generation: memory flat in frames "
                "frame by frame, growing in parallel", video_memory_figure),
    PaperFigure("universal_approximation_params", "universal_approximation",
                "theory: held-out error vs parameters, PoM / MHA / no mixing", plot_error_vs_params),
    PaperFigure("universal_approximation_degree", "universal_approximation",
                "theory: PoM error vs degree", plot_error_vs_degree),
    PaperFigure("contextual_mapping", "contextual_mapping",
                "theory: contextual-mapping separation per model", plot_contextual_separation),
)

# What a broken or foreign results file raises while it is read or drawn: reported, not fatal.
_SKIPPABLE = (ValueError, KeyError, FileNotFoundError, pd.errors.ParserError,
              pd.errors.EmptyDataError, ImportError)


def make_figures(results_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Draw every paper figure that the results under ``results_dir`` allow into a mirror of their
    folders under ``out`` (default results_dir/figures). One row per (figure, source folder):
    status "made" (files written) or "skipped" (detail: why)."""
    root = Path(results_dir)
    out = root / "figures" if out is None else Path(out)
    found = find_results(root, skip=out)
    rows = []

    def report(figure, source, status, detail, files=()):
        rows.append(dict(figure=figure.name, source=source, status=status, detail=detail,
                         files=list(files)))
        if log is not None:
            log(f"{status:>7}  {figure.name:<31} {detail}")

    for figure in FIGURES:
        kind = KINDS[figure.kind]
        if not found[figure.kind]:
            report(figure, None, "skipped",
                   f"no {kind.file} under {root} (written by {kind.command})")
        for source in found[figure.kind]:
            try:
                paths = figure.make(source, out / source.relative_to(root))
            except _SKIPPABLE as error:
                report(figure, str(source), "skipped", f"{source}: {type(error).__name__}: {error}")
            else:
                report(figure, str(source), "made", " ".join(map(str, paths)), paths)
    return pd.DataFrame(rows, columns=["figure", "source", "status", "detail", "files"])


def figure_paths(report: pd.DataFrame, suffix: str = ".png") -> list[Path]:
    """The files of a make_figures report with the given suffix (e.g. the PNGs to display)."""
    return [Path(p) for files in report.files for p in files if str(p).endswith(suffix)]


__all__ = ["speed_figure", "state_memory_figure", "video_memory_figure", "video_strip_figure",
           "mixer_cost_figure", "make_figures", "figure_paths", "FIGURES", "PaperFigure",
           "SCHEDULES"]
