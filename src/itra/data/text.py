"""Text classification data: raw texts and labels, and their tokenisation into `Splits`."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextSplits:
    """A text classification dataset before tokenisation (the tokenizer belongs to the model).

    `train_labels` and `test_labels` are int64 tensors (N,) with values in [0, len(class_names)).
    """

    name: str
    train_texts: tuple[str, ...]
    train_labels: torch.Tensor
    test_texts: tuple[str, ...]
    test_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
