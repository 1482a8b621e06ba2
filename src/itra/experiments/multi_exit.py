"""`itra reproduce layerwise-fmnist | layerwise-wordnet`: standard, aligned and separate-head training, with CE
and with ITRA-c, measured layer by layer (the claims of Jiang, Zhou and Zhu, 2024; `itra.exits`).

    itra reproduce layerwise-fmnist                 # the small ViT on Fashion-MNIST: 2 methods x 3 exit modes x 3 seeds
    itra reproduce layerwise-wordnet --smoke        # MiniLM on WordNet glosses, the pipeline in a minute

Every run is trained (or reused, or resumed: `runs.run`) into `--out`, seed by seed so that a partial study already
holds every config once, then measured from its checkpoint on its own test set (`layerwise.measure_run`, into
`--out/<study>/similarity/<run>/`). The study folder gets `table.md` and `table.json` (per config: final accuracy,
per-exit accuracy of the shared and the separate heads, cosine and CKA with the last layer, their correlation,
saturation, early exit) and two figures, `exit-accuracy.png` and `early-exit.png`; all read back from run
directories.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from itra import rundir
from itra.config import TrainConfig
from itra.exits import EXIT_MODES
from itra.distributed import setup
from itra.experiments.layer_figures import plot_early_exit, plot_exit_accuracy
from itra.experiments.layerwise import aggregate_layers, markdown_layers_table, measure_run
from itra.experiments.launchers import Launch
from itra.experiments.presets import LAYERWISE_PRESETS, LayerwisePreset
from itra.experiments.runs import LoadedSplits, run_all
from itra.experiments.study import preset_config, study_name
from itra.experiments.table import aggregate, format_mean_std, format_seeds, markdown_table
from itra.methods import METHODS
from itra.experiments.labels import strength_label
from itra.checks import check_count
from itra.errors import BadValue

EARLY_EXIT_SHOWN = (0.8, 0.9, 0.99)  # confidence thresholds of the table (the figure has them all)


def layerwise_configs(preset: LayerwisePreset, seeds: int, smoke: bool, **overrides: Any) -> list[TrainConfig]:
    """Every arm, seed 0 of all first, then seed 1, ... `overrides`: TrainConfig fields (device, epochs, ...)."""
    check_count("seeds", seeds)
    return [preset_config(preset, seed, smoke, arm, overrides) for seed in range(seeds) for arm in preset.arms]


def config_label(config: TrainConfig) -> str:
    """`CE, standard`, `ITRA-c λ=0.6, separate heads`, `ITRA-c λ=0.6, aligned (shared head), matched at every exit`."""
    method = " ".join(filter(None, (METHODS[config.method].label, strength_label(config))))
    return f"{method}, {EXIT_MODES[config.exits].label}" + (", matched at every exit" if config.match_at == "every" else "")


def reproduce_layerwise(name: str, out: Path, seeds: int = 3, smoke: bool = False, progress: bool = True,
                        launch: Launch = Launch(), **overrides: Any) -> dict[str, Any]:
    """Train and measure every config of the preset `name`; write the study's table and figures to
    `out/reproduce-NAME[-smoke]/`; returns the table as a dict. `launch`: how the runs are trained (`runs.run_all`);
    each is measured in this process as the runs end, in the order of the configs."""
    if name not in LAYERWISE_PRESETS:
        raise BadValue(f"Unknown layer-wise preset {name!r}; expected one of: {', '.join(LAYERWISE_PRESETS)}")
    out = Path(out)
    study_dir = out / study_name(name, smoke=smoke)
    configs = layerwise_configs(LAYERWISE_PRESETS[name], seeds, smoke, **overrides)
    splits = LoadedSplits()
    main = setup().is_main  # under torchrun every rank trains; rank 0 alone measures and writes
    summaries: dict[str, list[dict[str, Any]]] = {}
    measured: dict[str, list[dict[str, Any]]] = {}
    groups: dict[str, str] = {}  # label: the run name without its seed
    for config, run_dir, summary in run_all(configs, out, progress, splits, launch):
        label = config_label(config)
        groups[label] = config.group
        summaries.setdefault(label, []).append(summary)
        measured.setdefault(label, [])
        if main and not rundir.is_failed(summary):
            measured[label].append(measure_run(run_dir, study_dir / "similarity", splits=splits(config)))
    rows = {label: {"config": groups[label], **aggregate(summaries[label]),
                    "layers": aggregate_layers(layers) if layers else None}
            for label, layers in measured.items()}
    result = {"preset": name, "smoke": smoke, "seeds": seeds, "settings": _settings(configs[0]), "rows": rows}
    if not main:
        return result
    study_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_json(study_dir / "table.json", result)
    (study_dir / "table.md").write_text(layerwise_markdown(result))
    layered = {label: row["layers"] for label, row in rows.items() if row["layers"] is not None}
    if layered:
        plot_exit_accuracy(layered, study_dir / "exit-accuracy.png")
        plot_early_exit({label: layers["early_exit"][trained_head(layers)] for label, layers in layered.items()},
                        study_dir / "early-exit.png")
    return result


def trained_head(layers: dict[str, Any]) -> str:
    """The head kind a config's exits are read with in its early exit: its own heads where it has them."""
    return "separate" if "separate" in layers["early_exit"] else "shared"


