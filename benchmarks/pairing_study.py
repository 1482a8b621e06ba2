"""The pairing study's table (issue 15): quality and cost of every `--pairing`, read back from run directories.

    S="--dataset fashion-mnist --model cnn --epochs 10 --train-subset 10000 --out /work/runs/pairing --quiet"
    itra sweep $S --seeds 3 --method ce
    itra sweep $S --seeds 3 --method itra-c --lam 0.6 --pairing independent,detached,previous,split
    python benchmarks/pairing_study.py /work/runs/pairing --epoch-cost benchmarks/bench_step.json

Per group of seeds (CE, and ITRA-c under each pairing): accuracy, test CE and ECE after the last
epoch (mean ± std over the finished seeds), the last logged compactness, seeds that collapsed or
failed (counted, never averaged in), and when the run reached CE's final test CE (the mean over CE's
seeds): the first epoch whose test CE is at or below it, as a fraction of the run's epochs (mean over
seeds; "never" where a seed did not). With `--epoch-cost` (`bench_step.py`'s JSON), that epoch is also
given in CE epochs of compute: epochs × the mode's per-epoch cost ratio for the small CNN, eager; so
"time to CE's final test CE" does not depend on how busy the machine was during the runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from itra.experiments.runset import Run, by_group, compactness_log, find_runs, finished
from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table, mean_std
from itra.methods import REFERENCE


def first_epoch_at_or_below(run: Run, target: float) -> int | None:
    """The first epoch whose test CE is at or below `target`, or None."""
    return next((row["epoch"] for row in run.metrics
                 if row.get("test_cross_entropy") is not None and row["test_cross_entropy"] <= target), None)


def mode_of(run: Run) -> str:
    """`ce`, or the ITRA pairing: the key of `bench_step.json`'s modes."""
    return REFERENCE if run.config.method == REFERENCE else run.config.pairing


def study_rows(root: Path, epoch_cost: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """A row per group of seeds under `root`, CE first."""
    groups = sorted(by_group(find_runs([root])).values(), key=lambda members: mode_of(members[0]) != REFERENCE)
    reference = [run for members in groups for run in finished(members) if run.config.method == REFERENCE]
    if not reference:
        raise ValueError(f"No finished CE run under {root}: the study compares every mode with CE's final test CE")
    target = statistics.fmean(run.summary["test_cross_entropy"] for run in reference)
    rows = []
    for members in groups:
        mode, ended = mode_of(members[0]), finished(members)
        reached = [first_epoch_at_or_below(run, target) for run in ended]
        epochs = [epoch for epoch in reached if epoch is not None]
        compactness = [float(compactness_log(run)[1][-1]) for run in ended if len(compactness_log(run)[1])]
        row = {"mode": mode, "group": members[0].group, "epochs": members[0].config.epochs,
               **aggregate([run.summary for run in members]), "target_test_ce": target,
               "compactness": list(mean_std(compactness)) if compactness else None,
               "reached": len(epochs), "epoch_reached": statistics.fmean(epochs) if epochs else None}
        if epoch_cost is not None and epochs:
            row["ce_epochs_to_reach"] = row["epoch_reached"] * epoch_cost[mode]
        rows.append(row)
    return rows


def epoch_costs(bench: Path, model: str = "cnn") -> dict[str, float]:
    """Per mode, an epoch's cost in CE epochs (eager, small CNN) from `bench_step.py`'s JSON."""
    result = json.loads(bench.read_text())
    return {row["mode"]: row["epoch_ratio"] for row in result["rows"] if row["model"] == model and not row["compiled"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the --out of the study's sweeps")
    parser.add_argument("--epoch-cost", type=Path, help="bench_step.py's JSON: cost per epoch of each mode")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"), help="where the rows go")
    args = parser.parse_args()
    rows = study_rows(args.root, epoch_costs(args.epoch_cost) if args.epoch_cost else None)

    def reached(row: dict[str, Any]) -> str:
        if row["epoch_reached"] is None:
            return "never"
        cost = f" = {row['ce_epochs_to_reach']:.1f} CE epochs" if "ce_epochs_to_reach" in row else ""
        seeds = "" if row["reached"] == row["seeds"] else f" ({row['reached']} of {row['seeds']} seeds)"
        return f"epoch {row['epoch_reached']:.1f} of {row['epochs']}{cost}{seeds}"

    print(f"CE's final test CE (mean over its seeds): {rows[0]['target_test_ce']:.4f}\n")
    print(markdown_table(
        ["mode", "seeds", "acc (%)", "test CE", "ECE", "compactness (last)", "reaches CE's final test CE"],
        [[r["mode"], format_seeds(r), format_mean_std(r["test_accuracy"], 2), format_mean_std(r["test_cross_entropy"], 3),
          format_mean_std(r["test_ece"], 4), format_mean_std(r["compactness"], 3), reached(r)] for r in rows]))
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
