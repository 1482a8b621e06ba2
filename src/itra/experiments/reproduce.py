"""`itra reproduce PRESET`: a table of the paper, every method under the same loop, seeds and budget.

    itra reproduce fashion-mnist             # Table 1, FMNIST column: CE, LSR, Center, ITRA-c x 3 seeds
    itra reproduce fashion-mnist --smoke     # the same pipeline on a small subset, in seconds (CI)
    itra reproduce cifar10 --model vgg13     # a row of Table 2 (needs the network or --data-dir, and a GPU)

Runs go to `--out` (one directory each, reused when finished, resumed when interrupted); the table,
read back from those run directories, goes to `--out/reproduce-PRESET-MODEL/table.md` and `table.json`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from itra.config import TrainConfig
from itra.data.registry import is_text_dataset
from itra.distributed import setup
from itra.experiments.presets import PRESETS, MethodSetting, Preset, find_preset
from itra.experiments.runs import build_model, load_splits, run
from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table
from itra.experiments.timing import time_steps
from itra.methods import METHODS, REFERENCE, STRENGTH_SYMBOLS, method_fields
from itra.rundir import write_json

__all__ = ["PRESETS", "preset_configs", "print_table", "reproduce", "result_table", "study_name"]


def preset_configs(preset: Preset, seeds: int, smoke: bool, **overrides: Any) -> list[tuple[MethodSetting, TrainConfig]]:
    """One config per method and seed. `overrides` are TrainConfig fields (device, data_dir, epochs...)."""
    configs = []
    for setting in preset.methods:
        for seed in range(seeds):
            values: dict[str, Any] = dict(
                dataset=preset.dataset, model=preset.model, method=setting.method, epochs=preset.epochs,
                batch_size=preset.batch_size, lr=preset.lr, seed=seed, **preset.settings,
            )
            strength = METHODS[setting.method].strength
            if strength is not None:
                values[strength] = setting.strength
            values.update(setting.settings)
            if smoke:
                values.update(epochs=1, train_subset=preset.smoke_train, test_subset=preset.smoke_test)
                if values.get("val_split"):
                    values["val_split"] = preset.smoke_test
            values.update({key: value for key, value in overrides.items() if value is not None})
            configs.append((setting, TrainConfig(**values)))
    return configs


def study_name(name: str, model: str, smoke: bool) -> str:
    return f"reproduce-{name}-{model}{'-smoke' if smoke else ''}"


def reproduce(
    name: str, out: Path, seeds: int = 3, smoke: bool = False, timing_steps: int = 30, progress: bool = True,
    model: str | None = None, **overrides: Any,
) -> dict[str, Any]:
    """Run (or reuse) every method x seed of a preset, time their steps side by side, write the table
    to `out/reproduce-NAME-MODEL/`. Returns the table as a dict."""
    preset = find_preset(name, model)
    if seeds < 1:
        raise ValueError(f"Expected `seeds` to be an integer larger than 0, but got {seeds}")
    out = Path(out)
    configs = preset_configs(preset, seeds, smoke, **overrides)
    splits = load_splits(configs[0][1])
    summaries: dict[str, list[dict[str, Any]]] = {setting.label: [] for setting in preset.methods}
    for index, (setting, config) in enumerate(configs, start=1):
        if progress:
            print(f"[{index}/{len(configs)}] {config.name}", flush=True)
        _, summary = run(config, out, splits, progress=progress)
        summaries[setting.label].append(summary)

    first_seed = [config for _, config in configs if config.seed == 0]
    step_seconds = time_steps(first_seed, splits, lambda c: build_model(c, splits), steps=5 if smoke else timing_steps)
    reference = next(c.name for c in first_seed if c.method == REFERENCE)
    rows = []
    for setting, config in zip(preset.methods, first_seed):
        rows.append({
            "label": setting.label, "method": setting.method, "strength_field": METHODS[setting.method].strength,
            "strength": setting.strength, "paper_accuracy": setting.paper_accuracy,
            "paper_cross_entropy": setting.paper_cross_entropy, **aggregate(summaries[setting.label]),
            "step_seconds": step_seconds[config.name],
            "step_time_ratio": step_seconds[config.name] / step_seconds[reference],
            "runs": [summary["name"] for summary in summaries[setting.label]],
        })
    per_method = method_fields() | {"method", "seed"}
    settings = {key: value for key, value in dataclasses.asdict(first_seed[0]).items() if key not in per_method}
    result = {"preset": name, "paper_table": preset.table, "smoke": smoke, "seeds": seeds, "compared": preset.compared,
              "settings": settings, "rows": rows}
    if setup().is_main:  # under torchrun, rank 0 writes the table
        study_dir = out / study_name(name, preset.model, smoke)
        study_dir.mkdir(parents=True, exist_ok=True)
        write_json(study_dir / "table.json", result)
        (study_dir / "table.md").write_text(result_table(result))
    return result


def result_table(result: dict[str, Any]) -> str:
    """The table with the paper's numbers beside ours, and the compared method (ITRA-c) against each baseline."""
    s = result["settings"]
    budget = [f"{s['epochs']} epochs", f"batch {s['batch_size']}", f"{s.get('optimizer', 'sgd')} lr {s['lr']}"]
    budget += [f"{s['max_length']} tokens"] if is_text_dataset(s["dataset"]) else []
    budget += [f"{name} subset {s[key]}" for name, key in (("train", "train_subset"), ("test", "test_subset")) if s.get(key)]
    caption = (f"{result['paper_table']} on {s['dataset']} with {s['model']}: {', '.join(budget)}, mean ± std over "
               f"{result['seeds']} seeds" + (" (smoke)" if result["smoke"] else ""))

    def paper(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    table = markdown_table(
        ["method", "λ / ε", "seeds", "paper acc", "paper CE", "acc (%)", "test CE", "ECE", "train CE", "step time / CE"],
        [[row["label"], _strength(row), format_seeds(row), paper(row["paper_accuracy"], 2),
          paper(row["paper_cross_entropy"], 3), format_mean_std(row["test_accuracy"], 2),
          format_mean_std(row["test_cross_entropy"], 3), format_mean_std(row["test_ece"], 4),
          format_mean_std(row["train_ce"], 3), f"{row['step_time_ratio']:.2f}"] for row in result["rows"]])
    compared = next((row for row in result["rows"] if row["method"] == result["compared"]), None)
    if compared is None or compared["test_accuracy"] is None:
        return f"{caption}\n\n{table}"
    differences = []
    for row in result["rows"]:
        if row is compared or row["test_accuracy"] is None:
            continue
        cells = [row["label"]]
        for metric, digits in (("test_accuracy", 2), ("test_cross_entropy", 3)):
            (m1, s1), (m0, s0) = compared[metric], row[metric]
            cells += [f"{m1 - m0:+.{digits}f}", "yes" if abs(m1 - m0) > s1 + s0 else "no"]
        differences.append(cells)
    return (f"{caption}\n\n{table}\n{compared['label']} minus each baseline (separated: the mean ± std intervals do "
            f"not overlap):\n\n" + markdown_table(["baseline", "Δ acc", "separated", "Δ test CE", "separated"], differences))


def _strength(row: dict[str, Any]) -> str:
    field = row["strength_field"]
    return "–" if field is None else f"{STRENGTH_SYMBOLS.get(field, field)}={row['strength']:g}"


def print_table(result: dict[str, Any]) -> None:
    print(result_table(result))
    print(json.dumps({"step_seconds": {row["label"]: round(row["step_seconds"], 4) for row in result["rows"]}}))
