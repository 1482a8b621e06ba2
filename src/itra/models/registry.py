"""Image models by name, as `--model` takes them."""
from __future__ import annotations

from typing import Callable

from itra.models.classifier import Classifier
from itra.models.cnn import small_cnn

IMAGE_MODELS: dict[str, Callable[..., Classifier]] = {
    "cnn": small_cnn,
}


def build_image_model(name: str, num_classes: int, in_channels: int) -> Classifier:
    if name not in IMAGE_MODELS:
        raise ValueError(f"Unknown model {name!r}; expected one of: {', '.join(sorted(IMAGE_MODELS))}")
    if num_classes < 2:
        raise ValueError(f"Expected `num_classes` >= 2, but got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"Expected `in_channels` >= 1, but got {in_channels}")
    return IMAGE_MODELS[name](num_classes, in_channels)
