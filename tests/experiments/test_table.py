"""Aggregates over seeds count failed runs apart; one markdown-table writer."""
import pytest

from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table

FINISHED = {"status": "finished", "test_accuracy": 90.0, "test_cross_entropy": 0.3, "test_ece": 0.01, "train_ce": 0.2}


def test_failed_runs_are_counted_never_averaged_in():
    failed = {**FINISHED, "status": "failed", "reason": "diverged", "test_accuracy": 10.0}
    row = aggregate([FINISHED, {**FINISHED, "test_accuracy": 92.0}, failed])
    assert row["seeds"] == 2 and row["failed"] == 1 and row["test_accuracy"][0] == pytest.approx(91.0)
    assert format_seeds(row) == "2 (+1 failed)"
    nothing = aggregate([failed])
    assert nothing["test_accuracy"] is None and format_mean_std(nothing["test_accuracy"], 2) == "–"


def test_markdown_table():
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |\n"
