"""A classifier is a feature extractor E and a linear head C (paper, Eq. (2)-(3))."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`f(x) = C(E(x))`: `extractor` gives the penultimate features `h` (B, D), `head` the logits (B, K)."""

    def __init__(self, extractor: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(*inputs))
