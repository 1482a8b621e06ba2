"""Image models by name, as `--model` takes them."""
from __future__ import annotations

import functools
from typing import Callable

import torch

from itra.models.classifier import Classifier
from itra.models.cnn import small_cnn
from itra.models.layers import check_stem
from itra.models.mobilenet import mobilenet_v2
from itra.models.resnet import resnet18, resnet50, resnet101
from itra.models.vgg import vgg13_bn
from itra.models.vit import small_vit
from itra.errors import BadValue

IMAGE_MODELS: dict[str, Callable[..., Classifier]] = {
    "cnn": small_cnn,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg13": vgg13_bn,
    "mobilenetv2": mobilenet_v2,
    "vit": small_vit,
}
SINGLE_DESIGN = ("cnn", "vit")  # built for small images alone: no stem to choose


def build_image_model(name: str, num_classes: int, in_channels: int, stem: str = "cifar") -> Classifier:
    """`name` from IMAGE_MODELS; `stem` "cifar" (3x3 conv, for 32x32 to 96x96 images) or "imagenet"
    (7x7 conv + max-pool); the small CNN and the small ViT have a single design and ignore it."""
    if name not in IMAGE_MODELS:
        raise BadValue(f"Unknown model {name!r}; expected one of: {', '.join(IMAGE_MODELS)}")
    if num_classes < 2:
        raise BadValue(f"Expected `num_classes` >= 2, but got {num_classes}")
    if in_channels < 1:
        raise BadValue(f"Expected `in_channels` >= 1, but got {in_channels}")
    check_stem(stem)  # for the single-design models too, so that a typo is never silently ignored
    if name in SINGLE_DESIGN:
        return IMAGE_MODELS[name](num_classes, in_channels)
    return IMAGE_MODELS[name](num_classes, in_channels, stem)


@functools.cache
def meta_model(name: str) -> Classifier:
    """Image model `name` (of `IMAGE_MODELS`) on the meta device: its shapes (`feature_dim`, `exit_dims`) without
    weights, to check a config against the model before any data loads (`itra.resolve`)."""
    with torch.device("meta"):
        return build_image_model(name, num_classes=2, in_channels=3)
