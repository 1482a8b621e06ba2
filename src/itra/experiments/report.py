"""`itra report RUN_DIRS... --out REPORT_DIR`: the paper's tables and figures, read back from run directories.

    itra report runs/ --out report/

Writes `report.md`, PNG figures and `runs.json` (the run directories read). Everything comes from
the run directories (`config.json`, `metrics.jsonl`, `summary.json`, `checkpoint.pt`) except the
step-time overhead, which is measured afresh, every method side by side in this process, and the
t-SNE, which is computed from the checkpoints. A study appears when the runs for it are there:

- table: accuracy, test CE and ECE per group of runs (mean ± std over seeds; failed runs counted);
- test CE vs lambda (Figure 2) when a method has runs at two or more lambdas;
- test CE and accuracy per epoch, and compactness per step (Figure 1);
- batch-size study (Table 3) when a method has runs at several batch sizes;
- label-noise study when runs at several `--label-noise` values exist;
- t-SNE of test features and a reliability diagram per method (Figure 3);
- training-time overhead: step time of each method / the reference method's (CE).

A failed run is listed with its reason and counted in the table, never averaged in or drawn.
Run selection lives in `runset`, plotting in `figures`; this module puts them together.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from itra import rundir
from itra.device import resolve_device
from itra.data import Splits
from itra.data.batches import subset
from itra.evaluate import predict
from itra.experiments import figures
from itra.experiments.runs import build_model, load_splits
from itra.experiments.runset import (Run, best_groups, by_group, compactness_log, find_runs, finished, main_runs,
                                     paired_and_reference, representative_runs, study_rows, study_runs)
from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table
from itra.experiments.timing import time_steps
from itra.methods import METHODS, REFERENCE
from itra.experiments.labels import method_label
from itra.objective import Objective


# ---------------------------------------------------------------- tables
def compactness_span(members: list[Run]) -> str:
    """Mean compactness over seeds at the first and the last logged step: "first → last"."""
    series = [compactness_log(r)[1] for r in members]
    if not series or not all(len(values) for values in series):
        return "–"
    first, last = (np.array([s[index] for s in series]) for index in (0, -1))
    collapsed = int(np.isnan(last).sum())  # NaN: every feature the same vector
    note = f" ({collapsed} of {figures.seeds(len(series))} collapsed)" if collapsed else ""
    return f"{np.nanmean(first):.3f} → {np.nanmean(last) if collapsed < len(series) else float('nan'):.3f}{note}"


def metric_cells(row: dict[str, Any]) -> list[str]:
    """Seeds (with failures), accuracy, test CE and ECE of an `aggregate` row, as table cells."""
    return [format_seeds(row), format_mean_std(row["test_accuracy"], 2),
            format_mean_std(row["test_cross_entropy"], 3), format_mean_std(row["test_ece"], 4)]


def table(runs: list[Run]) -> str:
    """A row per group; compactness over its finished runs only."""
    rows = []
    for group, members in sorted(by_group(runs).items()):
        row = aggregate([r.summary for r in members])
        rows.append([group, *metric_cells(row), format_mean_std(row["train_ce"], 3),
                     compactness_span(finished(members))])
    header = ["runs", "seeds", "acc (%)", "test CE", "ECE", "train CE", "compactness first → last step"]
    return markdown_table(header, rows)


def failed_runs_table(runs: list[Run]) -> str:
    """A row per failed run: its name and the reason its summary gives."""
    return markdown_table(["run", "reason"], [[r.config.name, r.summary.get("reason", "")] for r in runs if r.failed])


def study(runs: list[Run], key: str, xlabel: str, what: str, path: Path, log2: bool = False) -> str | None:
    """The table of a study over config field `key`, with its figure at `path`; None when the runs
    hold fewer than two values of `key`."""
    rows = study_rows(runs, key)
    if len({value for _, value, _ in rows}) < 2:
        return None
    figures.figure_study(runs, key, xlabel, what, path, log2)
    return markdown_table(["method", xlabel, "seeds", "acc (%)", "test CE", "ECE"],
                          [[name, f"{value:g}", *metric_cells(agg)] for name, value, agg in rows])


def overhead(chosen: list[Run], splits: Splits, steps: int) -> str:
    """Step time of each method / the reference method's, measured side by side now on the runs' configs."""
    configs = [dataclasses.replace(r.config, device="auto") for r in chosen]
    seconds = time_steps(configs, splits, lambda c: build_model(c, splits), steps=steps)
    reference = next((seconds[c.name] for c in configs if c.method == REFERENCE), min(seconds.values()))
    rows = [[method_label(c), f"{seconds[c.name]:.4f}", f"{seconds[c.name] / reference:.2f}"] for c in configs]
    return markdown_table(["method", "s / step", f"/ {METHODS[REFERENCE].label}"], rows)


# ---------------------------------------------------------------- assembly
def predictions(runs: list[Run], splits: Splits, points: int) -> list[figures.Prediction]:
    """Features, logits and labels of each run's checkpoint on a fixed subset of `points` test samples."""
    device = resolve_device("auto")
    test = subset(splits.test, points)
    found = []
    for run in runs:
        model = build_model(run.config, splits)
        rundir.load_model(run.directory, run.config, model)
        found.append(predict(Objective(model).to(device), test, device))
    return found


