"""The robust-loss study's table, read back from the run directories of its `itra sweep` commands.

    python benchmarks/robust_loss_study.py /work/robust      # one sub-folder per setting (clean, noise, ...)

Every sub-folder of ROOT is one stress setting (the `--out` of its sweeps). For each setting and
each variant of the matching loss (`experiments.labels.method_label`: method, bandwidth, estimator, λ) it
prints the seeds that finished, those that collapsed or failed (counted, never averaged in), and
accuracy, test CE and ECE as mean ± std over the finished seeds; `--json` gets the same rows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from itra.experiments.runset import by_group, find_runs
from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table
from itra.experiments.labels import method_label


def study_rows(root: Path) -> list[dict]:
    """A row per (setting, group of seeds) under `root`."""
    rows = []
    for setting in sorted(path for path in root.iterdir() if path.is_dir()):
        if not any(setting.rglob("summary.json")):  # no run of this setting has ended yet
            continue
        for members in by_group(find_runs([setting])).values():
            config = members[0].config
            rows.append({"setting": setting.name, "variant": method_label(config), "batch_size": config.batch_size,
                         "label_noise": config.label_noise, "group": config.group,
                         **aggregate([run.summary for run in members])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a folder with one sub-folder of runs per setting")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"), help="where the rows go")
    args = parser.parse_args()
    rows = study_rows(args.root)
    print(markdown_table(
        ["setting", "variant", "batch", "noise", "seeds", "acc (%)", "test CE", "ECE"],
        [[r["setting"], r["variant"], r["batch_size"], f"{r['label_noise']:g}", format_seeds(r),
          format_mean_std(r["test_accuracy"], 2), format_mean_std(r["test_cross_entropy"], 3),
          format_mean_std(r["test_ece"], 4)] for r in rows]))
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
