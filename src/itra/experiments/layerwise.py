"""`itra similarity`: the layer-wise view of trained runs, read from their run directories.

For each run: its model at its last checkpoint, its own test set (the same subset it was evaluated on),
and `layer_analysis.layerwise` on it: the accuracy of the last layer's head after every layer, the sample-wise
cosine of every layer with the last, and linear CKA between every pair of layers (the claims of Jiang,
Zhou and Zhu, 2024), and as a multi-exit model: each exit's own head where the run has them, the saturation
layer and the early-exit curve. Writes `OUT/<run name>/layers.json`, `layers.md` and `layers.png`.

`aggregate_layers` and `markdown_layers_table` summarise the `layers.json` of several runs (the seeds of a
config, then several configs) for a preset's tables; `layer_figures.plot_exit_accuracy` and `plot_early_exit` draw them.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from itra import rundir
from itra.device import resolve_device
from itra.data import Splits
from itra.data.splits import run_splits
from itra.layer_analysis import layerwise
from itra.experiments.layer_figures import plot_layers
from itra.experiments.runs import build_model, load_splits
from itra.experiments.table import format_mean_std, markdown_table, mean_std
from itra.experiments.labels import method_label
from itra.checks import check_count
from itra.errors import BadValue, MissingFile
from itra.similarity import DEBIASED_MIN_SAMPLES


def measure_run(run_dir: Path, out: Path, test_subset: int | None = None, device: str = "auto",
                splits: Splits | None = None) -> dict[str, Any]:
    """The layer-wise view of the run in `run_dir`, written to `out/<run name>/`; returns what was written.
    `test_subset` measures on a fixed random subset of this size of the test set (default: the run's own test set);
    `splits`: the run's dataset, already loaded (`runs.load_splits`), when several runs of one dataset are measured."""
    if test_subset is not None:
        check_count("test_subset", test_subset, DEBIASED_MIN_SAMPLES,
                    hint=f" (debiased CKA needs {DEBIASED_MIN_SAMPLES} samples; leave it unset for the run's own test set)")
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    if not rundir.has_checkpoint(run_dir):
        raise MissingFile(f"{run_dir} has no checkpoint.pt yet: train it first (itra train --resume {run_dir})")
    checkpoint = rundir.load_checkpoint(run_dir, config)  # checked before any data is loaded
    splits = splits or load_splits(config)
    test = run_splits(splits, None, test_subset or config.test_subset, 0.0, config.seed).test
    if len(test) < DEBIASED_MIN_SAMPLES:  # a run trained with --test-subset 3 or fewer
        raise BadValue(f"{run_dir}: its test set holds {len(test)} samples, and debiased CKA needs "
                       f"{DEBIASED_MIN_SAMPLES}: pass --test-subset {DEBIASED_MIN_SAMPLES} or more")
    target = torch.device(resolve_device(config.device if device == "auto" else device))
    model = build_model(config, splits)
    try:
        model.exit_dims
    except NotImplementedError as error:
        raise BadValue(f"{run_dir}: {error}; itra similarity measures the layers of a model with exits") from None
    rundir.restore(run_dir, checkpoint, config, {"model": model}, {})
    measured = {"run": config.name, "method": method_label(config), "epoch": checkpoint["epoch"],
                "test_size": len(test), **layerwise(model.to(target), test, target)}  # type: ignore[arg-type]
    folder = Path(out) / config.name
    folder.mkdir(parents=True, exist_ok=True)
    rundir.write_json(folder / "layers.json", measured)
    (folder / "layers.md").write_text(markdown_layers(measured))
    plot_layers(measured, f"{config.name}: {method_label(config)}, epoch {checkpoint['epoch']}", folder / "layers.png")
    return measured


# the head kinds of `layer_analysis.layerwise`, in the order tables show them, with their names there
KINDS = {"shared": "shared head", "separate": "own heads"}


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _threshold(value: float) -> str:
    return f"{value:g}" if value <= 1 else "never (last layer)"


def _exit_table(measured: dict[str, Any], kinds: list[str]) -> str:
    """A row per exit of one run: width, both heads' accuracy and CE, the similarities with the last layer and the
    fraction of samples saturated by that layer per head kind."""
    separate = "separate_accuracy" in measured
    header = ["layer", "width", "shared head accuracy (%)", "shared head CE"]
    header += ["own head accuracy (%)", "own head CE"] * separate
    header += ["cosine with last", "CKA with last"] + [f"saturated by here ({KINDS[kind]})" for kind in kinds]
    rows = []
    for l, width in enumerate(measured["width"]):
        row = [l + 1, width, _cell(measured["accuracy"][l], 2), _cell(measured["cross_entropy"][l], 3)]
        if separate:
            row += [_cell(measured["separate_accuracy"][l], 2), _cell(measured["separate_cross_entropy"][l], 3)]
        row += [_cell(measured["cosine"][l], 4), _cell(measured["cka"][l][-1], 4)]
        rows.append(row + [_cell(measured["saturation"][kind]["saturated"][l], 3) for kind in kinds])
    return markdown_table(header, rows)


def _early_exit_table(measured: dict[str, Any], kinds: list[str]) -> str:
    """A row per confidence threshold of one run: accuracy and relative compute per head kind."""
    header = ["confidence threshold"] + [f"{name}, {KINDS[kind]}" for kind in kinds
                                         for name in ("accuracy (%)", "relative compute")]
    rows = []
    for t, point in enumerate(measured["early_exit"][kinds[0]]):
        row = [_threshold(point["threshold"])]
        for kind in kinds:
            mine = measured["early_exit"][kind][t]
            row += [f"{mine['accuracy']:.2f}", f"{mine['relative_compute']:.3f}"]
        rows.append(row)
    return markdown_table(header, rows)


def markdown_layers(measured: dict[str, Any]) -> str:
    """The markdown report of one run's layer-wise view (`measure_run`'s `layers.json`): the table of exits, the
    cosine-CKA correlation, the mean saturation layer and the early-exit table, per head kind the run has."""
    kinds = [kind for kind in KINDS if kind in measured["saturation"]]
    text = (f"# {measured['run']}: {measured['method']}, epoch {measured['epoch']}, {measured['test_size']} "
            f"test samples\n\n{_exit_table(measured, kinds)}\nCorrelation of the sample-wise cosine and linear CKA "
            f"over pairs of layers: {_cell(measured['cosine_cka_correlation'], 3)}\n")
    for kind in kinds:
        text += (f"\nMean saturation layer ({KINDS[kind]}): {measured['saturation'][kind]['mean_layer']:.2f} "
                 f"of {len(measured['width'])}\n")
    if kinds:
        text += ("\nEarly exit at the first layer whose max softmax probability reaches the threshold (relative "
                 f"compute: the mean exit layer / {len(measured['width'])}):\n\n{_early_exit_table(measured, kinds)}")
    return text


def aggregate_layers(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' `layers.json` (the seeds of one config) in one: per exit l = 1..L, [mean, sample std] over
    runs (`table.mean_std`; None where an exit has no value):
    - `runs`: how many; `width`: D_l;
    - `accuracy` (%, shared head), `separate_accuracy` (own heads; None when the runs have none), `cosine` and
      `cka_with_last` (the sample-wise cosine and linear CKA of layer l with the last);
    - `cka`, `cosine_matrix`: the mean L x L matrices (None where undefined);
    - `cosine_cka_correlation`: [mean, std] of the runs' correlations (None if one is undefined);
    - `saturation`: {kind: [mean, std] of the runs' mean saturation layer};
    - `early_exit`: {kind: the mean curve, [{`threshold`, `accuracy`, `relative_compute`}] as one run's}.
    The runs must have the same exits and head kinds."""
    if not measured:
        raise BadValue("Expected the layers.json of at least one run to aggregate, but got none")
    first = measured[0]
    for other in measured[1:]:
        if other["width"] != first["width"] or set(other["early_exit"]) != set(first["early_exit"]):
            raise BadValue(f"Expected runs of one config, but {other.get('run')} has exits {other['width']} and "
                             f"heads {sorted(other['early_exit'])}, {first.get('run')} {first['width']} and "
                             f"{sorted(first['early_exit'])}")

    def per_exit(values: list[list[float | None]]) -> list[list[float] | None]:  # runs x exits
        return [None if None in exit_values else list(mean_std(list(exit_values))) for exit_values in zip(*values)]

    def spread(values: list[float | None]) -> list[float] | None:
        return None if None in values else list(mean_std(values))  # type: ignore[arg-type]

    def mean_matrix(matrices: list[list[list[float | None]]]) -> list[list[float | None]]:
        return [[None if None in cell else statistics.fmean(cell) for cell in zip(*rows)] for rows in zip(*matrices)]

    def mean_curve(kind: str) -> list[dict[str, float]]:
        return [{"threshold": points[0]["threshold"],
                 **{key: statistics.fmean(point[key] for point in points) for key in ("accuracy", "relative_compute")}}
                for points in zip(*(run["early_exit"][kind] for run in measured))]

    return {
        "runs": len(measured),
        "width": first["width"],
        "accuracy": per_exit([run["accuracy"] for run in measured]),
        "separate_accuracy": (per_exit([run["separate_accuracy"] for run in measured])
                              if "separate_accuracy" in first else None),
        "cosine": per_exit([run["cosine"] for run in measured]),
        "cka_with_last": per_exit([[row[-1] for row in run["cka"]] for run in measured]),
        "cka": mean_matrix([run["cka"] for run in measured]),
        "cosine_matrix": mean_matrix([run["cosine_matrix"] for run in measured]),
        "cosine_cka_correlation": spread([run["cosine_cka_correlation"] for run in measured]),
        "saturation": {kind: spread([run["saturation"][kind]["mean_layer"] for run in measured])
                       for kind in first["saturation"]},
        "early_exit": {kind: mean_curve(kind) for kind in first["early_exit"]},
    }


def markdown_layers_table(rows: dict[str, dict[str, Any]]) -> str:
    """Per-exit test accuracy (%, mean ± std over seeds) of several configs, from their `aggregate_layers`: a row
    per config label and head kind (the shared head; "(own heads)" for the separate heads where a config has
    them), a column per layer 1..L (L the deepest config's; "–" where a config has no such exit or value)."""
    if not rows:
        raise BadValue("Expected at least one config's aggregate_layers to tabulate, but got none")
    depth = max(len(aggregated["width"]) for aggregated in rows.values())
    lines = []
    for label, aggregated in rows.items():
        heads = [(label, aggregated["accuracy"])]
        if aggregated["separate_accuracy"] is not None:
            heads.append((f"{label} ({KINDS['separate']})", aggregated["separate_accuracy"]))
        for name, accuracy in heads:
            cells = [format_mean_std(value, 1) for value in accuracy]
            lines.append([name, aggregated["runs"], *cells, *["–"] * (depth - len(cells))])
    return markdown_table(["config", "seeds", *(f"layer {l}" for l in range(1, depth + 1))], lines)
