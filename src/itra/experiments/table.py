"""Tables read back from run directories: mean and spread over seeds, and the one markdown-table writer."""
from __future__ import annotations

import statistics
from typing import Any, Sequence

from itra.rundir import FAILURES

METRICS = ("test_accuracy", "test_cross_entropy", "test_ece", "train_ce")
# Of runs with a validation split: temperature scaling fitted on it (`evaluate.evaluate_splits`).
SCALED_METRICS = ("temperature", "ts_test_cross_entropy", "ts_test_ece")
# Of runs with a validation split: what a study picks a method's strength by (`reproduce.picked_rows`).
VALIDATION_METRICS = ("val_cross_entropy",)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(summaries: list[dict[str, Any]],
              metrics: Sequence[str] = METRICS + SCALED_METRICS + VALIDATION_METRICS) -> dict[str, Any]:
    """{metric: [mean, std]} over the finished runs of one group (usually: seeds), with `seeds` (the
    runs averaged) and, per failure status, `failed` and `collapsed` (runs that ended so: counted,
    never averaged in). A metric is None when no run of the group finished, or when one of them lacks it
    (e.g. the temperature of a run without a validation split)."""
    finished = [summary for summary in summaries if summary.get("status") not in FAILURES]
    row: dict[str, Any] = {"seeds": len(finished)}
    row.update({status: sum(summary.get("status") == status for summary in summaries) for status in FAILURES})
    for metric in metrics:
        present = finished and all(summary.get(metric) is not None for summary in finished)
        row[metric] = list(mean_std([summary[metric] for summary in finished])) if present else None
    return row


def apart(first: list[float], second: list[float]) -> bool:
    """Whether two [mean, std] are separated: their mean ± std intervals do not overlap."""
    (m1, s1), (m0, s0) = first, second
    return abs(m1 - m0) > s1 + s0


def separated(first: dict[str, Any], second: dict[str, Any], metric: str) -> bool:
    """Whether two table rows (`aggregate`'s) are `apart` in `metric`: never when one has a single seed, whose spread is
    unknown (a study run in parts)."""
    return min(first["seeds"], second["seeds"]) > 1 and apart(first[metric], second[metric])


def format_mean_std(value: list[float] | None, digits: int) -> str:
    return "–" if value is None else f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def format_seeds(row: dict[str, Any]) -> str:
    """`3`, or `1 (+2 collapsed)` when runs of the group failed or collapsed."""
    ended = ", ".join(f"+{row[status]} {status}" for status in FAILURES if row[status])
    return f"{row['seeds']}" + (f" ({ended})" if ended else "")


def count_failed(rows: list[dict[str, Any]]) -> int:
    """How many runs of `aggregate` rows ended without finishing."""
    return sum(row[status] for row in rows for status in FAILURES)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table, one line per row, cells as given (`str()` of each), ending with a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
