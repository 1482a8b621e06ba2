"""Symmetric label noise: the paper's future work, "learning from poisoned datasets"."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset
from itra.errors import BadValue


def flip_labels(labels: torch.Tensor, num_classes: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Labels (N,) with exactly round(fraction * N) of them, chosen at random, moved to another class
    drawn uniformly among the K - 1 others. The input is not modified."""
    if not 0 <= fraction <= 1:
        raise BadValue(f"Expected `label_noise` in [0, 1], but got {fraction}")
    noisy = labels.clone()
    count = round(fraction * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)  # never 0: always another class
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy


def with_label_noise(dataset: Dataset, num_classes: int, fraction: float, generator: torch.Generator) -> Dataset:
    """The dataset with `flip_labels` applied to its labels (the last tensor of a `TensorDataset`)."""
    if fraction == 0:
        return dataset
    if not isinstance(dataset, TensorDataset):
        raise BadValue(f"Label noise needs an in-memory TensorDataset, but got {type(dataset).__name__}")
    *inputs, labels = dataset.tensors
    return TensorDataset(*inputs, flip_labels(labels, num_classes, fraction, generator))
