"""Image models from timm and torchvision by name, as `--model timm:<name>` and `--model torchvision:<name>` take them.

    pip install "itra[timm]"    # timm and torchvision, which need the torch build they were built for
    itra train --dataset digits --model timm:resnet18 --method itra-c
    itra train --dataset digits --model timm:vit_small_patch8_224 --exits shared

Built from scratch (no pretrained weights), drawn from the global torch stream, and split by
`itra.models.adapter.split_classifier`. What is adapted to the dataset: the number of classes always; for timm
the input channels (`in_chans`) and, for a model of a fixed input size (a ViT: its position embeddings), `img_size`
= the dataset's image size, its patch size unchanged (so the image must hold at least one patch: a 16-pixel patch
needs 16x16 images, 28x28 Fashion-MNIST gives one patch, 8x8 digits needs a patch-8 ViT); for torchvision the
input channels, by a first `nn.Conv2d` rebuilt for them (torch's default init) when they are not 3. Images are
never resized.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import nn

from itra.models.adapter import replace_module, split_classifier
from itra.models.classifier import Classifier

LIBRARIES = ("timm", "torchvision")
INSTALL = 'pip install "itra[timm]", with the torch build that timm and torchvision were built for'


def library_of(name: str) -> str | None:
    """`timm` for `timm:<name>`, `torchvision` for `torchvision:<name>`, else None (itra's own or a text model)."""
    library, sep, _ = name.partition(":")
    return library if sep and library in LIBRARIES else None


def check_library_model(name: str) -> ModuleType:
    """The library of `--model <library>:<model>`, imported, once it knows the model: a one-line error if the
    library is missing or does not import with this torch, or has no such model."""
    library, _, model = name.partition(":")
    try:
        module = importlib.import_module(library)
    except (ImportError, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch build
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModuleNotFoundError(f"--model {name} needs {library} importable with torch {torch.__version__} "
                                  f"({cause}): {INSTALL}") from None
    known = module.is_model(model) if library == "timm" else model in module.models.list_models()
    if not known:
        listing = "timm.list_models()" if library == "timm" else "torchvision.models.list_models()"
        raise ValueError(f"{library} has no model {model!r}: choose one of {listing}")
    return module


def build_library_model(name: str, num_classes: int, image_shape: tuple[int, ...]) -> Classifier:
    """`--model timm:<model>` or `torchvision:<model>` for images of `image_shape` (C, H, W) and `num_classes`
    classes, as `Classifier(extractor, head)` (module docstring: what is adapted)."""
    module = check_library_model(name)
    library, _, model_name = name.partition(":")
    channels, height, width = image_shape
    if library == "timm":
        size = {"img_size": (height, width)} if module.models.get_pretrained_cfg(model_name).fixed_input_size else {}
        return split_classifier(module.create_model(model_name, num_classes=num_classes, in_chans=channels, **size))
    model = module.models.get_model(model_name, num_classes=num_classes)
    if channels != 3:
        _rebuild_first_conv(model, channels)
    return split_classifier(model)


def _rebuild_first_conv(model: nn.Module, channels: int) -> None:
    """Replace the first `nn.Conv2d` of `model` (in module order) by one that takes `channels` input channels."""
    name, conv = next((name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d))
    replace_module(model, name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                          conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode))