def figure_sections(runs: list[Run], out: Path, timing_steps: int, tsne_points: int) -> list[str]:
    """The figures, study tables and overhead of the finished `runs`, drawn into `out`, as report sections."""
    main = main_runs(runs)
    sections = []
    if figures.figure_ce_vs_lambda(main, out / "ce_vs_lambda.png"):
        sections.append("## Test CE vs λ (Figure 2)\n\n![](ce_vs_lambda.png)\n")
    curve_runs = paired_and_reference(best_groups(main))
    if curve_runs:
        figures.figure_curves(curve_runs, out / "curves.png")
        sections.append("## Test accuracy and CE per epoch (Figure 1, middle and right)\n\nCE against ITRA at its "
                        "λ of lowest test CE.\n\n![](curves.png)\n")
    curve_runs = paired_and_reference(main)
    if curve_runs and figures.figure_compactness(curve_runs, out / "compactness.png"):
        sections.append("## Compactness during training (Figure 1, left)\n\nMean distance between same-class "
                        "features of two fixed training batches, divided by the mean distance of all their pairs.\n\n"
                        "![](compactness.png)\n")
    clean = [r for r in runs if r.config.label_noise == 0 and r.config.epochs == main[0].config.epochs]
    batch_table = study(study_runs(clean, "batch_size", REFERENCE), "batch_size", "batch size", "Batch-size study",
                        out / "batch_size.png", log2=True)
    if batch_table:
        sections.append("## Batch-size study (Table 3)\n\n" + batch_table + "\n![](batch_size.png)\n")
    noisy = study_runs([r for r in runs if r.config.batch_size == main[0].config.batch_size], "label_noise")
    noise_table = study(noisy, "label_noise", "label noise (fraction flipped)", "Label-noise study",
                        out / "label_noise.png")
    if noise_table:
        sections.append("## Label noise\n\n" + noise_table + "\n![](label_noise.png)\n")
    chosen = representative_runs(main)
    splits = load_splits(chosen[0].config)  # for the t-SNE and the overhead: one load
    predicted = predictions(chosen, splits, tsne_points)
    figures.figure_tsne(chosen, predicted, splits.class_names, out / "tsne.png")
    figures.figure_reliability(chosen, predicted, out / "reliability.png")
    sections.append("## t-SNE of test features (Figure 3)\n\n![](tsne.png)\n\n"
                    "## Reliability diagrams\n\n![](reliability.png)\n")
    sections.append("## Training-time overhead (measured side by side in this process)\n\n"
                    + overhead(chosen, splits, timing_steps))
    return sections


def build_report(paths: list[Path], out: Path, timing_steps: int = 20, tsne_points: int = 2000) -> Path:
    """Write `out/report.md`, its figures and `out/runs.json`; returns the path of report.md."""
    ended = find_runs(paths)
    runs = finished(ended)
    failed = len(ended) - len(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = f"{len(runs)} finished runs" + (f" and {failed} failed" if failed else "")
    sections = [f"# ITRA report\n\n{counts} from {', '.join(map(str, paths))}.\n",
                "## Accuracy, test CE and ECE (mean ± std over seeds)\n", table(ended)]
    if failed:
        sections.append("## Failed runs (counted above, never averaged in or drawn)\n\n" + failed_runs_table(ended))
    if runs:
        sections += figure_sections(runs, out, timing_steps, tsne_points)
    else:
        sections.append("Every run failed: there is nothing to average, draw or time.\n")
    report = out / "report.md"
    report.write_text("\n".join(sections))
    (out / "runs.json").write_text(json.dumps([str(r.directory) for r in ended], indent=2))
    return report
