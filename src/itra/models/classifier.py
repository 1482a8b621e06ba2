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

    def exits(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The representation after each layer of the extractor, first to last: L tensors (B, D_l), the last one
        `extractor(*inputs)`, the features h the head sees. Where D_l = D, `head(h_l)` classifies from layer l.

        The extractor defines what a layer is (a transformer block, a ResNet stage); models without that view
        (the small CNN, VGG, MobileNetV2) raise rather than pretend their features are one layer.
        """
        exits = getattr(self.extractor, "exits", None)
        if exits is None:
            raise NotImplementedError(
                f"{type(self.extractor).__name__} has no layer-wise exits; models with exits: vit, resnet18, "
                "resnet50, resnet101 and the text encoders"
            )
        return exits(*inputs)
