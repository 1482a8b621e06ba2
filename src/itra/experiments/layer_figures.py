"""The layer-wise figures: each function draws one run's layer-wise view (`layer_analysis.layerwise`, as
`experiments.layerwise` writes it) or several configs' aggregates (`layerwise.aggregate_layers`) into one PNG.
Axes, bands and the saving are the report figures' (`figures`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from itra.experiments.figures import band, integer_x, save, seeds

# line style, colour (in one run's figure) and name of each head kind of `layer_analysis.layerwise`
HEAD_STYLES = {"shared": ("o-", "tab:green", "shared head"), "separate": ("s--", "tab:red", "own heads")}


def _nan(values: list) -> np.ndarray:
    """A JSON list (of lists) with None as NaN, which matplotlib leaves blank."""
    return np.array(values, dtype=float)


def _heat_maps(fig: Any, axes: Sequence[Any], matrices: dict[str, np.ndarray]) -> None:
    """L x L similarity matrices side by side on one colour scale (NaN cells blank), layers 1..L on both axes."""
    low = min(np.nanmin(np.append(matrix, 1.0)) for matrix in matrices.values())
    for ax, (name, matrix) in zip(axes, matrices.items()):
        size = len(matrix)
        image = ax.imshow(matrix, vmin=min(low, 0.99), vmax=1, cmap="viridis", origin="lower",
                          extent=(0.5, size + 0.5, 0.5, size + 0.5))
        fig.colorbar(image, ax=ax, label=name)
        ax.set(xlabel="layer", ylabel="layer", title=f"{name} between layers")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _early_exit_curve(ax: Any, curve: list[dict[str, float]], style: str, colour: Any, label: str) -> None:
    ax.plot([point["relative_compute"] for point in curve], [point["accuracy"] for point in curve], style,
            color=colour, label=label)


def _early_exit_axes(ax: Any) -> None:
    ax.set(xlabel="relative compute (mean exit layer / L)", ylabel="test accuracy (%)", xlim=(0, 1.05),
           title="early exit by confidence (max softmax ≥ threshold)")
    ax.legend(fontsize=8)


def plot_layers(measured: dict[str, Any], title: str, path: Path) -> Path:
    """The layer-wise view of one run (`layer_analysis.layerwise`): top, the sample-wise cosine and linear CKA between
    every pair of layers on one colour scale (cosine blank where widths differ), their correlation in the title;
    bottom left, per layer, the cosine and CKA with the last layer and the accuracy of each head kind; bottom
    right, the early-exit curve of each head kind (accuracy against relative compute over confidence thresholds)."""
    cka = _nan(measured["cka"])  # NaN where CKA is undefined
    layers = np.arange(1, len(cka) + 1)
    fig, ((cosine_map, cka_map), (against_last, early)) = plt.subplots(2, 2, figsize=(11, 8.4))
    _heat_maps(fig, (cosine_map, cka_map), {"sample-wise cosine": _nan(measured["cosine_matrix"]), "linear CKA": cka})
    against_last.plot(layers, cka[:, -1], "o-", color="tab:blue", label="CKA with the last layer")
    cosine = _nan(measured["cosine"])
    if not np.all(np.isnan(cosine)):
        against_last.plot(layers, cosine, "s-", color="tab:orange", label="sample-wise cosine with the last layer")
    against_last.set(xlabel="layer", ylabel="similarity to the last layer", title="each layer against the last",
                     ylim=(min(0.0, np.nanmin(np.append(cosine, 0.0))), 1.02))
    twin = against_last.twinx()
    for kind, key in (("shared", "accuracy"), ("separate", "separate_accuracy")):
        if key in measured:
            style, colour, name = HEAD_STYLES[kind]
            twin.plot(layers, _nan(measured[key]), style, color=colour, label=f"accuracy, {name}")
    twin.set(ylabel="test accuracy (%)", ylim=(0, 100))
    lines = against_last.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    against_last.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize=8)
    for kind, curve in measured["early_exit"].items():
        style, colour, name = HEAD_STYLES[kind]
        _early_exit_curve(early, curve, style, colour, name)
    if measured["early_exit"]:
        _early_exit_axes(early)
    else:
        early.text(0.5, 0.5, "no early exit:\nno head reads every layer", ha="center", va="center",
                   transform=early.transAxes)
        early.set(xticks=[], yticks=[])
    for ax in (cosine_map, cka_map, against_last):
        integer_x(ax)
    correlation = measured["cosine_cka_correlation"]
    shown = "undefined" if correlation is None else f"{correlation:.3f}"
    fig.suptitle(f"{title}\ncorrelation of cosine and CKA over pairs of layers: {shown}", fontsize=10)
    save(fig, path)
    return path


def plot_early_exit(curves: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Early-exit curves of several configs or head kinds, a line per label: test accuracy against relative compute
    as the confidence threshold varies (`layer_analysis.early_exit`; one run's or `aggregate_layers`' mean curve)."""
    fig, ax = plt.subplots(figsize=(6, 4.4))
    palette = matplotlib.colormaps["tab10"]
    for index, (label, curve) in enumerate(curves.items()):
        _early_exit_curve(ax, curve, "o-", palette(index % 10), label)
    _early_exit_axes(ax)
    save(fig, path)
    return path


def plot_exit_accuracy(rows: dict[str, dict[str, Any]], path: Path) -> Path:
    """Test accuracy after every layer of several configs (`aggregate_layers`), mean ± std over seeds: a line per
    label with the shared head, dashed in the same colour with the exits' own heads where a config has them."""
    fig, ax = plt.subplots(figsize=(7, 6.4))
    palette = matplotlib.colormaps["tab10"]
    for index, (label, aggregated) in enumerate(rows.items()):
        for kind, key in (("shared", "accuracy"), ("separate", "separate_accuracy")):
            if aggregated[key] is None:
                continue
            pairs = np.array([[np.nan, np.nan] if value is None else value for value in aggregated[key]], dtype=float)
            style, _, name = HEAD_STYLES[kind]
            band(ax, np.arange(1, len(pairs) + 1), pairs[:, 0], pairs[:, 1], palette(index % 10),
                  f"{label}, {name} ({seeds(aggregated['runs'])})", style=style)
    ax.set(xlabel="layer (exit)", ylabel="test accuracy (%)",
           title="Accuracy after every layer, mean ± std over seeds")
    integer_x(ax)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13))  # below the axes: the lines cross the middle
    save(fig, path)
    return path
