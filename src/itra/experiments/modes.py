"""Does a method keep the modes of a multi-modal class? The paper's third claim: ITRA aligns a sample with its own
mode of the class (the adaptive weights of its Eq. (9)), where Center loss pulls every class to one centre.

    itra reproduce multimodal-fmnist            # CE, Center, ITRA-c x 3 seeds on Fashion-MNIST's classes merged in pairs
    itra reproduce multimodal-fmnist --smoke    # the pipeline in a minute

The task (`data.fashion_mnist.merge_pairs`): 5 labels, each two dissimilar source classes. Every run trains on the
5 labels; then the penultimate features h of its model (at its last checkpoint) on the 10,000 test images are
measured against the source classes the labels hide (`mode_metrics`): can a probe on frozen features still tell the
10 source classes apart, and does a 2-cluster split of each label's features find its two source classes? The same
measures of the pixels say what the input itself holds. Each run's measures are written once, to
`<study>/modes/<run>.json`, so the table regenerates without the checkpoints.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from itra import rundir
from itra.data import Splits
from itra.data.batches import ordered_batches, subset
from itra.data.fashion_mnist import PAIRS
from itra.experiments.runs import build_model
from itra.experiments.table import format_mean_std, markdown_table, mean_std
from itra.errors import MissingFile

NEIGHBOURS = 10  # of the kNN probe
MEASURES = {  # key: what the table calls it
    "source_knn": "10-class kNN acc (%)",
    "source_probe": "10-class linear probe acc (%)",
    "label_knn": "5-label kNN acc (%)",
    "mode_ari": "2-means ARI (mean of labels)",
    "mode_purity": "2-means purity (%)",
}


def source_classes(labels: torch.Tensor, sources: torch.Tensor, pairs: tuple[tuple[int, int], ...] = PAIRS) -> torch.Tensor:
    """(N,) in {0, 1}: which of its label's two source classes each sample comes from (`pairs[label][1]`: 1)."""
    second = torch.tensor([pair[1] for pair in pairs])
    return (sources == second[labels]).long()


