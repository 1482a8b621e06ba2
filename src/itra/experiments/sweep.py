"""`itra sweep`: a grid of runs, any TrainConfig field taking a comma-separated list of values.

    itra sweep --dataset fashion-mnist --method itra-c --lam 0.1,0.2,0.4,0.6,0.8,1.0 --seeds 3 --epochs 10
    itra sweep --method ce,center,itra-c --label-noise 0,0.2,0.4 --seeds 3

Finished runs are reused and interrupted ones resumed (see `runs.run`), so a killed sweep continues
where it stopped when the same command is run again.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Sequence

from itra.experiments.launchers import Launch
from itra.experiments.runs import run_all
from itra.config import LOCATION_FIELDS, TrainConfig
from itra.resolve import resolve
from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table
from itra.checks import check_count
from itra.errors import BadValue


def grid_points(grid: dict[str, Sequence[Any]]) -> list[TrainConfig]:
    """Every combination of the grid's values, as given (not resolved), seed 0."""
    names = list(grid)
    return [TrainConfig(**dict(zip(names, values))) for values in itertools.product(*(grid[name] for name in names))]


def grid_configs(grid: dict[str, Sequence[Any]], seeds: int) -> list[TrainConfig]:
    """Every combination of the grid's values, resolved (`itra.resolve`), for seeds 0..seeds-1; combinations that
    resolve to the same run (e.g. `ce` at two lambdas, which it does not read) appear once. Every other combination
    is a run of its own: its name holds every field in effect that differs from its default. A location field
    (`config.LOCATION_FIELDS`: where a run happens) takes one value: its values would make the same runs."""
    check_count("seeds", seeds)
    for name in LOCATION_FIELDS:
        values = list(dict.fromkeys(grid.get(name, ())))
        if len(values) > 1:  # every value would make the same runs, trained once: the others silently dropped
            raise BadValue(f"--{name.replace('_', '-')} {','.join(map(str, values))}: a sweep's runs differ by what "
                           f"they compute, and `{name}` is where a run happens, not what it computes (it is not in "
                           "the run name): give one value")
    configs: dict[str, TrainConfig] = {}
    for point in grid_points(grid):
        for seed in range(seeds):
            config = resolve(dataclasses.replace(point, seed=seed))
            if not configs.setdefault(config.name, config).same_run(config):
                raise BadValue(f"Two configs of the grid share the run name {config.name}; give them distinct "
                                 "--model paths or --dataset names")
    return list(configs.values())


def sweep(grid: dict[str, Sequence[Any]], seeds: int, out: Path, progress: bool = True,
          launch: Launch = Launch()) -> list[dict[str, Any]]:
    """Run (or reuse) every config of the grid, through `launch` (`runs.run_all`); returns one row per group of seeds
    (failed runs counted apart)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for config, _, summary in run_all(grid_configs(grid, seeds), out, progress, launch=launch):
        groups.setdefault(config.group, []).append(summary)
    return [{"group": group, **aggregate(summaries)} for group, summaries in groups.items()]


def markdown_rows(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["runs (without seed)", "seeds", "acc (%)", "test CE", "ECE"],
        [[row["group"], format_seeds(row), format_mean_std(row["test_accuracy"], 2),
          format_mean_std(row["test_cross_entropy"], 3), format_mean_std(row["test_ece"], 4)] for row in rows])
