"""Each figure function writes a PNG from runs held in memory (no run directories, no training), and
its axes read well: integer epoch ticks, plain decimals on log axes, "1 seed" in the singular."""
import re
from pathlib import Path

import matplotlib
import pytest
import torch
from matplotlib.ticker import MaxNLocator

from itra.experiments import figures
from itra.experiments.runset import Run
from itra.methods import METHODS

from tests.helpers import resolved

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(test_ce=0.5, compactness=((3, 0.8), (6, 0.6)), **fields):
    config = resolved(epochs=2, **fields)
    metrics = [{"epoch": epoch, "train_ce": 0.4, "test_accuracy": 70.0 + epoch, "test_ece": 0.02,
                "test_cross_entropy": test_ce + 0.1 * (2 - epoch), "compactness": [list(pair) for pair in compactness]}
               for epoch in (1, 2)]  # the last epoch's test CE is `test_ce`
    return Run(Path(config.name), config, metrics, {"status": "finished", **metrics[-1]})


def is_png(path):
    return path.read_bytes().startswith(PNG_SIGNATURE)


def test_colours_shade_a_method_by_lambda_only_when_it_has_several():
    runs = [make_run(method="ce"), make_run(method="itra-c", lam=0.3), make_run(method="itra-c", lam=0.9)]
    colours = figures.colours(runs)
    assert colours[runs[0].group] == METHODS["ce"].colour
    blues = matplotlib.colormaps[METHODS["itra-c"].shades]
    assert colours[runs[1].group] == blues(0.35) and colours[runs[2].group] == blues(1.0)
    assert figures.colours(runs[1:2]) == {runs[1].group: METHODS["itra-c"].colour}


def test_ce_vs_lambda_needs_two_lambdas(tmp_path):
    path = tmp_path / "ce_vs_lambda.png"
    one = [make_run(method="ce"), make_run(method="lsr"), make_run(method="itra-c", lam=0.3)]
    assert not figures.figure_ce_vs_lambda(one, path) and not path.exists()
    assert figures.figure_ce_vs_lambda(one + [make_run(method="itra-c", lam=0.9, seed=s) for s in (0, 1)], path)
    assert is_png(path)


def test_curves_compactness_and_study_figures(tmp_path):
    runs = [make_run(method=m, seed=s) for m in ("ce", "itra") for s in (0, 1)]
    runs.append(make_run(method="itra", seed=2, compactness=((3, 0.8), (6, float("nan")))))  # collapsed at step 6
    figures.figure_curves(runs, tmp_path / "curves.png")
    assert figures.figure_compactness(runs, tmp_path / "compactness.png")
    assert not figures.figure_compactness([make_run(compactness=())], tmp_path / "none.png")
    study = runs + [make_run(method="itra", batch_size=32)]
    figures.figure_study(study, "batch_size", "batch size", "Batch-size study", tmp_path / "study.png", log2=True)
    assert all(is_png(tmp_path / f"{name}.png") for name in ("curves", "compactness", "study"))
    assert not (tmp_path / "none.png").exists()


def test_tsne_draws_a_panel_for_collapsed_features_and_reliability(tmp_path):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 3
    features = torch.randn(40, 8, generator=generator) + labels[:, None]  # (N, D): three separable clusters
    spread = (features, torch.randn(40, 3, generator=generator), labels)
    collapsed = (torch.ones(40, 8), torch.zeros(40, 3), labels)
    assert figures.features_collapsed(collapsed[0]) and not figures.features_collapsed(spread[0])
    runs = [make_run(method="ce"), make_run(method="center")]
    figures.figure_tsne(runs, [spread, collapsed], ["a", "b", "c"], tmp_path / "tsne.png")
    figures.figure_reliability(runs, [spread, collapsed], tmp_path / "reliability.png")
    assert is_png(tmp_path / "tsne.png") and is_png(tmp_path / "reliability.png")


@pytest.fixture
def drawn(monkeypatch):
    """The figures the figure functions save, drawn (tick labels set) and kept open for inspection."""
    kept = []
    save = figures.save

    def draw_and_keep(fig, path, **kwargs):
        fig.canvas.draw()
        kept.append(fig)
        save(fig, path, **kwargs)

    monkeypatch.setattr(figures, "save", draw_and_keep)
    return kept


def visible_labels(axis):
    """The non-empty major and minor tick labels inside the axis's view."""
    low, high = sorted(axis.get_view_interval())
    coordinate = 0 if axis.axis_name == "x" else 1
    return [label.get_text() for label in (*axis.get_majorticklabels(), *axis.get_minorticklabels())
            if label.get_text() and low <= label.get_position()[coordinate] <= high]


def test_seeds_is_singular_for_one():
    assert [figures.seeds(n) for n in (1, 2, 0)] == ["1 seed", "2 seeds", "0 seeds"]


def test_legends_count_seeds_in_the_singular_for_one(tmp_path, drawn):
    runs = [make_run(method="ce"), make_run(method="itra", seed=0), make_run(method="itra", seed=1)]
    figures.figure_curves(runs, tmp_path / "curves.png")
    figures.figure_compactness(runs, tmp_path / "compactness.png")
    for fig in drawn:
        legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
        assert [text.get_text() for text in legend.get_texts()] == ["CE (1 seed)", "ITRA λ=0.6 (2 seeds)"]


def test_epoch_and_step_axes_tick_at_integers(tmp_path, drawn):
    runs = [make_run(method="ce", compactness=((3, 0.8), (6, 0.6)))]
    figures.figure_curves(runs, tmp_path / "curves.png")
    figures.figure_compactness(runs, tmp_path / "compactness.png")
    axes = [ax for fig in drawn for ax in fig.axes]
    assert len(axes) == 3  # accuracy and CE per epoch, compactness per step
    for ax in axes:
        assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
        labels = visible_labels(ax.xaxis)
        assert labels and all(re.fullmatch(r"\d+", label) for label in labels), labels  # 1, 2; never 1.2, 1.4


@pytest.mark.parametrize("test_ce", [2.2, 0.3])
def test_the_log_ce_axis_reads_in_plain_decimals(tmp_path, drawn, test_ce):
    figures.figure_curves([make_run(method="ce", test_ce=test_ce)], tmp_path / "curves.png")
    ce_axis = drawn[0].axes[1]
    assert ce_axis.get_yscale() == "log"
    labels = visible_labels(ce_axis.yaxis)
    assert labels and all(re.fullmatch(r"\d+(\.\d+)?", label) for label in labels), labels  # never 2.2×10⁰
    assert f"{test_ce:g}" in labels
