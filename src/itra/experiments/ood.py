"""`itra ood`: what compact features buy and cost after training: out-of-distribution (OOD) detection and retrieval.

    itra ood runs/ --out ood/             # every finished run under runs/, and a table over seeds (ood/ood.md)
    itra reproduce ood-fmnist             # CE, Center, ITRA-c and its λ = 0 control x 3 seeds, then this table

For each finished run, its model at its checkpoint (the last epoch) on its own data (`run_splits`: the training
subset, validation split and label noise it trained with, its test set):

- detection: every score of `itra.ood.SCORES` of the in-distribution (ID) test set against each OOD set, AUROC and
  FPR at 95 % TPR (`itra.ood`). MSP after TS divides the logits by the temperature fitted on the run's validation
  split (its summary's, of the same last epoch); Mahalanobis and kNN are fitted on its training features.
- retrieval of the ID test set by its own features: precision@1, R-precision, MAP@R (`itra.retrieval`).
- the ID test accuracy of the same logits.

The OOD sets (`OOD_SETS`), each at most as large as the ID test set (a fixed random subset of a larger one):
"held-out", the test images of the classes a class-subset dataset leaves out (`data.registry.CLASS_SUBSETS`: near
OOD, same domain); "digits" (far OOD) and "noise", made at the run's image shape and normalised like its training
images (`data.ood_sets`); or any registered image dataset, its test set mapped from its own pixel range onto the
run's, which must have the run's image shape.

Each run's measures are written once, to `<folder>/<run>.json`, so that a table regenerates without checkpoints
(committed runs keep none); a file measured with other sets, another k or at an earlier epoch of the run is measured
again, and one of another run, or damaged, is one line naming it (`measures_problem`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

from itra import rundir
from itra.data import Splits
from itra.data.batches import ordered_batches, subset
from itra.data.ood_sets import digits_like, like_training_images, pixel_range, uniform_noise
from itra.data.registry import CLASS_SUBSETS, canonical_dataset_name, held_out_set, is_text_dataset, load_dataset
from itra.data.splits import run_splits
from itra.device import resolve_device
from itra.experiments.runs import LoadedSplits, build_model
from itra.experiments.runset import by_group, find_runs
from itra.experiments.table import format_mean_std, markdown_table, mean_std
from itra.experiments.labels import method_label
from itra.ood import KNN_K, SCORES, OODScorer, auroc, fpr_at_tpr
from itra.retrieval import METRICS as RETRIEVAL, retrieval_metrics
from itra.errors import BadValue, MissingFile

OOD_SETS = {"held-out": "near OOD: the classes left out of training",
            "digits": "far OOD: scikit-learn's digits, resized",
            "noise": "uniform noise"}
DETECTION = {"auroc": ("AUROC (%)", "higher is better"), "fpr95": ("FPR at 95 % TPR (%)", "lower is better")}


def default_sets(dataset: str) -> list[str]:
    """The built-in OOD sets that apply to a run of `dataset`: "held-out" for a class-subset dataset, "digits" unless
    it is the digits themselves, and "noise"."""
    name = canonical_dataset_name(dataset)
    return (["held-out"] * (name in CLASS_SUBSETS) + ["digits"] * (name != "digits") + ["noise"])


def check_sets(sets: Sequence[str]) -> list[str]:
    """`sets` without repeats; each a built-in set or a registered image dataset (one line otherwise)."""
    for name in sets:
        if name not in OOD_SETS and is_text_dataset(name):  # canonical_dataset_name refuses an unknown name
            raise BadValue(f"OOD set {name!r} is a text dataset; itra ood measures image models: give "
                           f"{', '.join(OOD_SETS)} or an image dataset")
    return list(dict.fromkeys(sets))


@torch.no_grad()
def outputs(model: torch.nn.Module, dataset: Dataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Features (N, D), logits (N, K) and labels (N,) of `dataset` by `model` in eval mode, on the CPU."""
    model.eval()
    features, logits, labels = [], [], []
    for images, y in ordered_batches(dataset, 1000):
        h = model.extractor(images.to(device))  # type: ignore[operator]
        features.append(h.cpu())
        logits.append(model.head(h).cpu())  # type: ignore[operator]
        labels.append(y)
    return torch.cat(features), torch.cat(logits), torch.cat(labels)


