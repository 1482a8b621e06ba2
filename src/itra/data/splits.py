"""The one shape every dataset loader returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset

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
