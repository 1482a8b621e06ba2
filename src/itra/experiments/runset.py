"""The runs a report reads, and how it selects among them: ended run directories found on disk,
grouped by config (the runs of one group differ only by seed), the main comparison, each method at
its best λ, and the arms of a study over one config field.

Finished and failed runs are found alike: tables count a failed run; nothing averages it in, picks
it or draws it (`finished`). Method facts come from `METHODS`.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from itra import rundir
from itra.config import TrainConfig
from itra.experiments.table import aggregate
from itra.methods import METHODS, REFERENCE
from itra.experiments.labels import method_label, variant_label
from itra.errors import BadValue, MissingFile


@dataclass
class Run:
    """An ended run, read back from its directory."""

    directory: Path
    config: TrainConfig
    metrics: list[dict[str, Any]]  # a row per epoch; a non-finite value is None (strict JSON)
    summary: dict[str, Any]  # "status": "finished", or "failed" with the "reason"

    @property
    def group(self) -> str:
        """The run's name without its seed: runs of one group differ only by seed."""
        return self.config.group

    @property
    def failed(self) -> bool:
        return rundir.is_failed(self.summary)


def find_runs(paths: Sequence[Path]) -> list[Run]:
    """Ended runs (finished or failed) in `paths`, each a run directory or a folder of them (searched
    recursively); runs that have not ended are left out. All of them must be of one study (`study_of`)."""
    directories: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise MissingFile(f"{path}: no such run directory")
        if (path / rundir.CONFIG).exists():
            directories.append(path)
        else:
            directories += sorted(p.parent for p in path.rglob(rundir.CONFIG))
    runs, seen = [], {}
    for directory in dict.fromkeys(d.resolve() for d in directories):  # a run reached twice counts once
        summary = rundir.read_summary(directory)
        if summary is None:
            continue
        config = rundir.read_config(directory)
        if config.name in seen:
            raise BadValue(f"{seen[config.name]} and {directory} hold the same run ({config.name}): pass one of them")
        seen[config.name] = directory
        runs.append(Run(directory, config, rundir.read_metrics(directory), summary))
    if not runs:
        where = f"under {', '.join(map(str, paths))}" if paths else "(no run directory was given)"
        raise BadValue(f"No finished runs (with summary.json) {where}")
    studies = sorted({study_of(run.config) for run in runs})
    if len(studies) > 1:
        raise BadValue("A report compares runs of one dataset, model and training set; these runs have "
                         f"{len(studies)}: {'; '.join(studies)}. Pass the run directories of one of them.")
    return runs


def finished(runs: list[Run]) -> list[Run]:
    """The runs that did not fail: the only ones averaged, selected or drawn."""
    return [run for run in runs if not run.failed]


def study_of(config: TrainConfig) -> str:
    """What runs must share to be compared: "fashion-mnist, cnn, 10000 training samples"."""
    subset = "full training set" if config.train_subset is None else f"{config.train_subset} training samples"
    return f"{config.dataset}, {config.model}, {subset}"


def by_group(runs: list[Run]) -> dict[str, list[Run]]:
    """{group: its runs}, groups in the order of their first run."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def main_runs(runs: list[Run]) -> list[Run]:
    """The runs of the main comparison: no label noise, the most common batch size and epoch budget."""
    clean = [r for r in runs if r.config.label_noise == 0] or runs
    batch = Counter(r.config.batch_size for r in clean).most_common(1)[0][0]
    epochs = Counter(r.config.epochs for r in clean if r.config.batch_size == batch).most_common(1)[0][0]
    return [r for r in clean if r.config.batch_size == batch and r.config.epochs == epochs]


def paired_and_reference(runs: list[Run]) -> list[Run]:
    """The runs of Figure 1: the reference method's and those of the methods that match two mini-batches."""
    return [r for r in runs if r.config.method == REFERENCE or METHODS[r.config.method].needs_second_batch]


def best_groups(runs: list[Run]) -> list[Run]:
    """The finished runs of one group per variant (`variant_label`), methods in `METHODS` order: for
    a variant run at several strengths, the group of lowest mean test CE (the paper reports each
    method at its best λ)."""
    chosen: dict[str, tuple[float, list[Run]]] = {}
    for members in by_group(finished(runs)).values():
        variant = variant_label(members[0].config)
        mean_ce = float(np.mean([r.summary["test_cross_entropy"] for r in members]))
        if variant not in chosen or mean_ce < chosen[variant][0]:
            chosen[variant] = (mean_ce, members)
    order = list(METHODS)
    best = sorted(chosen.values(), key=lambda item: order.index(item[1][0].config.method))
    return [run for _, members in best for run in members]


def representative_runs(runs: list[Run]) -> list[Run]:
    """One run per variant: the lowest seed of `best_groups`."""
    chosen: dict[str, Run] = {}
    for run in best_groups(runs):
        variant = variant_label(run.config)
        if variant not in chosen or run.config.seed < chosen[variant].config.seed:
            chosen[variant] = run
    return list(chosen.values())


def study_runs(runs: list[Run], key: str, reference: str | None = None) -> list[Run]:
    """Runs of the arms that vary `key` (two or more values), plus the runs of the `reference` method.
    An arm is a method at its own strength (`method_label`: "ITRA-c λ=0.6")."""
    values: dict[str, set[Any]] = {}
    for run in runs:
        values.setdefault(method_label(run.config), set()).add(getattr(run.config, key))
    return [r for r in runs if len(values[method_label(r.config)]) > 1 or r.config.method == reference]


def study_rows(runs: list[Run], key: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """(arm, value of `key`, `aggregate` over seeds) for every group, sorted by arm and value."""
    rows = []
    for members in by_group(runs).values():
        config = members[0].config
        rows.append((method_label(config), getattr(config, key), aggregate([r.summary for r in members])))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def compactness_log(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The run's logged (steps, compactness values), over all epochs; a value logged as null
    (non-finite: collapsed features) is NaN."""
    pairs = [pair for row in run.metrics for pair in row.get("compactness", [])]
    values = [math.nan if value is None else value for _, value in pairs]
    return np.array([step for step, _ in pairs]), np.array(values, dtype=float)
