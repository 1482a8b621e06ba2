"""Tables read back from run directories: mean and spread over seeds, per method."""
from __future__ import annotations

import statistics
from typing import Any

METRICS = ("test_accuracy", "test_cross_entropy", "test_ece", "train_ce")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """{metric: [mean, std]} over the summaries of one group of runs (usually: seeds), plus `seeds`."""
    row: dict[str, Any] = {"seeds": len(summaries)}
    for metric in METRICS:
        row[metric] = list(mean_std([summary[metric] for summary in summaries]))
    return row


def format_mean_std(value: list[float], digits: int) -> str:
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"
