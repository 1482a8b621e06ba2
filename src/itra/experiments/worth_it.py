"""Is ITRA worth a second mini-batch per step? One row per regime, read from the committed studies' `table.json`.

    python benchmarks/worth_it.py        # writes benchmarks/runs/worth-it.md, the table README's verdict quotes

Each study (`itra reproduce PRESET`) has the rows CE, ITRA-c and the control, "ITRA-c λ=0 (control)": S2 drawn and
passed as ITRA-c's is, no matching loss. So ITRA-c's difference to CE splits in two: ITRA-c minus the control is the
matching loss's part, the control minus CE the second pass's (the batch-norm statistics S2 updates, the random draws
it takes: `--s2-state`). A difference counts as separated when the mean ± std intervals over seeds do not overlap
(`table.separated`; never with one seed), as in every study table; the verdict column says only what is separated.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from itra.experiments.table import apart, format_mean_std, markdown_table, separated

CE, ITRA, CONTROL, KEEP = "Baseline (CE)", "ITRA-c", "ITRA-c λ=0 (control)", "ITRA-c (S2 keeps state)"
HEADER = ("regime", "seeds", "acc (%): CE / ITRA-c", "Δ acc: matching loss (ITRA-c − control)",
          "Δ acc: second pass (control − CE)", "test CE: CE / ITRA-c", "after TS: CE / ITRA-c",
          "ECE after TS: CE / ITRA-c", "ITRA-c, S2 keeps state: acc", "step time / CE", "verdict")


def _delta(first: dict[str, Any], second: dict[str, Any], metric: str, digits: int) -> str:
    """`+0.29 (separated)`: first minus second in `metric`."""
    a, b = first[metric], second[metric]
    return f"{a[0] - b[0]:+.{digits}f}" + (" (separated)" if separated(first, second, metric) else "")


def _pair(first: dict[str, Any], second: dict[str, Any], metric: str, digits: int) -> str:
    return f"{format_mean_std(first.get(metric), digits)} / {format_mean_std(second.get(metric), digits)}"


def verdict(ce: dict[str, Any], itra: dict[str, Any], control: dict[str, Any]) -> str:
    """What is separated: ITRA-c's accuracy against CE (and whose it is), and its test CE before and after scaling."""
    if min(row["seeds"] for row in (ce, itra, control)) < 2:
        return "one seed so far: no difference can be called"
    parts = []
    if separated(itra, ce, "test_accuracy"):
        gain = itra["test_accuracy"][0] - ce["test_accuracy"][0]
        whose = [name for name, (a, b) in (("the matching loss", (itra, control)), ("the second pass", (control, ce)))
                 if separated(a, b, "test_accuracy")]
        parts.append(f"accuracy {gain:+.2f}" + (f", from {' and '.join(whose)}" if whose else
                                                 ", split between the matching loss and the second pass"))
    else:
        parts.append("no separated accuracy gain")
    for metric, name in (("test_cross_entropy", "test CE"), ("ts_test_cross_entropy", "test CE after TS")):
        pair = (itra.get(metric), ce.get(metric))
        if None not in pair:
            parts.append(f"{name} " + ("lower" if apart(*pair) and pair[0][0] < pair[1][0] else
                                       "higher" if apart(*pair) else "level with CE's"))
    return "; ".join(parts)


def worth_it_rows(studies: Sequence[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """One row per (regime, table.json content) that has CE, ITRA-c and the control (the others are left out)."""
    rows = []
    for regime, table in studies:
        by_label = {row["label"]: row for row in table["rows"] if row.get("test_accuracy") is not None}
        if not {CE, ITRA, CONTROL} <= set(by_label):
            continue
        ce, itra, control = by_label[CE], by_label[ITRA], by_label[CONTROL]
        keep = by_label.get(KEEP)
        rows.append([
            regime, f"{min(row['seeds'] for row in (ce, itra, control))}", _pair(ce, itra, "test_accuracy", 2),
            _delta(itra, control, "test_accuracy", 2), _delta(control, ce, "test_accuracy", 2),
            _pair(ce, itra, "test_cross_entropy", 3), _pair(ce, itra, "ts_test_cross_entropy", 3),
            _pair(ce, itra, "ts_test_ece", 4), format_mean_std(keep["test_accuracy"], 2) if keep else "–",
            f"{itra['step_time_ratio']:.2f}", verdict(ce, itra, control)])
    return rows


def worth_it_table(studies: Sequence[tuple[str, Path]]) -> str:
    """The markdown table of `worth_it_rows` from each (regime, path of a study's table.json) that exists."""
    loaded = [(regime, json.loads(path.read_text())) for regime, path in studies if path.exists()]
    return markdown_table(HEADER, worth_it_rows(loaded))