def ood_sets(config: Any, splits: Splits, names: Sequence[str], size: int) -> dict[str, Dataset]:
    """The OOD sets `names` for a run of `config` on `splits` (its dataset as loaded), each at most `size` images."""
    shape = splits.image_shape
    low, high = pixel_range(splits.train)
    made: dict[str, Dataset] = {}
    for name in names:
        if name == "held-out":
            held = held_out_set(config.dataset, config.data_dir)
            if held is None:
                raise BadValue(f"OOD set 'held-out' is the classes a class-subset dataset leaves out, but "
                               f"{config.dataset} keeps all of its classes; train on one of {', '.join(CLASS_SUBSETS)}")
            made[name] = held
        elif name == "digits":
            made[name] = digits_like(shape, low, high)  # type: ignore[arg-type]
        elif name == "noise":
            made[name] = uniform_noise(size, shape, low, high)  # type: ignore[arg-type]
        else:
            other = load_dataset(name)
            other_shape = other.image_shape  # type: ignore[union-attr]
            if other_shape != shape:
                raise BadValue(f"OOD set {name!r} has images of shape {other_shape}, but {config.name} was trained on "
                               f"{shape}: give an image dataset of that shape, or digits or noise (made at it)")
            other_low, other_high = pixel_range(other.train)  # type: ignore[union-attr]
            images, labels = next(iter(ordered_batches(other.test, len(other.test))))  # type: ignore[union-attr,arg-type]
            intensities = (images - other_low[:, None, None]) / (other_high - other_low)[:, None, None]
            made[name] = TensorDataset(like_training_images(intensities, low, high), labels)
    return {name: subset(dataset, size) for name, dataset in made.items()}


def measure_run(run_dir: Path, sets: Sequence[str] | None = None, k: int = KNN_K, device: str = "auto",
                loaded: LoadedSplits | None = None) -> dict[str, Any]:
    """The OOD detection, retrieval and accuracy of the finished run in `run_dir` (module docstring), on the OOD
    `sets` (default: `default_sets`)."""
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    summary = rundir.read_summary(run_dir, config)
    if summary is None or summary["status"] != "finished":
        raise BadValue(f"{run_dir}: itra ood measures finished runs, but this one has "
                       f"{'not ended' if summary is None else summary['status']}")
    if is_text_dataset(config.dataset):
        raise BadValue(f"{run_dir} is a run on the text dataset {config.dataset}; itra ood measures image models")
    names = check_sets(default_sets(config.dataset) if sets is None else sets)
    if not rundir.has_checkpoint(run_dir):
        raise MissingFile(f"{run_dir / rundir.CHECKPOINT}: no such file, and itra ood measures the model it holds "
                          "(committed runs keep none): train the run again into another --out, or give the --out "
                          f"that holds its measures ({run_dir.name}.json) on these sets with this --knn-k")
    checkpoint = rundir.load_checkpoint(run_dir, config)  # checked before any data is loaded
    splits = (loaded or LoadedSplits())(config)
    data = run_splits(splits, config.train_subset, config.test_subset, config.label_noise, config.seed,
                      config.val_split)
    target = resolve_device(config.device if device == "auto" else device)
    model = build_model(config, splits)
    rundir.restore(run_dir, checkpoint, config, {"model": model}, {})
    model.to(target)
    train_h, _, train_y = outputs(model, data.train, target)
    test_h, test_z, test_y = outputs(model, data.test, target)
    scorer = OODScorer(train_h, train_y, splits.num_classes, summary.get("temperature"), k)
    inside = scorer(test_h, test_z)
    detection, sizes = {}, {}
    for name, dataset in ood_sets(config, splits, names, len(test_y)).items():
        h, z, _ = outputs(model, dataset, target)
        outside = scorer(h, z)
        sizes[name] = len(h)
        detection[name] = {score: {"auroc": auroc(inside[score], outside[score]),
                                   "fpr95": fpr_at_tpr(inside[score], outside[score])} for score in inside}
    return {"run": config.name, "epoch": checkpoint["epoch"], "knn_k": k, "sets": sizes, "test_size": len(test_y),
            "temperature": summary.get("temperature"),
            "accuracy": 100.0 * float((test_z.argmax(dim=1) == test_y).double().mean()),
            "detection": detection, "retrieval": retrieval_metrics(test_h, test_y)}


