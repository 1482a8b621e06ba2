"""Runs per hour of a 12-run study trained one run at a time and `--jobs 2` at a time, side by side in one process.

    python benchmarks/bench_jobs.py                          # fashion-mnist --smoke (4 methods x 3 seeds), 3 rounds
    python benchmarks/bench_jobs.py --preset digits --rounds 1 --out /tmp/jobs.json   # offline, checks that it runs

The study is `itra reproduce PRESET --smoke`'s runs (`reproduce.preset_configs`), trained by `runs.run_all` as the CLI
trains them, with `--epochs` epochs each, into a fresh folder every time; what is timed is the whole study, wall clock:
starting the workers, loading the data in each, training, evaluating and writing the runs. Every round trains it once
per setting, in turn, so that a machine that is busier in one round slows all settings alike; the table gives the median
round. The settings: one run at a time with all the cores (what `itra sweep` did before `--jobs`), one at a time with
`--threads-per-run` threads, and `--jobs 2` (and more, with `--jobs`) with as many threads each. The runs of the last
two are the same bit for bit (tests/experiments/test_launchers.py), so only their speed differs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from itra.experiments.launchers import Launch, cores
from itra.experiments.presets import find_preset
from itra.experiments.reproduce import preset_configs
from itra.experiments.runs import run_all
from itra.experiments.timing import machine_info


def study_seconds(configs: list, launch: Launch) -> float:
    """Wall seconds to train every config from scratch through `launch`."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        for _ in run_all(configs, Path(out), progress=False, launch=launch):
            pass
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion-mnist", help="a table preset; its --smoke runs (default: fashion-mnist)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method: 4 methods x 3 = 12 runs (default: 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--train-subset", type=int, help="training images per run (default: the preset's smoke size; "
                        "runs of a few seconds measure mostly the workers' start, a real study's runs take minutes)")
    parser.add_argument("--threads-per-run", type=int, default=1, help="threads of each run (default: 1)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[2], help="runs at a time to compare with 1 (default: 2)")
    parser.add_argument("--rounds", type=int, default=3, help="times every setting trains the study (default: 3)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    configs = [config for _, config in preset_configs(find_preset(args.preset), args.seeds, smoke=True,
                                                      epochs=args.epochs, train_subset=args.train_subset, device="cpu")]
    settings = {"1 run at a time, all cores": Launch(jobs=1, threads_per_run=cores()),
                **{f"{jobs} at a time": Launch(jobs=jobs, threads_per_run=args.threads_per_run)
                   for jobs in sorted({1, *args.jobs})}}
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, launch in settings.items():
            seconds[name].append(study_seconds(configs, launch))
    load_after = os.getloadavg()
    rows = [{"setting": name, "jobs": launch.jobs, "threads_per_run": launch.threads, "seconds": seconds[name],
             "median_s": statistics.median(seconds[name]), "runs_per_hour": len(configs) * 3600 / statistics.median(seconds[name])}
            for name, launch in settings.items()]
    one = next(row for row in rows if row["setting"] == "1 at a time")
    print(f"{args.preset} --smoke, {len(configs)} runs of {args.epochs} epochs on {configs[0].train_subset} images, "
          f"{args.rounds} round(s), {cores()} cores; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (other work on the machine slows "
          "every setting, and those with more jobs most)\n")
    print("| setting | jobs | threads per run | study (s), median | runs per hour | x 1 at a time |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['jobs']} | {row['threads_per_run']} | {row['median_s']:.1f} | "
              f"{row['runs_per_hour']:.0f} | {row['runs_per_hour'] / one['runs_per_hour']:.2f} |")
    args.out.write_text(json.dumps({"preset": args.preset, "runs": len(configs), "epochs": args.epochs,
                                    "train_subset": configs[0].train_subset,
                                    "rounds": args.rounds, "cores": cores(), "load_average": [load_before, load_after],
                                    "machine": machine_info(torch.device("cpu")), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
