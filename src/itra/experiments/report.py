"""`itra report RUN_DIRS... --out REPORT_DIR`: the paper's tables and figures, read back from run directories.

    itra report runs/ --out report/

Writes `report.md` and PNG figures. Everything comes from the run directories (`config.json`,
`metrics.jsonl`, `summary.json`, `checkpoint.pt`) except the step-time overhead, which is measured
afresh, every method side by side in this process, and the t-SNE, which is computed from the
checkpoints. A study appears when the runs for it are there:

- table: accuracy, test CE and ECE per group of runs (mean ± std over seeds);
- test CE vs lambda (Figure 2) when a method has runs at two or more lambdas;
- test CE and accuracy per epoch, and compactness per step (Figure 1);
- batch-size study (Table 3) when ITRA-c has runs at several batch sizes;
- label-noise study when runs at several `--label-noise` values exist;
- t-SNE of test features and a reliability diagram per method (Figure 3);
- training-time overhead: step time of each method / CE's.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from itra.data import Splits  # noqa: E402
from itra.experiments.runs import build_model, load_splits, read_config, read_summary  # noqa: E402
from itra.experiments.table import aggregate, format_mean_std  # noqa: E402
from itra.metrics import calibration_bins  # noqa: E402
from itra.train import TrainConfig, predict, read_metrics, resolve_device, subset, time_steps  # noqa: E402

METHOD_LABELS = {"ce": "CE", "lsr": "LSR", "center": "Center", "itra": "ITRA", "itra-c": "ITRA-c"}
METHOD_COLOURS = {"ce": "tab:gray", "lsr": "tab:orange", "center": "tab:green", "itra": "tab:purple", "itra-c": "tab:blue"}


@dataclass
class Run:
    directory: Path
    config: TrainConfig
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]

    @property
    def group(self) -> str:
        """The run's name without its seed: runs of one group differ only by seed."""
        return self.config.name.rsplit("-seed", 1)[0]


def find_runs(paths: list[Path]) -> list[Run]:
    """Finished runs in `paths`, each a run directory or a folder of them (searched recursively)."""
    directories: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run directory")
        directories += [path] if (path / "config.json").exists() else sorted(p.parent for p in path.rglob("config.json"))
    runs = []
    for directory in dict.fromkeys(directories):
        summary = read_summary(directory)
        if summary is not None:  # unfinished runs are left out
            runs.append(Run(directory, read_config(directory), read_metrics(directory), summary))
    if not runs:
        raise ValueError(f"No finished runs (with summary.json) under {', '.join(map(str, paths))}")
    studies = sorted({study_of(run.config) for run in runs})
    if len(studies) > 1:
        raise ValueError("A report compares runs of one dataset, model and training set; these runs have "
                         f"{len(studies)}: {'; '.join(studies)}. Pass the run directories of one of them.")
    return runs


def study_of(config: TrainConfig) -> str:
    subset = "full training set" if config.train_subset is None else f"{config.train_subset} training samples"
    return f"{config.dataset}, {config.model}, {subset}"


