"""`itra reproduce PRESET`: a table of the paper, every method under the same loop, seeds and budget.

    itra reproduce fashion-mnist             # Table 1, FMNIST column: CE, LSR, Center, ITRA-c x 3 seeds
    itra reproduce fashion-mnist --smoke     # the same pipeline on a small subset, in seconds (CI)
    itra reproduce cifar10 --model vgg13     # a row of Table 2 (needs the network or --data-dir, and a GPU)

Runs go to `--out` (one directory each, reused when finished, resumed when interrupted); the table,
read back from those run directories, goes to `--out/reproduce-PRESET-MODEL/table.md` and `table.json`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from itra import rundir
from itra.config import TrainConfig
from itra.data.registry import is_text_dataset
from itra.distributed import setup
from itra.experiments.launchers import Launch
from itra.experiments.presets import PRESETS, MethodSetting, Preset, find_preset
from itra.experiments.study import preset_config, study_name
from itra.experiments.runs import LoadedSplits, build_model, check_run_dirs, find_run, run_all
from itra.experiments.table import SCALED_METRICS, aggregate, format_mean_std, format_seeds, markdown_table, mean_std, separated
from itra.experiments.timing import time_steps
from itra.methods import METHODS, REFERENCE, method_fields
from itra.experiments.labels import strength_text
from itra.rundir import write_json
from itra.checks import check_count
from itra.errors import BadValue, MissingFile

__all__ = ["PRESETS", "preset_configs", "print_table", "reproduce", "result_table", "study_name"]


def preset_configs(preset: Preset, seeds: int, smoke: bool, **overrides: Any) -> list[tuple[MethodSetting, TrainConfig]]:
    """One config per method and seed. `overrides` are TrainConfig fields (device, data_dir, epochs...)."""
    configs = []
    for setting in preset.methods:
        strength = METHODS[setting.method].strength
        fields = {"method": setting.method, **({strength: setting.strength} if strength is not None else {}),
                  **setting.settings}
        configs += [(setting, preset_config(preset, seed, smoke, fields, overrides)) for seed in range(seeds)]
    return configs


def reproduce(
    name: str, out: Path, seeds: int = 3, smoke: bool = False, timing_steps: int = 30, progress: bool = True,
    model: str | None = None, table_only: bool = False, launch: Launch = Launch(), **overrides: Any,
) -> dict[str, Any]:
    """Run (or reuse) every method x seed of a preset, time their steps side by side, write the table
    to `out/reproduce-NAME-MODEL/`. Returns the table as a dict. With `table_only`, nothing is trained: the table
    reads the runs that have ended, lists the others under `not_run` (a study run in parts), and keeps the step times
    of the last table (`reuse_step_times`). `launch`: how the runs are trained (`runs.run_all`); the step times are
    measured afterwards in this process, whatever trained the runs.

    With a validation split (`val_split` in the preset's settings) every row also has its test metrics after
    temperature scaling, the CE and compared rows each get an early-stopping row ("+ early stopping": the epoch
    of lowest validation CE of the same runs, no extra training), and the study folder gets `test-ce.png`
    (Figure 2: test CE per epoch). With `preset.modes`, every run's features are measured for the modes of its
    labels (`modes.measure_study`) and the table gets their section; with `preset.ood`, every run's OOD detection and
    retrieval are measured (`ood.measure_groups`, cached as `<study>/ood/<run>.json`) and the table gets their section."""
    preset = find_preset(name, model)
    check_count("seeds", seeds)
    out = Path(out)
    configs = preset_configs(preset, seeds, smoke, **overrides)
    if table_only:  # read first: with no run ended there is no table to write, and nothing is loaded or written
        check_run_dirs([config for _, config in configs], out)  # otherwise run_all checks them
        ended = [(config, out / config.name, find_run(out / config.name, config)[0]) for _, config in configs]
        if all(summary is None for *_, summary in ended):
            raise MissingFile(f"--table-only: no run of {name} has ended under {out}; run the study without "
                              "--table-only first (or give its --out)")
    loaded = LoadedSplits()
    if not table_only:
        ended = list(run_all([config for _, config in configs], out, progress, loaded, launch))
    splits = loaded(configs[0][1])  # after the runs: worker processes load their own
    summaries: dict[str, list[dict[str, Any]]] = {setting.label: [] for setting in preset.methods}
    run_dirs: dict[str, list[Path]] = {setting.label: [] for setting in preset.methods}
    not_run = [config.name for config, _, summary in ended if summary is None]
    for (setting, _), (_, run_dir, summary) in zip(configs, ended):
        if summary is not None:
            summaries[setting.label].append(summary)
            run_dirs[setting.label].append(run_dir)

    first_seed = [config for _, config in configs if config.seed == 0]
    study_dir = out / study_name(name, preset.model, smoke)
    reference = next(c.name for c in first_seed if c.method == REFERENCE)
    timed = lambda chosen: time_steps(chosen, splits, lambda c: build_model(c, splits), steps=5 if smoke else timing_steps)
    step_seconds = (reuse_step_times(study_dir / "table.json", preset, first_seed, reference, timed) if table_only
                    else timed(first_seed))
    rows = []
    for setting, config in zip(preset.methods, first_seed):
        row = {
            "label": setting.label, "method": setting.method, "strength_field": METHODS[setting.method].strength,
            "strength": setting.strength, "paper_accuracy": setting.paper_accuracy,
            "paper_cross_entropy": setting.paper_cross_entropy, "grid": setting.grid,
            **aggregate(summaries[setting.label]), "compactness": final_compactness(summaries[setting.label], run_dirs[setting.label]),
            "step_seconds": step_seconds[config.name],
            "step_time_ratio": step_seconds[config.name] / step_seconds[reference],
            "runs": [summary["name"] for summary in summaries[setting.label]],
        }
        rows.append(row)
        if config.val_split and summaries[setting.label] and (setting.method == REFERENCE or setting.label == preset.compared_label):
            rows.append(early_stopping_row(row, summaries[setting.label]))
    rows += picked_rows(preset, rows)
    per_method = method_fields() | {"method", "seed"} | {key for s in preset.methods for key in s.settings}
    settings = {key: value for key, value in first_seed[0].to_dict().items() if key not in per_method}
    result = {"preset": name, "paper_table": preset.table, "smoke": smoke, "seeds": seeds, "compared": preset.compared,
              "settings": settings, "rows": rows, "not_run": not_run, "step_seconds": step_seconds}
    if setup().is_main:  # under torchrun, rank 0 measures and writes
        study_dir.mkdir(parents=True, exist_ok=True)
        if preset.modes:
            from itra.experiments.modes import measure_study

            result["modes"] = measure_study(preset, run_dirs, splits, study_dir / "modes", progress)
        if preset.ood:
            from itra.experiments.ood import measure_groups

            result["ood"] = measure_groups(run_dirs, study_dir / "ood", progress=progress)
        if first_seed[0].val_split:
            from itra.experiments.figures import figure_test_ce_per_epoch

            figure_test_ce_per_epoch(figure_panels(preset, run_dirs), study_dir / "test-ce.png")
        reference, swept = lambda_grid(preset)
        if len(swept) > 1:
            from itra.experiments.figures import figure_ce_vs_lambda
            from itra.experiments.runset import find_runs

            figure_ce_vs_lambda(find_runs([d for s in (*reference, *swept) for d in run_dirs[s.label]]),
                                study_dir / "ce-vs-lambda.png",
                                keys=("test_cross_entropy", "ts_test_cross_entropy") if first_seed[0].val_split else
                                ("test_cross_entropy",))
        write_json(study_dir / "table.json", result)
        (study_dir / "table.md").write_text(result_table(result))
    return result


def reuse_step_times(previous: Path, preset: Preset, first_seed: list[TrainConfig], reference: str,
                     timed: Callable[[list[TrainConfig]], dict[str, float]]) -> dict[str, float]:
    """The step times of the last table at `previous` (a table regenerated on a busy machine keeps the times measured
    on a quiet one); the runs it lacks are timed now side by side with the reference, and their seconds set to the
    ratio measured now times the reference's earlier seconds. Without an earlier table with the reference, all are timed."""
    if not previous.is_file():
        return timed(first_seed)
    known, by_label = previous_step_seconds(previous)
    for setting, config in zip(preset.methods, first_seed):
        if config.name not in known and setting.label in by_label:
            known[config.name] = by_label[setting.label]
    if reference not in known:
        return timed(first_seed)
    missing = [config for config in first_seed if config.name not in known]
    if missing:
        now = timed([next(c for c in first_seed if c.name == reference), *missing])
        known.update({c.name: now[c.name] / now[reference] * known[reference] for c in missing})
    return {config.name: known[config.name] for config in first_seed}


def previous_step_seconds(path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The step times of the table at `path`: {run name: seconds} and {row label: seconds} (tables before the first
    held them by row label only), each a number > 0; a file that is not such a table is one line naming it."""
    table = rundir.read_json(path)
    rows = table.get("rows", []) if isinstance(table, dict) else None
    known = (table.get("step_seconds") or {}) if isinstance(table, dict) else None
    if not (isinstance(known, dict) and isinstance(rows, list) and all(isinstance(row, dict) for row in rows)):
        raise BadValue(f"{path}: not a table of itra reproduce (a JSON object of rows and step times); delete it, and "
                       "the step times are measured again")
    by_label = {row.get("label"): row.get("step_seconds") for row in rows if not row.get("early_stopping")}
    for name, seconds in (*known.items(), *by_label.items()):
        if not (isinstance(name, str) and rundir.is_number(seconds) and seconds > 0):
            raise BadValue(f"{path}: the step time of {name!r} is {seconds!r}, not a number of seconds > 0; delete it, "
                           "and the step times are measured again")
    return known, by_label


def final_compactness(summaries: list[dict[str, Any]], run_dirs: list[Path]) -> list[float] | None:
    """Mean ± std over the finished runs of their last compactness probe (`metrics.compactness`: same-class over
    all-pairs feature distance of two fixed training batches; lower is more compact), None where a run has none.
    The last probe is read from `metrics.jsonl`: a summary holds its last epoch's probes only, none when no probe step
    fell in that epoch (80 epochs of 8 steps, a probe every 50: the last at step 600, in epoch 75)."""
    last = []
    for summary, run_dir in zip(summaries, run_dirs):
        if summary.get("status") == "finished":
            probes = [probe for row in rundir.read_metrics(run_dir, warn=False) for probe in row.get("compactness") or []]
            if not probes:
                return None
            last.append(probes[-1][1])
    return list(mean_std(last)) if last else None


def early_stopping_row(row: dict[str, Any], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of the same runs stopped at their epoch of lowest validation CE (`train.early_stopping`)."""
    stopped = [{"status": summary["status"], **summary.get("early_stopping", {})} for summary in summaries]
    return {**row, "label": f"{row['label']} + early stopping", "early_stopping": True,
            **aggregate(stopped, ("epoch", "test_accuracy", "test_cross_entropy", "test_ece", *SCALED_METRICS)),
            "train_ce": None, "compactness": None}


def main_setting(preset: Preset, method: str) -> MethodSetting | None:
    """`method`'s main row: its first without settings of its own and not a grid point (None if it has none)."""
    return next((s for s in preset.methods if s.method == method and not s.grid and not s.settings), None)


def strength_grid(preset: Preset, method: str) -> list[MethodSetting]:
    """`method`'s main row and its grid rows, by strength ([] without a main row)."""
    main = main_setting(preset, method)
    if main is None:
        return []
    return sorted((s for s in preset.methods if s is main or (s.grid and s.method == method and not s.settings)),
                  key=lambda s: s.strength)


def lambda_grid(preset: Preset) -> tuple[list[MethodSetting], list[MethodSetting]]:
    """The rows of the λ figures: the reference (CE) rows, and the compared method's main row with its λ grid,
    by λ (a single compared row when the preset has no grid)."""
    return [s for s in preset.methods if s.method == REFERENCE], strength_grid(preset, preset.compared)


def picked_rows(preset: Preset, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each method at its best strength, as a user would tune it: per method with a strength grid, a copy of the row
    (of `rows`) of the grid's strength whose runs have the lowest mean validation CE (the final model's, before
    temperature scaling), labelled "<main label>, picked on validation (λ=...)". The strengths compete on equal terms:
    those with a validation CE over the most seeds any of them has (a study run in parts picks among those run so far;
    `picked_from` lists them); a method with fewer than two is left out."""
    by_label = {row["label"]: row for row in rows}
    picked = []
    for method in dict.fromkeys(s.method for s in preset.methods if s.grid):
        grid = strength_grid(preset, method)
        measured = [by_label[s.label] for s in grid if s.label in by_label and by_label[s.label].get("val_cross_entropy")]
        most = max((row["seeds"] for row in measured), default=0)
        candidates = [row for row in measured if row["seeds"] == most]
        if len(candidates) < 2:
            continue
        best = min(candidates, key=lambda row: row["val_cross_entropy"][0])
        picked.append({**best, "label": f"{main_setting(preset, method).label}, picked on validation ({_strength(best)})",
                       "grid": False, "picked_from": [row["strength"] for row in candidates]})
    return picked


def figure_panels(preset: Preset, run_dirs: dict[str, list[Path]]) -> list[tuple[str, str, dict[str, list[Path]]]]:
    """Figure 2's panels: test CE per epoch of every method, the same after temperature scaling, and the compared
    method at every λ of its grid with CE beside it (when the preset has a grid)."""
    methods = {s.label: run_dirs[s.label] for s in preset.methods if not s.grid}
    panels = [("Test CE", "test_cross_entropy", methods), ("Test CE after temperature scaling", "ts_test_cross_entropy",
                                                           methods)]
    reference, swept = lambda_grid(preset)
    grid = {**{s.label: run_dirs[s.label] for s in reference},
            **{f"{preset.compared_label} λ={s.strength:g}": run_dirs[s.label] for s in swept}}
    if len(grid) > 2:
        panels.append((f"{preset.compared_label} by λ", "test_cross_entropy", grid))
    return panels


def result_table(result: dict[str, Any]) -> str:
    """The table with the paper's numbers beside ours (when it has any), the test metrics after temperature
    scaling (when the runs have a validation split), and the compared method (ITRA-c) against each baseline."""
    s = result["settings"]
    budget = [f"{s['epochs']} epochs", f"batch {s['batch_size']}", f"{s.get('optimizer', 'sgd')} lr {s['lr']}"]
    budget += [f"{s['max_length']} tokens"] if is_text_dataset(s["dataset"]) else []
    budget += [f"{name} subset {s[key]}" for name, key in (("train", "train_subset"), ("test", "test_subset")) if s.get(key)]
    budget += [f"validation split {s['val_split']}"] if s.get("val_split") else []
    caption = (f"{result['paper_table']} on {s['dataset']} with {s['model']}: {', '.join(budget)}, mean ± std over "
               f"{result['seeds']} seeds" + (" (smoke)" if result["smoke"] else ""))
    rows = result["rows"]
    with_paper = any(row["paper_accuracy"] is not None or row["paper_cross_entropy"] is not None for row in rows)
    scaled = any(row.get("ts_test_cross_entropy") is not None for row in rows)

    def paper(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    header = ["method", "λ / ε", "seeds"] + ["paper acc", "paper CE"] * with_paper + ["acc (%)", "test CE", "ECE"]
    header += ["test CE after TS", "ECE after TS", "T"] * scaled + ["train CE", "compactness", "step time / CE"]
    lines = []
    for row in rows:
        cells = [row["label"] + (f" (epoch {row['epoch'][0]:.1f})" if row.get("early_stopping") else ""),
                 _strength(row), format_seeds(row)]
        cells += [paper(row["paper_accuracy"], 2), paper(row["paper_cross_entropy"], 3)] * with_paper
        cells += [format_mean_std(row["test_accuracy"], 2), format_mean_std(row["test_cross_entropy"], 3),
                  format_mean_std(row["test_ece"], 4)]
        cells += [format_mean_std(row.get("ts_test_cross_entropy"), 3), format_mean_std(row.get("ts_test_ece"), 4),
                  format_mean_std(row.get("temperature"), 3)] * scaled
        cells += [format_mean_std(row["train_ce"], 3), format_mean_std(row.get("compactness"), 3),
                  f"{row['step_time_ratio']:.2f}"]
        lines.append(cells)
    table = markdown_table(header, lines)
    compared = next((row for row in rows if row["method"] == result["compared"] and not row.get("early_stopping")), None)
    if compared is not None and compared["test_accuracy"] is not None:
        table += f"\n{compared['label']} minus each other row (separated: the mean ± std intervals do not overlap):\n\n"
        table += differences_table(compared, [row for row in rows if row is not compared], scaled)
    if result.get("modes"):
        from itra.experiments.modes import modes_table

        table += "\n" + modes_table(result["modes"])
    if result.get("ood"):
        from itra.experiments.ood import ood_table

        table += "\n" + ood_table(result["ood"])
    missing = result.get("not_run", [])
    if missing:
        table += (f"\nNot run yet ({len(missing)}; the same command without --table-only trains them): "
                  + ", ".join(missing) + "\n")
    return f"{caption}\n\n{table}"


def differences_table(compared: dict[str, Any], rows: list[dict[str, Any]], scaled: bool) -> str:
    """Δ of `compared` minus each row in accuracy and test CE (and test CE after TS), and whether the mean ± std
    intervals are apart."""
    metrics = [("test_accuracy", "Δ acc", 2), ("test_cross_entropy", "Δ test CE", 3)]
    metrics += [("ts_test_cross_entropy", "Δ test CE after TS", 3)] * scaled
    lines = []
    for row in rows:
        if row["test_accuracy"] is None:
            continue
        cells = [row["label"]]
        for metric, _, digits in metrics:
            if compared.get(metric) is None or row.get(metric) is None:
                cells += ["–", "–"]
                continue
            verdict = ("yes" if separated(compared, row, metric) else "no") if min(compared["seeds"], row["seeds"]) > 1 \
                else "– (1 seed)"
            cells += [f"{compared[metric][0] - row[metric][0]:+.{digits}f}", verdict]
        lines.append(cells)
    header = ["other row"] + [part for _, name, _ in metrics for part in (name, "separated")]
    return markdown_table(header, lines)


def _strength(row: dict[str, Any]) -> str:
    return strength_text(row["strength_field"], row["strength"]) or "–"


def print_table(result: dict[str, Any]) -> None:
    print(result_table(result))
    print(json.dumps({"step_seconds": {row["label"]: round(row["step_seconds"], 4) for row in result["rows"]}}))
