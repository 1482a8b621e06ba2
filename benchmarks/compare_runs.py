"""How far the logged numbers of the same runs moved between two versions of the code: rounding, or more.

    python benchmarks/compare_runs.py BEFORE AFTER            # two --out folders holding runs of the same names
    python benchmarks/compare_runs.py benchmarks/runs/mmd-rounding/before benchmarks/runs/mmd-rounding/after

For each run name in both folders: the largest relative change |after - before| / |before| of any number in
`metrics.jsonl` (every epoch's row; timing fields aside), the field it is in, and whether the test accuracy of
every epoch is equal. Prints a table and writes JSON (`--out`, default: AFTER/../compare_runs.json).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from itra import rundir

TIMING = ("elapsed_s",)


def numbers(value, path: str = ""):
    """(path, number) of every number in a metrics row, nested lists included."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")


def compare(before: Path, after: Path) -> dict[str, object]:
    """The largest relative change between two runs of one name, where, and whether test accuracy is equal."""
    rows = rundir.read_metrics(before), rundir.read_metrics(after)
    if [row["epoch"] for row in rows[0]] != [row["epoch"] for row in rows[1]]:
        raise SystemExit(f"{before.name}: the two runs logged different epochs")
    largest, where = 0.0, None
    for old_row, new_row in zip(*rows):
        old, new = (dict(numbers({k: v for k, v in row.items() if k not in TIMING})) for row in (old_row, new_row))
        for field in old.keys() & new.keys():
            change = abs(new[field] - old[field]) / abs(old[field]) if old[field] else abs(new[field])
            if not change <= largest and not math.isnan(change):
                largest, where = change, f"epoch {old_row['epoch']} {field}"
    same_accuracy = all(a["test_accuracy"] == b["test_accuracy"] for a, b in zip(*rows))
    return {"run": before.name, "largest_relative_change": largest, "where": where, "test_accuracy_equal": same_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = sorted({d.name for d in args.before.iterdir() if d.is_dir()} & {d.name for d in args.after.iterdir() if d.is_dir()})
    if not names:
        raise SystemExit(f"no run name is in both {args.before} and {args.after}")
    result = [compare(args.before / name, args.after / name) for name in names]
    print("| run | largest relative change | where | test accuracy equal |\n|---|---|---|---|")
    for row in result:
        print(f"| {row['run']} | {row['largest_relative_change']:.1e} | {row['where']} | {row['test_accuracy_equal']} |")
    out = args.out or args.after.parent / "compare_runs.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
