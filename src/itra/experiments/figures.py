"""The report's figures: each function draws runs it is given (or their test-set predictions) into one PNG.

Nothing here finds, selects or reads runs (`runset` and `report` do); labels and colours come from
`METHODS`. Bands and error bars are ±1 sample std over seeds. Epoch and step axes tick at integers,
log axes read in plain decimals ("0.3", "2").
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator  # noqa: E402

from itra.experiments.runset import Run, by_group, compactness_log, finished, study_of, study_rows  # noqa: E402
from itra.experiments.table import mean_std  # noqa: E402
from itra.methods import METHODS  # noqa: E402
from itra.experiments.labels import method_label, variant_label
from itra.metrics import calibration_bins  # noqa: E402

# features (N, D), logits (N, K) and labels (N,) of one run on the test set, as `evaluate.predict` gives them
Prediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BINS = 15  # of the reliability diagrams


def _title(runs: list[Run], what: str) -> str:
    return f"{what}\n{study_of(runs[0].config)}"


def seeds(count: int) -> str:
    """The count with its noun: "1 seed", "3 seeds"."""
    return f"{count} seed" + ("s" if count != 1 else "")


def _legend(members: list[Run]) -> str:
    return f"{method_label(members[0].config)} ({seeds(len(members))})"


class PlainLogFormatter(LogFormatterSciNotation):
    """Tick labels of a log axis as plain decimals ("0.3", "2" rather than "3×10⁻¹", "2×10⁰"), on the
    ticks matplotlib would label."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_y(ax: Any) -> None:
    """A log-scale y axis with plain decimal labels on its major and minor ticks."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def integer_x(ax: Any) -> None:
    """Ticks at whole numbers only on an x axis that counts (epochs, steps)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def colours(runs: list[Run]) -> dict[str, Any]:
    """A colour per group: its method's colour, or shades of the method's colour map by strength
    (λ, ε) when the runs hold the variant (`variant_label`) at several strengths."""
    chosen = {}
    for group, members in by_group(runs).items():
        spec, variant = METHODS[members[0].config.method], variant_label(members[0].config)
        values = sorted({_strength(r) for r in runs if variant_label(r.config) == variant})
        if len(values) > 1:
            shade = 0.35 + 0.65 * values.index(_strength(members[0])) / (len(values) - 1)
            chosen[group] = matplotlib.colormaps[spec.shades](shade)
        else:
            chosen[group] = spec.colour
    return chosen


def _strength(run: Run) -> float:
    field = METHODS[run.config.method].strength
    return 0.0 if field is None else getattr(run.config, field)


def mean_band(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over series (seeds), cut to the shortest."""
    length = min(len(s) for s in series)
    stacked = np.stack([s[:length] for s in series])
    return stacked.mean(0), stacked.std(0, ddof=1) if len(series) > 1 else np.zeros(length)


def band(ax: Any, x: Any, mean: np.ndarray, std: np.ndarray, colour: Any, label: str, alpha: float = 0.15,
          style: str = "-") -> None:
    ax.plot(x, mean, style, color=colour, label=label)
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=alpha)


def _level(ax: Any, level: float, spread: float, colour: Any, label: str) -> None:
    """A dashed horizontal line at `level`, with a band of ±`spread`."""
    ax.axhline(level, color=colour, ls="--", label=label)
    ax.axhspan(level - spread, level + spread, color=colour, alpha=0.12)


def save(fig: Any, path: Path, dpi: int = 120, rect: tuple[float, ...] | None = None) -> None:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def figure_ce_vs_lambda(runs: list[Run], path: Path, keys: Sequence[str] = ("test_cross_entropy",)) -> bool:
    """Figure 2: test CE against λ, a line per variant (`variant_label`) with a λ run at two or more,
    with a ±1 std band; variants without a λ (e.g. CE, LSR) as levels. With several `keys` (e.g. also
    `ts_test_cross_entropy`, after temperature scaling), a line style per key. False, and no file, when no
    variant has two λs."""
    swept_any = False
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colour = {variant_label(run.config): METHODS[run.config.method].colour for run in runs}
    for key, (line, level) in zip(keys, (("o-", "--"), ("s:", ":"))):
        suffix = "" if key == "test_cross_entropy" else " after TS"
        by_variant: dict[str, dict[float, list[float]]] = {}
        levels: dict[str, list[float]] = {}
        for run in finished(runs):
            if METHODS[run.config.method].strength == "lam":
                values = by_variant.setdefault(variant_label(run.config), {}).setdefault(run.config.lam, [])
            else:
                values = levels.setdefault(variant_label(run.config), [])
            values.append(run.summary[key])
        swept = {m: v for m, v in by_variant.items() if len(v) >= 2}
        swept_any = swept_any or bool(swept)
        for variant, values in swept.items():
            lams = sorted(values)
            means, stds = (np.array(column) for column in zip(*(mean_std(values[lam]) for lam in lams)))
            band(ax, lams, means, stds, colour[variant], variant + suffix, alpha=0.2, style=line)
        for variant, values in levels.items():
            mean, spread = mean_std(values)
            ax.axhline(mean, color=colour[variant], ls=level, label=f"{variant}{suffix} (no λ)")
            ax.axhspan(mean - spread, mean + spread, color=colour[variant], alpha=0.12)
    if not swept_any:
        plt.close(fig)
        return False
    ax.set(xlabel="λ (weight of the method's term)", ylabel="test cross-entropy (nats)",
           title=_title(runs, "Test CE vs λ"))
    ax.legend(fontsize=8)
    save(fig, path)
    return True


def figure_curves(runs: list[Run], path: Path) -> None:
    """Figure 1 (middle, right): test accuracy and test CE per epoch, mean ± std over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    palette = colours(runs)
    for group, members in sorted(by_group(runs).items()):
        for ax, key in zip(axes, ("test_accuracy", "test_cross_entropy")):
            mean, std = mean_band([np.array([row[key] for row in r.metrics], dtype=float) for r in members])
            band(ax, np.arange(1, len(mean) + 1), mean, std, palette[group], _legend(members))
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title=_title(runs, "Test accuracy"))
    axes[1].set(xlabel="epoch", ylabel="test cross-entropy (nats, log scale)", title=_title(runs, "Test CE"))
    _log_y(axes[1])
    for ax in axes:
        integer_x(ax)
    axes[1].legend()
    save(fig, path)