def measured(run_dir: Path, folder: Path, sets: Sequence[str] | None, k: int, device: str, loaded: LoadedSplits,
             progress: bool) -> dict[str, Any]:
    """`folder/<run>.json` when it holds this run's measures at its last epoch on these sets with this k, else
    `measure_run`'s, written there (measures of an earlier epoch, a run trained on since, are measured again)."""
    path = Path(folder) / f"{Path(run_dir).name}.json"
    if path.exists():
        config = rundir.read_config(run_dir)
        cached = rundir.read_json(path)
        problem = measures_problem(cached, config.name)
        if problem:
            raise BadValue(f"{path}: {problem}; delete it, and the run is measured again from its checkpoint")
        wanted = default_sets(config.dataset) if sets is None else check_sets(sets)
        epoch = rundir.read_summary(run_dir, config)["epoch"]
        if list(cached["sets"]) == wanted and cached["knn_k"] == k and cached["epoch"] == epoch:
            return cached
    if progress:
        print(f"ood of {Path(run_dir).name}", flush=True)
    result = measure_run(run_dir, sets, k, device, loaded)
    Path(folder).mkdir(parents=True, exist_ok=True)
    rundir.write_json(path, result)
    return result


def measures_problem(measures: Any, name: str) -> str | None:
    """What is wrong with `measures` (a `<run>.json` read back) as `measure_run`'s of the run `name`, or None: a file
    of another run, or damaged, would be averaged in as this run's."""
    if not isinstance(measures, dict):
        return f"holds a {type(measures).__name__}, not a run's OOD measures (a JSON object)"
    if measures.get("run") != name:
        return f"the measures of {measures.get('run')!r}, not of {name}"
    if not rundir.is_number(measures.get("epoch")):
        return "no epoch"
    sets, detection, retrieval = (measures.get(key) for key in ("sets", "detection", "retrieval"))
    if not (isinstance(sets, dict) and isinstance(measures.get("knn_k"), int) and isinstance(detection, dict)
            and isinstance(retrieval, dict)):
        return "no sets, knn_k, detection or retrieval"
    numbers = [measures.get("accuracy"), *(retrieval.get(metric) for metric in RETRIEVAL)]
    undefined_or_numbers = []  # a detection measure is null where it is undefined
    for ood_set in sets:
        scores = detection.get(ood_set)
        if not (isinstance(scores, dict) and all(isinstance(each, dict) for each in scores.values())):
            return f"no detection measures of {ood_set!r}"
        undefined_or_numbers += [each.get(metric) for each in scores.values() for metric in DETECTION]
    if not (all(map(rundir.is_number, numbers)) and
            all(value is None or rundir.is_number(value) for value in undefined_or_numbers)):
        return "a measure that is not a number"
    return None


