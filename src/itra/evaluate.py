"""Evaluation during training: predictions, the per-epoch metrics row (test, validation, after temperature
scaling) and the compactness probe. The post-hoc view of a trained model layer by layer is `layer_analysis`.

Everything goes through `Objective.embed`, so a model is evaluated the way it is trained.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from itra.calibration import fit_temperature
from itra.data import Splits
from itra.data.batches import Batch, ordered_batches, subset_by_index
from itra.distributed import Dist, sum_over_ranks
from itra.objective import Objective
from itra.metrics import compactness, metric_sums, metrics_from_sums


@torch.no_grad()
def predict(objective: Objective, dataset: Dataset, device: torch.device, batch_size: int = 1000
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, D), logits (N, K) and labels (N,) of a whole dataset, in eval mode, on the CPU.
    Leaves the objective in eval mode."""
    objective.eval()
    features, logits, labels = [], [], []
    for *inputs, y in ordered_batches(dataset, batch_size):
        h, z = objective.embed(*(x.to(device) for x in inputs))
        features.append(h.cpu())
        logits.append(z.cpu())
        labels.append(y)
    return torch.cat(features), torch.cat(logits), torch.cat(labels)


def evaluate(objective: Objective, dataset: Dataset, device: torch.device, dist: Dist = Dist(),
             prefix: str = "test_") -> dict[str, float]:
    """`test_accuracy` (%), `test_cross_entropy` (nats) and `test_ece` on `dataset` (named with `prefix`). With
    several ranks, each predicts its contiguous share of `dataset` and the shares' metric sums (a few dozen
    numbers, not the (N, K) logits) are summed over ranks: every rank gets the metrics of the whole set
    (evaluated by one model when the ranks hold the same one: `Dist.sync_buffers`)."""
    return _metrics(*_shard_logits(objective, dataset, device, dist), prefix)


def evaluate_splits(objective: Objective, data: Splits, device: torch.device, dist: Dist = Dist()) -> dict[str, float]:
    """The metrics of one epoch: `evaluate` on the test set; with a validation set (`Splits.val`) also `val_*`,
    the `temperature` T fitted on the validation logits (`calibration.fit_temperature`, summed over ranks) and
    `ts_test_*`, the test metrics of logits / T: what post-hoc temperature scaling would give this epoch's model."""
    test_logits, test_labels = _shard_logits(objective, data.test, device, dist)
    row = _metrics(test_logits, test_labels, "test_")
    if data.val is None:
        return row
    val_logits, val_labels = _shard_logits(objective, data.val, device, dist)
    temperature = fit_temperature(val_logits, val_labels, reduce=sum_over_ranks)
    return {**row, **_metrics(val_logits, val_labels, "val_"), "temperature": temperature,
            **_metrics(test_logits.double() / temperature, test_labels, "ts_test_")}


def _shard_logits(objective: Objective, dataset: Dataset, device: torch.device, dist: Dist
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, K) and labels (n,) of this rank's contiguous share of `dataset` (all of it in one process)."""
    shard = dataset if dist.world_size == 1 else subset_by_index(dataset, dist.shard(len(dataset)))  # type: ignore[arg-type]
    _, logits, labels = predict(objective, shard, device)
    return logits, labels


def _metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str) -> dict[str, float]:
    """Accuracy, CE and ECE of the whole set from each rank's share (`metric_sums`, summed over ranks)."""
    sums = sum_over_ranks(metric_sums(logits, labels))
    return {f"{prefix}{name}": value for name, value in metrics_from_sums(sums).items()}


def compactness_probe(dataset: Dataset, generator: torch.Generator, size: int = 256) -> tuple[Batch, Batch]:
    """Two fixed, disjoint random training batches on which compactness is followed during training."""
    size = min(size, len(dataset) // 2)  # type: ignore[arg-type]
    order = torch.randperm(len(dataset), generator=generator)[: 2 * size]  # type: ignore[arg-type]
    first, second = ordered_batches(subset_by_index(dataset, order), size)  # exactly two batches
    return first, second


@torch.no_grad()
def probe_compactness(objective: Objective, probe: tuple[Batch, Batch], device: torch.device) -> float:
    """`metrics.compactness` of the features of the two probe batches, in eval mode; restores train mode."""
    objective.eval()
    (*inputs1, y1), (*inputs2, y2) = probe
    h1, _ = objective.embed(*(x.to(device) for x in inputs1))
    h2, _ = objective.embed(*(x.to(device) for x in inputs2))
    objective.train()
    return compactness(h1, y1.to(device), h2, y2.to(device))