def mode_metrics(features: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor) -> dict[str, Any]:
    """How well features (N, D) keep the source classes (N,) in 0..9 hidden in labels (N,) in 0..L-1.

    Two-fold over a fixed random halving of the samples (fit on one half, score the other, then swap):
    - `source_knn`, `source_probe`: accuracy (%) of the 10 source classes by a kNN (k = `NEIGHBOURS`, Euclidean) and
      by a linear probe (multinomial logistic regression on standardised features);
    - `label_knn`: the kNN's accuracy of the labels themselves, for scale.
    Per label, on all its samples: k-means with 2 clusters (10 starts, seeded) against its two source classes:
    - `mode_ari`: the adjusted Rand index (1: the two modes found exactly, 0: chance), mean over labels, and
      `mode_ari_per_label`;
    - `mode_purity`: % of samples in the majority source class of their cluster, pooled over labels (50: none).
    """
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, s = features.double().numpy(), labels.numpy(), sources.numpy()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).numpy()
    folds = (order[: len(x) // 2], order[len(x) // 2:])

    def two_fold(make, targets: np.ndarray) -> float:
        right = 0
        for fit, score in (folds, folds[::-1]):
            right += int((make().fit(x[fit], targets[fit]).predict(x[score]) == targets[score]).sum())
        return 100.0 * right / len(x)

    knn = lambda: KNeighborsClassifier(NEIGHBOURS)  # noqa: E731
    probe = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # noqa: E731
    ari, pure = [], 0
    for label in range(int(y.max()) + 1):
        members = y == label
        clusters = KMeans(2, n_init=10, random_state=0).fit_predict(x[members])
        ari.append(float(adjusted_rand_score(s[members], clusters)))
        pure += sum(int(np.bincount(s[members][clusters == c]).max()) for c in (0, 1) if (clusters == c).any())
    return {"source_knn": two_fold(knn, s), "source_probe": two_fold(probe, s), "label_knn": two_fold(knn, y),
            "mode_ari": statistics.fmean(ari), "mode_ari_per_label": ari, "mode_purity": 100.0 * pure / len(x)}


@torch.no_grad()
def run_features(run_dir: Path, splits: Splits, test: TensorDataset) -> torch.Tensor:
    """The penultimate features (N, D) of `test`, by the model of `run_dir` (of `splits`) at its last checkpoint."""
    if not rundir.has_checkpoint(run_dir):
        raise MissingFile(f"{run_dir} has no checkpoint.pt to measure its features: train it again "
                                f"(itra train --resume {run_dir}) or keep its modes json")
    config = rundir.read_config(run_dir)
    model = build_model(config, splits)
    rundir.load_model(run_dir, config, model)
    model.eval()
    return torch.cat([model.extractor(x) for x, _ in ordered_batches(test, 1000)])


def measure_study(preset: Any, run_dirs: dict[str, list[Path]], splits: Splits, folder: Path, progress: bool = True
                  ) -> dict[str, Any]:
    """Every run's `mode_metrics` (read from `folder/<run>.json` when measured before, else measured from its
    checkpoint and written there), the pixels' as the input's own, and per row their mean ± std over seeds."""
    from itra.data.registry import load_dataset

    config = rundir.read_config(next(iter(run_dirs.values()))[0])
    test = subset(splits.test, config.test_subset)  # the runs' own test set, and the same images' source classes
    sources = subset(load_dataset("fashion-mnist", config.data_dir).test, config.test_subset).tensors[-1]  # type: ignore[union-attr]
    images, labels = test.tensors  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for label, dirs in run_dirs.items():
        measured = []
        for run_dir in dirs:
            path = folder / f"{run_dir.name}.json"
            if not path.exists():
                if rundir.is_failed(rundir.read_summary(run_dir) or {}):
                    continue
                if progress:
                    print(f"modes of {run_dir.name}", flush=True)
                rundir.write_json(path, {"run": run_dir.name, **mode_metrics(run_features(run_dir, splits, test), labels, sources)})
            measured.append(rundir.read_json(path))
        rows[label] = summarise(measured)
    pixels = folder / "pixels.json"
    if not pixels.exists():
        rundir.write_json(pixels, {"run": "pixels", **mode_metrics(images.flatten(1), labels, sources)})
    rows["pixels (the input)"] = summarise([rundir.read_json(pixels)])
    return {"pairs": [list(pair) for pair in PAIRS], "class_names": list(splits.class_names), "rows": rows}


def summarise(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over runs of each of `MEASURES`, and the per-label ARI's mean over runs."""
    if not measured:
        return {"seeds": 0}
    per_label = np.mean([m["mode_ari_per_label"] for m in measured], axis=0).tolist()
    return {"seeds": len(measured), **{key: list(mean_std([m[key] for m in measured])) for key in MEASURES},
            "mode_ari_per_label": per_label}


def modes_table(modes: dict[str, Any]) -> str:
    """The features' measures per row, then the ARI of each label."""
    rows = modes["rows"]
    table = markdown_table(["features of", "seeds", *MEASURES.values()],
                           [[label, row["seeds"], *(format_mean_std(row.get(key), 3 if key == "mode_ari" else 2)
                                                     for key in MEASURES)] for label, row in rows.items()])
    per_label = markdown_table(["features of", *modes["class_names"]],
                               [[label, *(f"{value:.3f}" for value in row.get("mode_ari_per_label", []))]
                                for label, row in rows.items() if row["seeds"]])
    return (f"Do the features keep the two source classes of each label? (test set, {NEIGHBOURS}-NN and linear probe "
            f"two-fold; 2-means per label)\n\n{table}\nARI of the 2-means split of each label, mean over seeds:\n\n{per_label}")
