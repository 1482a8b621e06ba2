"""Image models from timm and torchvision by name, as `--model timm:<name>` and `--model torchvision:<name>` take them.

    pip install "itra[timm]"    # timm and torchvision, which need the torch build they were built for
    itra train --dataset digits --model timm:resnet18 --method itra-c
    itra train --dataset digits --model timm:vit_small_patch8_224 --exits shared

Built from scratch, drawn from the global torch stream, or with `pretrained` from the library's default weights where
they are on disk already (nothing is downloaded: a missing file is a one-line error that says so), and split by
`itra.models.adapter.split_classifier`. Pretrained weights come with a new head for the dataset's classes (drawn
from the seed), and a first convolution for other input channels: for one channel its weights summed over the
three (the same map as the grey image copied into RGB), else cycled and scaled by 3 / channels. What is adapted to the dataset: the number of classes always; for timm
the input channels (`in_chans`) and, for a model of a fixed input size (a ViT: its position embeddings), `img_size`
= the dataset's image size, its patch size unchanged (so the image must hold at least one patch: a 16-pixel patch
needs 16x16 images, 28x28 Fashion-MNIST gives one patch, 8x8 digits needs a patch-8 ViT); for torchvision the
input channels, by a first `nn.Conv2d` rebuilt for them (torch's default init) when they are not 3, and a ViT's
`image_size` (square images only). Images are
never resized.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch
from torch import nn

from itra.data.hub import hub_address
from itra.models.adapter import find_classification_layer, replace_module, split_classifier
from itra.models.classifier import Classifier
from itra.errors import BadValue, MissingFile, MissingPackage, UserError, first_line

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
    if library == "timm":
        hub_address()  # HF_ENDPOINT checked before timm imports huggingface_hub, which parses it
    try:
        module = importlib.import_module(library)
    except (ImportError, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch build
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MissingPackage(f"--model {name} needs {library} importable with torch {torch.__version__} "
                                  f"({cause}): {INSTALL}") from None
    known = module.is_model(model) if library == "timm" else model in module.models.list_models()
    if not known:
        listing = "timm.list_models()" if library == "timm" else "torchvision.models.list_models()"
        raise BadValue(f"{library} has no model {model!r}: choose one of {listing}")
    return module


def pretrained_file(name: str) -> Path:
    """The file of the default pretrained weights of `--model <library>:<model>` on this machine: for timm in the
    Hugging Face cache or torch's hub directory, for torchvision in torch's hub directory. A one-line error when
    they are not on disk (itra downloads nothing)."""
    module = check_library_model(name)
    library, _, model_name = name.partition(":")
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if library == "timm":
        config = module.models.get_pretrained_cfg(model_name)
        if config is None or not (config.hf_hub_id or config.url or config.file):
            raise BadValue(f"--pretrained: timm has no pretrained weights for {model_name}; leave --pretrained off")
        candidates = [Path(config.file)] if config.file else []
        if config.hf_hub_id:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin"):
                cached = try_to_load_from_cache(config.hf_hub_id, filename)
                if isinstance(cached, str):
                    candidates.append(Path(cached))
        if config.url:
            candidates.append(hub / Path(config.url).name)
        where = f"the Hugging Face cache ({config.hf_hub_id}) or {hub}"
    else:
        url = module.models.get_model_weights(model_name).DEFAULT.url
        candidates, where = [hub / Path(url).name], str(hub)
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise MissingFile(f"--pretrained: the weights of {name} are not on disk (looked in {where}); they need "
                                f"the network: load the model once with pretrained weights where there is network and "
                                f"copy the cache here, or leave --pretrained off")
    return found


def build_library_model(name: str, num_classes: int, image_shape: tuple[int, ...], pretrained: bool = False) -> Classifier:
    """`--model timm:<model>` or `torchvision:<model>` for images of `image_shape` (C, H, W) and `num_classes`
    classes, as `Classifier(extractor, head)`, from scratch or from the weights on disk (module docstring: what is
    adapted)."""
    module = check_library_model(name)
    library, _, model_name = name.partition(":")
    channels, height, width = image_shape
    weights = pretrained_file(name) if pretrained else None
    probe = torch.randn(2, *image_shape, generator=torch.Generator().manual_seed(0))  # verifies the split
    if library == "timm":
        size = {"img_size": (height, width)} if module.models.get_pretrained_cfg(model_name).fixed_input_size else {}
        loaded = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}} if weights else {}
        with _weights_load(name, weights):
            model = module.create_model(model_name, num_classes=num_classes, in_chans=channels, **size, **loaded)
        return split_classifier(model, example_input=probe)
    # torchvision's ViTs take their image size (their position embeddings); its other models any size
    size = {"image_size": height} if model_name.startswith("vit_") else {}
    if size and height != width:
        raise BadValue(f"--model {name} needs square images (torchvision's ViT has one image_size), not {height}x{width}")
    if weights is None:
        model = module.models.get_model(model_name, num_classes=num_classes, **size)
    else:
        model = module.models.get_model(model_name, **size)
        with _weights_load(name, weights):
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        layer_name = find_classification_layer(model)
        replace_module(model, layer_name, nn.Linear(model.get_submodule(layer_name).in_features, num_classes))
    if channels != 3:
        _rebuild_first_conv(model, channels, keep_weights=weights is not None)
    return split_classifier(model, example_input=probe)


@contextlib.contextmanager
def _weights_load(name: str, weights: Path | None) -> Iterator[None]:
    """Loading the weights file on disk of `--model name --pretrained`: one that does not load (empty, truncated,
    not a checkpoint, another model's) is one line naming it, not torch's or timm's traceback."""
    try:
        yield
    except Exception as error:
        if weights is None or isinstance(error, UserError):
            raise
        raise BadValue(f"--model {name} --pretrained: {weights} does not load ({type(error).__name__}: "
                       f"{first_line(error)}); replace it with an intact copy of the weights, or leave --pretrained "
                       "off") from None


def _rebuild_first_conv(model: nn.Module, channels: int, keep_weights: bool) -> None:
    """Replace the first `nn.Conv2d` of `model` (in module order) by one that takes `channels` input channels:
    freshly drawn, or (`keep_weights`) from the RGB weights, summed for one channel, else cycled times 3 / channels."""
    name, conv = next((name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d))
    rebuilt = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    if keep_weights:
        with torch.no_grad():
            rgb = conv.weight
            if channels == 1:
                rebuilt.weight.copy_(rgb.sum(dim=1, keepdim=True))
            else:
                rebuilt.weight.copy_(rgb[:, [c % 3 for c in range(channels)]] * (3 / channels))
            if conv.bias is not None:
                rebuilt.bias.copy_(conv.bias)
    replace_module(model, name, rebuilt)