def measure_groups(groups: dict[str, list[Path]], folder: Path, sets: Sequence[str] | None = None, k: int = KNN_K,
                   device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """{label: run directories (the seeds of one row)} measured (`measured`: cached in `folder`) and summarised:
    `{"knn_k", "sets": {set: images}, "rows": {label: summarise(...)}}`. A failed run is counted, never measured."""
    loaded, rows, sizes = LoadedSplits(), {}, {}
    for label, run_dirs in groups.items():
        runs, failed = [], 0
        for run_dir in run_dirs:
            if rundir.is_failed(rundir.read_summary(run_dir) or {}):
                failed += 1
                continue
            runs.append(measured(run_dir, folder, sets, k, device, loaded, progress))
            sizes.update(runs[-1]["sets"])
        rows[label] = {**summarise(runs), "failed": failed}
    return {"knn_k": k, "sets": sizes, "rows": rows}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the runs (seeds) of one row of each measure; a measure some run lacks (MSP after TS of a run
    without a validation split) is None."""
    if not runs:
        return {"seeds": 0}

    def over(values: list[float | None]) -> list[float] | None:
        return None if any(v is None for v in values) else list(mean_std(values))  # type: ignore[arg-type]

    def get(run: dict[str, Any], *keys: str) -> Any:
        for key in keys:
            run = run.get(key) if isinstance(run, dict) else None  # type: ignore[assignment]
        return run

    sets = list(runs[0]["detection"])
    return {"seeds": len(runs), "accuracy": over([run["accuracy"] for run in runs]),
            "detection": {s: {score: {metric: over([get(run, "detection", s, score, metric) for run in runs])
                                      for metric in DETECTION} for score in SCORES} for s in sets},
            "retrieval": {metric: over([run["retrieval"][metric] for run in runs]) for metric in RETRIEVAL}}


def ood_table(ood: dict[str, Any]) -> str:
    """Per OOD set and detection metric a table of every row's scores, then the retrieval table."""
    rows = {label: row for label, row in ood["rows"].items() if row["seeds"]}
    seeds = lambda row: f"{row['seeds']}" + (f" (+{row['failed']} failed)" if row.get("failed") else "")  # noqa: E731
    percent = lambda value: None if value is None else [100 * value[0], 100 * value[1]]  # noqa: E731
    text = ""
    for name, size in ood["sets"].items():
        for metric, (title, better) in DETECTION.items():
            lines = [[label, seeds(row), format_mean_std(row["accuracy"], 2),
                      *(format_mean_std(percent(row["detection"].get(name, {}).get(score, {}).get(metric)), 1)
                        for score in SCORES)] for label, row in rows.items()]
            caption = (f"OOD detection, the ID test set against {name} ({OOD_SETS.get(name, 'a dataset')}, {size:,} "
                       f"images): {title}, {better}; kNN with k = {ood['knn_k']}")
            text += f"{caption}\n\n" + markdown_table(["method", "seeds", "ID acc (%)", *SCORES.values()], lines) + "\n"
    lines = [[label, seeds(row), format_mean_std(row["accuracy"], 2),
              *(format_mean_std(percent(row["retrieval"][metric]), 2) for metric in RETRIEVAL)]
             for label, row in rows.items()]
    text += ("Retrieval of the ID test set by its own features (each image a query against the others, cosine; "
             "higher is better)\n\n" + markdown_table(["method", "seeds", "ID acc (%)",
                                                       *(f"{name} (%)" for name in RETRIEVAL.values())], lines))
    return text


def ood_report(paths: Sequence[Path], out: Path, sets: Sequence[str] | None = None, k: int = KNN_K,
               device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """`itra ood`: the runs under `paths` (run directories or folders of them, of one study), grouped by config (their
    seeds), measured into `out/<run>.json`, and the table written to `out/ood.md` and `out/ood.json`."""
    if sets is not None:
        check_sets(sets)
    groups = by_group(find_runs(paths))
    labels = [method_label(runs[0].config) for runs in groups.values()]
    named = {(label if labels.count(label) == 1 else group): [run.directory for run in runs]
             for label, (group, runs) in zip(labels, groups.items())}
    result = measure_groups(named, out, sets, k, device, progress)
    rundir.write_json(Path(out) / "ood.json", result)
    (Path(out) / "ood.md").write_text(ood_table(result))
    return result
