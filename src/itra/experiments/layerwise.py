"""`itra similarity`: the layer-wise view of trained runs, read from their run directories.

For each run: its model at its last checkpoint, its own test set (the same subset it was evaluated on),
and `evaluate.layerwise` on it: the accuracy of the last layer's head after every layer, the sample-wise
cosine of every layer with the last, and linear CKA between every pair of layers (the claims of Jiang,
Zhou and Zhu, 2024). Writes `OUT/<run name>/layers.json` and `layers.png`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from itra import rundir
from itra.config import resolve_device
from itra.data.splits import run_splits
from itra.evaluate import layerwise
from itra.experiments.figures import plot_layers
from itra.experiments.runs import build_model, load_splits
from itra.methods import method_label


def measure_run(run_dir: Path, out: Path, test_subset: int | None = None, device: str = "auto") -> dict[str, Any]:
    """The layer-wise view of the run in `run_dir`, written to `out/<run name>/`; returns what was written.
    `test_subset` measures on a fixed random subset of this size of the test set (default: the run's own test set)."""
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    if not rundir.has_checkpoint(run_dir):
        raise FileNotFoundError(f"{run_dir} has no checkpoint.pt yet: train it first (itra train --resume {run_dir})")
    checkpoint = rundir.load_checkpoint(run_dir)
    splits = load_splits(config)
    test = run_splits(splits, None, test_subset or config.test_subset, 0.0, config.seed).test
    target = torch.device(resolve_device(config.device if device == "auto" else device))
    model = build_model(config, splits)
    model.load_state_dict(checkpoint["model"])
    measured = {"run": config.name, "method": method_label(config), "epoch": checkpoint["epoch"],
                "test_size": len(test), **layerwise(model.to(target), test, target)}  # type: ignore[arg-type]
    folder = Path(out) / config.name
    folder.mkdir(parents=True, exist_ok=True)
    rundir.write_json(folder / "layers.json", measured)
    plot_layers(measured, f"{config.name}: {method_label(config)}, epoch {checkpoint['epoch']}", folder / "layers.png")
    return measured
