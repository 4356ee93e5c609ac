"""Every paper figure is legible as drawn: no tick labels that run together, no legend over data
points. Checked on the drawn figure (text extents from the renderer), for every figure
make_figures draws from the results committed in docs/ (the figures the docs show)."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pomlab import plotting
from pomlab.figures import FIGURES, make_figures

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def drawn(monkeypatch):
    """Record each figure's legibility problems just before plotting.save writes it."""
    problems = {}
    save = plotting.save

    def checked_save(fig, stem, *args, **kwargs):
        problems[Path(stem).name] = plotting.legibility_problems(fig)
        return save(fig, stem, *args, **kwargs)

    monkeypatch.setattr(plotting, "save", checked_save)
    return problems


@pytest.mark.slow
def test_every_figure_from_the_committed_results_is_legible(drawn, tmp_path):
    report = make_figures(ROOT / "docs", tmp_path)
    assert set(report[report.status == "made"].figure) == {f.name for f in FIGURES}
    assert set(drawn) == {f.name for f in FIGURES}
    assert {name: p for name, p in drawn.items() if p} == {}


def test_scaling_figures_from_small_results_are_legible(drawn, tmp_path):
    """A two-size sweep (few points, short axes) through both scaling figures."""
    from pomlab.scaling import fit_table, plot_mixer_comparison, plot_scaling
    import pandas as pd

    full = pd.read_csv(ROOT / "docs" / "results" / "scaling_micro" / "results.csv")
    small = full[full["size"].isin(["S", "B"])].reset_index(drop=True)
    fits = fit_table(small)
    plot_scaling(small, fits, tmp_path / "scaling")
    plot_mixer_comparison(small, fits, tmp_path / "pom_vs_mha")
    assert drawn == {"scaling": [], "pom_vs_mha": []}


def test_the_checker_finds_overlapping_tick_labels_and_hidden_points():
    with plotting.style():
        fig, axes = plotting.figure(width=2.0, height=1.5)
        ax = axes[0, 0]
        ax.plot(np.arange(10), np.arange(10), "o", label="data")
        ax.set_xticks(np.arange(10), [f"label{i}" for i in range(10)])     # far too long
        ax.legend(loc="center", fontsize=14)                                # over the diagonal
        problems = plotting.legibility_problems(fig)
        plt.close(fig)
    assert any("tick labels 'label0' and 'label1' overlap" in p for p in problems)
    assert any("legend hides" in p for p in problems)


def test_place_legend_avoids_data_or_goes_outside():
    with plotting.style():
        fig, axes = plotting.figure()
        ax = axes[0, 0]
        ax.plot([0, 1], [0, 1], "o", label="two corners")       # lower left and upper right
        plotting.legends_and_layout(fig, [ax])
        assert plotting.legibility_problems(fig) == []
        assert ax.get_legend()._loc not in (1, 3)                # not "upper right" / "lower left"
        plt.close(fig)
        fig, axes = plotting.figure()
        ax = axes[0, 0]
        grid = np.linspace(0, 1, 12)
        x, y = np.meshgrid(grid, grid)
        ax.plot(x.ravel(), y.ravel(), "o", label="everywhere")   # no room inside
        width = fig.get_figwidth()
        plotting.legends_and_layout(fig, [ax])
        assert plotting.legibility_problems(fig) == [] and fig.get_figwidth() > width
        plt.close(fig)
    with pytest.raises(ValueError, match="outside must be"):
        plotting.place_legend(ax, outside="left")


def test_plain_log_labels_thin_out_on_a_short_axis():
    with plotting.style():
        for height in (1.0, 6.0):
            fig, axes = plotting.figure(width=3.0, height=height)
            ax = axes[0, 0]
            ax.plot([1, 2], [3, 400], "o")
            ax.set_yscale("log")
            plotting.plain_log_labels(ax, "y")
            fig.canvas.draw()
            shown = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
            assert plotting.overlapping_tick_labels(ax, fig.canvas.get_renderer()) == []
            if height == 6.0:
                assert len(shown) > 3          # a tall axis keeps labels between the decades
            plt.close(fig)