def figure_compactness(runs: list[Run], path: Path) -> bool:
    """Figure 1 (left): normalised same-class distance between two fixed training batches, per step.
    False, and no file, when no group logged it at two steps or more."""
    logged = {group: members for group, members in sorted(by_group(runs).items())
              if min(len(compactness_log(r)[1]) for r in members) >= 2}
    if not logged:
        return False
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    palette = colours(runs)
    for group, members in logged.items():
        mean, std = mean_band([compactness_log(r)[1] for r in members])
        band(ax, compactness_log(members[0])[0][: len(mean)], mean, std, palette[group], _legend(members))
    ax.set(xlabel="training step (S1 mini-batches)", ylabel="same-class distance / all-pairs distance",
           title=_title(runs, "Compactness across mini-batches"))
    integer_x(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    save(fig, path)
    return True


def figure_study(runs: list[Run], key: str, xlabel: str, what: str, path: Path, log2: bool = False) -> None:
    """Accuracy and test CE against a config field (batch size, label noise), mean ± std over seeds:
    a line per arm that varies it, a dashed level (with its band) for an arm run at one value only."""
    rows = study_rows(runs, key)
    colour_of = {method_label(r.config): METHODS[r.config.method].colour for r in runs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for name in dict.fromkeys(row[0] for row in rows):
        mine = [row for row in rows if row[0] == name]
        for ax, metric in zip(axes, ("test_accuracy", "test_cross_entropy")):
            if len(mine) > 1:
                means, stds = (np.array([agg[metric][i] for _, _, agg in mine]) for i in (0, 1))
                ax.errorbar([value for _, value, _ in mine], means, yerr=stds, marker="o", capsize=3,
                            color=colour_of[name], label=name)
            else:
                _level(ax, *mine[0][2][metric], colour_of[name], f"{name} at {xlabel} {mine[0][1]:g}")
    for ax, ylabel in zip(axes, ("test accuracy (%)", "test cross-entropy (nats)")):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=_title(runs, what))
        if log2:
            values = sorted({value for _, value, _ in rows})
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [f"{v:g}" for v in values])
    axes[1].legend(fontsize=8)
    save(fig, path)


def features_collapsed(features: torch.Tensor) -> bool:
    """Whether every row of `features` (N, D) is the same vector, up to float noise (t-SNE cannot embed that)."""
    return bool(features.std(0).max() < 1e-6 * max(1.0, features.abs().max().item()))


