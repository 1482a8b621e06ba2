"""Evaluation during and after training: predictions, the per-epoch metrics row, the compactness probe.

Everything goes through `Objective.embed`, so a model is evaluated the way it is trained.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from itra.data.batches import Batch, ordered_batches, subset_by_index
from itra.methods import Objective
from itra.metrics import classification_metrics, compactness


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


def evaluate(objective: Objective, dataset: Dataset, device: torch.device) -> dict[str, float]:
    """`test_accuracy` (%), `test_cross_entropy` (nats) and `test_ece` on `dataset`."""
    _, logits, labels = predict(objective, dataset, device)
    return {f"test_{name}": value for name, value in classification_metrics(logits, labels).items()}


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
