"""A classifier is a feature extractor E and a linear head C (paper, Eq. (2)-(3))."""
from __future__ import annotations

import torch
from torch import nn
from itra.errors import BadValue

# The models whose extractor has layer-wise exits (`Classifier.exits`), as errors name them.
MODELS_WITH_EXITS = "vit, resnet18, resnet50, resnet101, the text encoders and timm models with forward_intermediates"


def check_classifier(name: str, model: object) -> None:
    """`model` a `Classifier` with a linear head, what the objective's passes take apart (extractor, head)."""
    if not isinstance(model, Classifier) or not isinstance(model.head, nn.Linear):
        shown = type(model).__name__ + (f" with a {type(model.head).__name__} head" if isinstance(model, Classifier) else "")
        raise BadValue(f"Expected `{name}` to be an itra Classifier (an extractor, then an nn.Linear head; "
                       f"itra.models.adapter.split_classifier makes one of a classifier), but got {shown}")


class Classifier(nn.Module):
    """`f(x) = C(E(x))`: `extractor` gives the penultimate features `h` (B, D), `head` the logits (B, K).

    A multi-exit model (`itra.exits`, `--exits separate`) also has `exit_heads`, one linear head per exit
    before the last (`add_exit_heads`); without them (the default) `head` is the one head of every exit.
    """

    def __init__(self, extractor: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head
        self.exit_heads = nn.ModuleList()  # empty: no state-dict keys, so checkpoints without heads still load

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
        return self._layered("exits")(*inputs)

    @property
    def exit_dims(self) -> list[int]:
        """The width D_l of every exit, first to last (the last is `feature_dim`)."""
        return list(self._layered("exit_dims"))

    def add_exit_heads(self) -> None:
        """Give every exit before the last a linear head of its own, Linear(D_l, K), initialised from the global
        torch stream: the standard multi-exit model. The last exit keeps `head`."""
        if len(self.exit_heads):
            raise BadValue("This classifier has exit heads already")
        self.exit_heads = nn.ModuleList(nn.Linear(width, self.head.out_features) for width in self.exit_dims[:-1])

    def exit_logits(self, exits: list[torch.Tensor], separate: bool) -> list[torch.Tensor]:
        """Logits (B, K) of every exit h_l (B, D_l): with `separate`, exit l's own head (`exit_heads`, and `head` at
        the last); otherwise the shared `head` at every exit, which needs D_l = D."""
        if not separate:
            return [self.head(h) for h in exits]
        if len(self.exit_heads) != len(exits) - 1:
            raise BadValue(f"Expected {len(exits) - 1} exit heads for {len(exits)} exits, but this classifier has "
                             f"{len(self.exit_heads)}: call add_exit_heads() first")
        return [head(h) for head, h in zip([*self.exit_heads, self.head], exits)]

    def _layered(self, name: str):
        """The extractor's layer-wise attribute `name`, or an error naming the models that have one."""
        value = getattr(self.extractor, name, None)
        if value is None:
            raise NotImplementedError(
                f"{type(self.extractor).__name__} has no layer-wise exits; models with exits: {MODELS_WITH_EXITS}")
        return value