def by_group(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def label(config: TrainConfig) -> str:
    name = METHOD_LABELS[config.method]
    if config.method in ("center", "itra", "itra-c"):
        name += f" λ={config.lam:g}"
    elif config.method == "lsr":
        name += f" ε={config.smoothing:g}"
    return name


def title(runs: list[Run], what: str) -> str:
    return f"{what}\n{study_of(runs[0].config)}"


def colours(runs: list[Run]) -> dict[str, Any]:
    """A colour per group: the method's colour, or shades of it by lambda when a method has several."""
    lams: dict[str, set[float]] = {}
    for run in runs:
        lams.setdefault(run.config.method, set()).add(run.config.lam)
    chosen = {}
    for group, members in by_group(runs).items():
        config = members[0].config
        values = sorted(lams[config.method])
        if len(values) > 1 and config.method in ("center", "itra", "itra-c"):
            shade = 0.35 + 0.65 * values.index(config.lam) / (len(values) - 1)
            chosen[group] = plt.get_cmap({"center": "Greens", "itra": "Purples", "itra-c": "Blues"}[config.method])(shade)
        else:
            chosen[group] = METHOD_COLOURS[config.method]
    return chosen


def mean_band(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    length = min(len(s) for s in series)
    stacked = np.stack([s[:length] for s in series])
    return stacked.mean(0), stacked.std(0, ddof=1) if len(series) > 1 else np.zeros(length)


def main_runs(runs: list[Run]) -> list[Run]:
    """The runs of the main comparison: no label noise, the most common batch size and epoch budget."""
    clean = [r for r in runs if r.config.label_noise == 0] or runs
    batch = Counter(r.config.batch_size for r in clean).most_common(1)[0][0]
    epochs = Counter(r.config.epochs for r in clean if r.config.batch_size == batch).most_common(1)[0][0]
    return [r for r in clean if r.config.batch_size == batch and r.config.epochs == epochs]


def compactness_log(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The run's logged (steps, compactness values), over all epochs."""
    pairs = [pair for row in run.metrics for pair in row.get("compactness", [])]
    return np.array([step for step, _ in pairs]), np.array([value for _, value in pairs], dtype=float)


# ---------------------------------------------------------------- tables
def compactness_span(members: list[Run]) -> str:
    """Mean compactness over seeds at the first and the last logged step: "first → last"."""
    series = [compactness_log(r)[1] for r in members]
    if not all(len(values) for values in series):
        return "–"
    first, last = (np.array([s[index] for s in series]) for index in (0, -1))
    collapsed = int(np.isnan(last).sum())  # NaN: every feature the same vector
    note = f" ({collapsed} of {len(series)} seeds collapsed)" if collapsed else ""
    return f"{np.nanmean(first):.3f} → {np.nanmean(last) if collapsed < len(series) else float('nan'):.3f}{note}"


def table(runs: list[Run]) -> str:
    lines = ["| runs | seeds | acc (%) | test CE | ECE | train CE | compactness first → last step |",
             "|---|---|---|---|---|---|---|"]
    for group, members in sorted(by_group(runs).items()):
        row = aggregate([r.summary for r in members])
        lines.append(f"| {group} | {row['seeds']} | {format_mean_std(row['test_accuracy'], 2)} | "
                     f"{format_mean_std(row['test_cross_entropy'], 3)} | {format_mean_std(row['test_ece'], 4)} | "
                     f"{format_mean_std(row['train_ce'], 3)} | {compactness_span(members)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- figures
def figure_ce_vs_lambda(runs: list[Run], path: Path) -> bool:
    """Figure 2: test CE against lambda, one line per method with a ±1 std band; CE and LSR as levels."""
    by_method: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        if run.config.method in ("center", "itra", "itra-c"):
            by_method.setdefault(run.config.method, {}).setdefault(run.config.lam, []).append(run.summary["test_cross_entropy"])
    swept = {m: v for m, v in by_method.items() if len(v) >= 2}
    if not swept:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, values in swept.items():
        lams = sorted(values)
        means = np.array([np.mean(values[l]) for l in lams])
        stds = np.array([np.std(values[l], ddof=1) if len(values[l]) > 1 else 0.0 for l in lams])
        ax.plot(lams, means, "o-", color=METHOD_COLOURS[method], label=METHOD_LABELS[method])
        ax.fill_between(lams, means - stds, means + stds, color=METHOD_COLOURS[method], alpha=0.2)
    for method in ("ce", "lsr"):
        values = [r.summary["test_cross_entropy"] for r in runs if r.config.method == method]
        if values:
            level, spread = np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0
            ax.axhline(level, color=METHOD_COLOURS[method], ls="--", label=f"{METHOD_LABELS[method]} (no λ)")
            ax.axhspan(level - spread, level + spread, color=METHOD_COLOURS[method], alpha=0.12)
    ax.set(xlabel="λ (weight of the method's term)", ylabel="test cross-entropy (nats)", title=title(runs, "Test CE vs λ"))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def figure_curves(runs: list[Run], path: Path) -> bool:
    """Figure 1 (middle, right): test accuracy and test CE per epoch, mean ± std over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    palette = colours(runs)
    for group, members in sorted(by_group(runs).items()):
        config = members[0].config
        for ax, key in zip(axes, ("test_accuracy", "test_cross_entropy")):
            mean, std = mean_band([np.array([row[key] for row in r.metrics]) for r in members])
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, color=palette[group], label=f"{label(config)} ({len(members)} seeds)")
            ax.fill_between(epochs, mean - std, mean + std, color=palette[group], alpha=0.15)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title=title(runs, "Test accuracy"))
    axes[1].set(xlabel="epoch", ylabel="test cross-entropy (nats, log scale)", title=title(runs, "Test CE"), yscale="log")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def figure_compactness(runs: list[Run], path: Path) -> bool:
    """Figure 1 (left): normalised same-class distance between two fixed training batches, per step."""
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    palette = colours(runs)
    drawn = False
    for group, members in sorted(by_group(runs).items()):
        series = [compactness_log(r)[1] for r in members]
        if min(len(s) for s in series) < 2:
            continue
        steps = compactness_log(members[0])[0]
        mean, std = mean_band(series)
        config = members[0].config
        ax.plot(steps[: len(mean)], mean, color=palette[group], label=f"{label(config)} ({len(members)} seeds)")
        ax.fill_between(steps[: len(mean)], mean - std, mean + std, color=palette[group], alpha=0.15)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set(xlabel="training step (S1 mini-batches)", ylabel="same-class distance / all-pairs distance",
           title=title(runs, "Compactness across mini-batches"))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def study_runs(runs: list[Run], key: str, reference: tuple[str, ...] = ()) -> list[Run]:
    """Runs of the arms that vary `key` (two or more values), plus the runs of the `reference` methods."""
    values: dict[str, set[Any]] = {}  # per arm: the method with its own setting (label: method, λ or ε)
    for run in runs:
        values.setdefault(label(run.config), set()).add(getattr(run.config, key))
    return [r for r in runs if len(values[label(r.config)]) > 1 or r.config.method in reference]


def study_rows(runs: list[Run], key: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """(arm, value of `key`, aggregate over seeds) for every group, sorted."""
    rows = []
    for members in by_group(runs).values():
        config = members[0].config
        rows.append((label(config), getattr(config, key), aggregate([r.summary for r in members])))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def figure_study(runs: list[Run], key: str, xlabel: str, what: str, path: Path, log2: bool = False) -> str | None:
    """Accuracy and test CE against a config field (batch size, label noise), mean ± std over seeds:
    a line per arm that varies it, a dashed level (with its band) for an arm run at one value only."""
    rows = study_rows(runs, key)
    if len({value for _, value, _ in rows}) < 2:
        return None
    method_of = {label(r.config): r.config.method for r in runs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        colour = METHOD_COLOURS[method_of[name]]
        for ax, metric in zip(axes, ("test_accuracy", "test_cross_entropy")):
            means = np.array([r[2][metric][0] for r in mine])
            stds = np.array([r[2][metric][1] for r in mine])
            if len(mine) > 1:
                ax.errorbar([r[1] for r in mine], means, yerr=stds, marker="o", capsize=3, color=colour, label=name)
            else:
                ax.axhline(means[0], color=colour, ls="--", label=f"{name} at {xlabel} {mine[0][1]:g}")
                ax.axhspan(means[0] - stds[0], means[0] + stds[0], color=colour, alpha=0.12)
    for ax, ylabel in zip(axes, ("test accuracy (%)", "test cross-entropy (nats)")):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title(runs, what))
        if log2:
            values = sorted({r[1] for r in rows})
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [f"{v:g}" for v in values])
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    lines = [f"| method | {xlabel} | seeds | acc (%) | test CE | ECE |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {value:g} | {agg['seeds']} | {format_mean_std(agg['test_accuracy'], 2)} | "
              f"{format_mean_std(agg['test_cross_entropy'], 3)} | {format_mean_std(agg['test_ece'], 4)} |"
              for name, value, agg in rows]
    return "\n".join(lines) + "\n"


def best_groups(runs: list[Run]) -> list[Run]:
    """The runs of one group per method: for a method run at several lambdas, the lambda with the
    lowest mean test CE (the paper reports each method at its best lambda)."""
    chosen: dict[str, list[Run]] = {}
    for members in by_group(runs).values():
        method = members[0].config.method
        best = chosen.get(method)
        mean_ce = np.mean([r.summary["test_cross_entropy"] for r in members])
        if best is None or mean_ce < np.mean([r.summary["test_cross_entropy"] for r in best]):
            chosen[method] = members
    return [run for method in METHOD_LABELS if method in chosen for run in chosen[method]]


def representative_runs(runs: list[Run]) -> list[Run]:
    """One run per method: the lowest seed of `best_groups`."""
    chosen: dict[str, Run] = {}
    for run in best_groups(runs):
        if run.config.method not in chosen or run.config.seed < chosen[run.config.method].config.seed:
            chosen[run.config.method] = run
    return list(chosen.values())


def figure_tsne_and_reliability(
    runs: list[Run], splits: Splits, tsne_path: Path, reliability_path: Path, points: int = 2000
) -> None:
    """Figure 3: t-SNE of test-set features per method, and a reliability diagram per method."""
    from sklearn.manifold import TSNE

    chosen = representative_runs(runs)
    classes = len(splits.class_names)
    palette = matplotlib.colormaps["tab10" if classes <= 10 else "tab20" if classes <= 20 else "gist_ncar"].resampled(classes)
    device = resolve_device("auto")
    test = subset(splits.test, points)
    fig_t, axes_t = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 4.2), squeeze=False)
    fig_r, axes_r = plt.subplots(1, len(chosen), figsize=(3.6 * len(chosen), 3.8), squeeze=False)
    for ax_t, ax_r, run in zip(axes_t[0], axes_r[0], chosen):
        model = build_model(run.config, splits)
        state = torch.load(run.directory / "checkpoint.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        features, logits, labels = predict(model.to(device), test, device)
        ax_t.set(title=f"{label(run.config)} (seed {run.config.seed})", xticks=[], yticks=[])
        if features.std(0).max() < 1e-6 * max(1.0, features.abs().max().item()):  # t-SNE cannot embed a point mass
            ax_t.text(0.5, 0.5, "features collapsed:\nevery test sample has\nthe same feature vector", ha="center",
                      va="center", transform=ax_t.transAxes)
        else:
            embedded = TSNE(n_components=2, init="pca", random_state=0,
                            perplexity=min(30.0, (len(features) - 1) / 3)).fit_transform(features.numpy())
            ax_t.scatter(embedded[:, 0], embedded[:, 1], c=palette(labels.numpy()), s=3)
        bins = calibration_bins(logits, labels)
        centres = (np.arange(15) + 0.5) / 15
        ax_r.bar(centres, bins.accuracy.numpy(), width=1 / 15, edgecolor="k", alpha=0.7, label="accuracy")
        ax_r.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ax_r.set(xlabel="confidence (max softmax)", ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1),
                 title=f"{label(run.config)}")
    legend_rows = 0
    if classes <= 20:  # beyond that a legend is unreadable; the colours still separate the classes
        columns = min(classes, 4 * len(chosen))
        legend_rows = -(-classes // columns)
        handles = [plt.Line2D([], [], marker="o", ls="", color=palette(k)) for k in range(classes)]
        fig_t.legend(handles, splits.class_names, loc="lower center", ncol=columns, fontsize=8)
    fig_t.suptitle(title(chosen, f"t-SNE of {len(test)} test features, coloured by class ({classes} classes)"))
    fig_t.tight_layout(rect=(0, 0.01 + 0.06 * legend_rows, 1, 1))
    fig_t.savefig(tsne_path, dpi=110)
    axes_r[0][0].legend(loc="upper left", fontsize=8)
    fig_r.suptitle(title(chosen, "Reliability (15 equal-width bins)"))
    fig_r.tight_layout()
    fig_r.savefig(reliability_path, dpi=110)
    plt.close(fig_t)
    plt.close(fig_r)


def overhead(runs: list[Run], splits: Splits, steps: int) -> str:
    """Step time of each method / CE's, measured side by side now on the chosen runs' configs."""
    chosen = representative_runs(runs)
    configs = [dataclasses.replace(r.config, device="auto") for r in chosen]
    seconds = time_steps(configs, splits, lambda c: build_model(c, splits), steps=steps)
    reference = next((seconds[c.name] for c in configs if c.method == "ce"), min(seconds.values()))
    lines = ["| method | s / step | / CE |", "|---|---|---|"]
    lines += [f"| {label(c)} | {seconds[c.name]:.4f} | {seconds[c.name] / reference:.2f} |" for c in configs]
    return "\n".join(lines) + "\n"


def build_report(paths: list[Path], out: Path, timing_steps: int = 20, tsne_points: int = 2000) -> Path:
    """Write `out/report.md` and its figures; returns the path of report.md."""
    runs = find_runs(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    main = main_runs(runs)
    sections = [f"# ITRA report\n\n{len(runs)} finished runs from {', '.join(map(str, paths))}.\n",
                "## Accuracy, test CE and ECE (mean ± std over seeds)\n", table(runs)]
    if figure_ce_vs_lambda(main, out / "ce_vs_lambda.png"):
        sections.append("## Test CE vs λ (Figure 2)\n\n![](ce_vs_lambda.png)\n")
    curve_runs = [r for r in best_groups(main) if r.config.method in ("ce", "itra-c", "itra")]
    if curve_runs and figure_curves(curve_runs, out / "curves.png"):
        sections.append("## Test accuracy and CE per epoch (Figure 1, middle and right)\n\nCE against ITRA at its "
                        "λ of lowest test CE.\n\n![](curves.png)\n")
    curve_runs = [r for r in main if r.config.method in ("ce", "itra-c", "itra")]
    if curve_runs and figure_compactness(curve_runs, out / "compactness.png"):
        sections.append("## Compactness during training (Figure 1, left)\n\nMean distance between same-class "
                        "features of two fixed training batches, divided by the mean distance of all their pairs.\n\n"
                        "![](compactness.png)\n")
    clean = [r for r in runs if r.config.label_noise == 0 and r.config.epochs == main[0].config.epochs]
    batch_table = figure_study(study_runs(clean, "batch_size", reference=("ce",)), "batch_size", "batch size",
                               "Batch-size study", out / "batch_size.png", log2=True)
    if batch_table:
        sections.append("## Batch-size study (Table 3)\n\n" + batch_table + "\n![](batch_size.png)\n")
    noisy = study_runs([r for r in runs if r.config.batch_size == main[0].config.batch_size], "label_noise")
    noise_table = figure_study(noisy, "label_noise", "label noise (fraction flipped)", "Label-noise study", out / "label_noise.png")
    if noise_table:
        sections.append("## Label noise\n\n" + noise_table + "\n![](label_noise.png)\n")
    splits = load_splits(representative_runs(main)[0].config)  # for the t-SNE and the overhead: one load
    figure_tsne_and_reliability(main, splits, out / "tsne.png", out / "reliability.png", tsne_points)
    sections.append("## t-SNE of test features (Figure 3)\n\n![](tsne.png)\n\n## Reliability diagrams\n\n![](reliability.png)\n")
    sections.append("## Training-time overhead (measured side by side in this process)\n\n" + overhead(main, splits, timing_steps))
    report = out / "report.md"
    report.write_text("\n".join(sections))
    (out / "runs.json").write_text(json.dumps([str(r.directory) for r in runs], indent=2))
    return report