def by_distance(matrix: list[list[float | None]]) -> list[float | None]:
    """The mean similarity of layer pairs d = 1..L-1 apart, from an L x L matrix (None where no pair is defined):
    how fast layers' representations drift apart with depth (the second claim of Jiang et al.)."""
    size = len(matrix)
    means = []
    for distance in range(1, size):
        values = [matrix[i][i + distance] for i in range(size - distance) if matrix[i][i + distance] is not None]
        means.append(sum(values) / len(values) if values else None)
    return means



def _settings(config: TrainConfig) -> dict[str, Any]:
    keys = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "train_subset", "test_subset", "max_length")
    return {key: getattr(config, key) for key in keys}


def layerwise_markdown(result: dict[str, Any]) -> str:
    """Per config: the last exit's metrics, the cosine-CKA correlation and the mean saturation layer; then the
    per-exit accuracies (`layerwise.markdown_layers_table`) and early exit at a few confidence thresholds."""
    s = result["settings"]
    caption = (f"{result['preset']}: {s['model']} on {s['dataset']}, {s['epochs']} epochs, batch {s['batch_size']}, "
               f"{s['optimizer']} lr {s['lr']}, train subset {s['train_subset']}, test subset {s['test_subset']}; "
               f"mean ± std over {result['seeds']} seeds" + (" (smoke)" if result["smoke"] else ""))
    rows = result["rows"]
    layered = {label: row["layers"] for label, row in rows.items() if row["layers"] is not None}

    def layer_stat(label: str, *keys: str) -> str:
        value: Any = layered.get(label)
        for key in keys:
            value = None if value is None else value.get(key)
        return format_mean_std(value, 2)

    final = markdown_table(
        ["config", "seeds", "acc (%), last exit", "test CE", "ECE", "cosine–CKA r", "saturation layer (shared head)",
         "saturation layer (own heads)"],
        [[label, format_seeds(row), format_mean_std(row["test_accuracy"], 2), format_mean_std(row["test_cross_entropy"], 3),
          format_mean_std(row["test_ece"], 4), layer_stat(label, "cosine_cka_correlation"),
          layer_stat(label, "saturation", "shared"), layer_stat(label, "saturation", "separate")]
         for label, row in rows.items()])
    if not layered:
        return f"{caption}\n\n{final}"
    early = []
    for label, layers in layered.items():
        for kind, curve in layers["early_exit"].items():
            points = [point for point in curve if point["threshold"] in EARLY_EXIT_SHOWN]
            early.append([label, kind, *(f"{p['accuracy']:.1f} % at {p['relative_compute']:.2f}" for p in points)])
    distances = []
    for label, layers in layered.items():
        for name, key in (("cosine", "cosine_matrix"), ("CKA", "cka")):
            distances.append([label, name, *("–" if v is None else f"{v:.3f}" for v in by_distance(layers[key]))])
    depth = max(len(layers["width"]) for layers in layered.values())
    distance_table = markdown_table(["config", "similarity", *(f"d = {d}" for d in range(1, depth))], distances)
    return (f"{caption}\n\n{final}\nTest accuracy (%) of each exit, mean ± std over seeds:\n\n"
            f"{markdown_layers_table(layered)}\nEarly exit (accuracy at relative compute, the mean exit layer / L) by the "
            f"max softmax probability:\n\n" + markdown_table(
                ["config", "heads", *(f"threshold {t:g}" for t in EARLY_EXIT_SHOWN)], early)
            + "\nMean similarity of layers d apart (mean over seeds of the L x L matrices):\n\n" + distance_table)