def figure_tsne(runs: list[Run], predictions: Sequence[Prediction], class_names: Sequence[str], path: Path) -> None:
    """Figure 3: t-SNE of each run's test features, a panel per run, points coloured by class; a panel
    that says so for features that collapsed to one vector, or for a single test sample (`--tsne-points 1`), which
    t-SNE cannot embed either."""
    from sklearn.manifold import TSNE

    classes = len(class_names)
    name = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "gist_ncar"
    palette = matplotlib.colormaps[name].resampled(classes)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.2), squeeze=False)
    for ax, run, (features, _, labels) in zip(axes[0], runs, predictions):
        ax.set(title=f"{method_label(run.config)} (seed {run.config.seed})", xticks=[], yticks=[])
        if len(features) < 2:
            ax.text(0.5, 0.5, "one test sample:\nnothing to embed", ha="center", va="center", transform=ax.transAxes)
        elif features_collapsed(features):
            ax.text(0.5, 0.5, "features collapsed:\nevery test sample has\nthe same feature vector", ha="center",
                    va="center", transform=ax.transAxes)
        else:
            embedded = TSNE(n_components=2, init="pca", random_state=0,
                            perplexity=min(30.0, (len(features) - 1) / 3)).fit_transform(features.numpy())
            ax.scatter(embedded[:, 0], embedded[:, 1], c=palette(labels.numpy()), s=3)
    legend_rows = 0
    if classes <= 20:  # beyond that a legend is unreadable; the colours still separate the classes
        columns = min(classes, 4 * len(runs))
        legend_rows = -(-classes // columns)
        handles = [plt.Line2D([], [], marker="o", ls="", color=palette(k)) for k in range(classes)]
        fig.legend(handles, class_names, loc="lower center", ncol=columns, fontsize=8)
    points = len(predictions[0][2])
    what = f"t-SNE of {points} test feature{'s' if points != 1 else ''}, coloured by class ({classes} classes)"
    fig.suptitle(_title(runs, textwrap.fill(what, round(11 * 4.2 * len(runs)))))  # about 11 characters an inch
    save(fig, path, dpi=110, rect=(0, 0.01 + 0.06 * legend_rows, 1, 1))


def figure_reliability(runs: list[Run], predictions: Sequence[Prediction], path: Path) -> None:
    """A reliability diagram per run: accuracy per bin of confidence (max softmax) against the diagonal."""
    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.8), squeeze=False)
    for ax, run, (_, logits, labels) in zip(axes[0], runs, predictions):
        accuracy = calibration_bins(logits, labels, BINS).accuracy.numpy()  # (BINS,)
        ax.bar((np.arange(BINS) + 0.5) / BINS, accuracy, width=1 / BINS, edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ax.set(xlabel="confidence (max softmax)", ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1),
               title=method_label(run.config))
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle(_title(runs, f"Reliability ({BINS} equal-width bins)"))
    save(fig, path, dpi=110)


def figure_test_ce_per_epoch(panels: Sequence[tuple[str, str, dict[str, list[Path]]]], path: Path) -> Path:
    """Figure 2: a metric per epoch (mean ± std over seeds), one panel per (title, metric key, {row label: run
    directories}); each row in its method's colour, shades of it (and other dashes) where a panel holds several rows
    of one method. Failed runs are left out; the legend counts the seeds drawn."""
    from itra import rundir

    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    styles = ("-", "--", "-.", ":")
    for ax, (title, key, rows) in zip(axes[0], panels):
        members = {label: [d for d in dirs if not rundir.is_failed(rundir.read_summary(d) or {"status": "failed"})]
                   for label, dirs in rows.items()}
        methods = {label: rundir.read_config(dirs[0]).method for label, dirs in rows.items() if dirs}
        lowest = math.inf
        for label, dirs in members.items():
            if not dirs:
                continue
            method = methods[label]
            same = [other for other in members if methods.get(other) == method and members[other]]
            spec, index = METHODS[method], same.index(label)
            colour = spec.colour if len(same) == 1 else matplotlib.colormaps[spec.shades](1.0 - 0.55 * index / (len(same) - 1))
            series = [np.array([np.nan if row.get(key) is None else row[key] for row in rundir.read_metrics(d)], dtype=float)
                      for d in dirs]
            mean, std = mean_band(series)
            band(ax, np.arange(1, len(mean) + 1), mean, std, colour, f"{label} ({seeds(len(dirs))})", alpha=0.12,
                  style=styles[index % len(styles)])
            lowest = min(lowest, float(np.nanmin(mean)))
        if math.isfinite(lowest):  # a band below a mean near 0 would stretch the log axis far down
            ax.set_ylim(bottom=0.85 * lowest)
        ax.set(xlabel="epoch", ylabel="test cross-entropy (nats, log scale)", title=title)
        _log_y(ax)
        integer_x(ax)
        ax.legend(fontsize=7)
    save(fig, path)
    return path
