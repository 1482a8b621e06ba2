"""The one shape every dataset loader returns."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset

from itra.data.batches import epoch_generator, subset
from itra.data.label_noise import with_label_noise

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Splits:
    """A classification dataset ready for `itra.train`.

    Items of `train` and `test` are tuples `(*inputs, label)`: `(image, label)` for images
    (float, normalised), `(input_ids, attention_mask, label)` for text. The model is called as
    `model(*inputs)`. `train_transform`, when set, augments a whole training batch of images
    `(B, C, H, W)` with an explicit generator (random crop, flip, ...); test data is never augmented.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    class_names: tuple[str, ...]
    train_transform: BatchTransform | None = None


def run_splits(splits: Splits, train_subset: int | None, test_subset: int | None, label_noise: float, seed: int) -> Splits:
    """The data one run trains and tests on: fixed random subsets of at most the given sizes (the same
    for every seed, so every method and seed sees the same data), and `label_noise` of the training
    labels flipped, chosen by `seed`; the test labels are never changed."""
    train = with_label_noise(subset(splits.train, train_subset), splits.num_classes, label_noise,
                             epoch_generator(seed, 0, stream=4))
    return dataclasses.replace(splits, train=train, test=subset(splits.test, test_subset))
