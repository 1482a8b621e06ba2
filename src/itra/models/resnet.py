"""ResNet-18/50/101 (He et al., 2016), as torchvision builds them, with a CIFAR or an ImageNet stem."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from itra.models.classifier import Classifier
from itra.models.layers import Residual, check_stem, conv_bn, init_torchvision


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or torchvision's `downsample` (strided 1x1 conv + BN) when the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))


def basic_block(in_channels: int, planes: int, stride: int) -> Residual:
    """Two 3x3 convs (the first strided): (B, C_in, H, W) -> (B, planes, H / stride, W / stride)."""
    branch = nn.Sequential(*conv_bn(in_channels, planes, 3, stride), nn.ReLU(inplace=True), *conv_bn(planes, planes, 3))
    return Residual(branch, _shortcut(in_channels, planes, stride), nn.ReLU(inplace=True))


def bottleneck(in_channels: int, planes: int, stride: int) -> Residual:
    """1x1, strided 3x3 (ResNet v1.5), 1x1 convs: (B, C_in, H, W) -> (B, 4 * planes, H / stride, W / stride)."""
    branch = nn.Sequential(
        *conv_bn(in_channels, planes, 1), nn.ReLU(inplace=True),
        *conv_bn(planes, planes, 3, stride), nn.ReLU(inplace=True),
        *conv_bn(planes, 4 * planes, 1),
    )
    return Residual(branch, _shortcut(in_channels, 4 * planes, stride), nn.ReLU(inplace=True))


class ResNetExtractor(nn.Sequential):
    """The stem, the stages and global average pooling in one `nn.Sequential`, whose state-dict keys (indices)
    are those of earlier checkpoints; `exits` also pools the output of every stage."""

    def __init__(self, stem: list[nn.Module], stages: list[nn.Sequential], stage_widths: list[int]) -> None:
        super().__init__(*stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, C, H, W) -> (B, channels)
        self.num_stages = len(stages)
        self.exit_dims = stage_widths  # the channels out of each stage

    def __getitem__(self, index: int | slice) -> nn.Module:
        if isinstance(index, slice):  # nn.Sequential would call our __init__; a slice is no whole ResNet anyway
            return nn.Sequential(*list(self)[index])
        return super().__getitem__(index)

    def exits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output, globally average-pooled: (B, 64 e), (B, 128 e), (B, 256 e), (B, 512 e), e = 1
        (ResNet-18) or 4 (bottleneck); the last is `forward(images)`. The widths differ, so the sample-wise
        cosine does not apply between stages: compare them with `similarity.linear_cka`."""
        *layers, pool, flatten = self
        first_stage = len(layers) - self.num_stages
        x, exits = images, []
        for index, layer in enumerate(layers):
            x = layer(x)
            if index >= first_stage:
                exits.append(flatten(pool(x)))
        return exits


def _resnet(
    block: Callable[[int, int, int], Residual], expansion: int, depths: tuple[int, int, int, int],
    num_classes: int, in_channels: int, stem: str,
) -> Classifier:
    check_stem(stem)
    if stem == "cifar":
        stem_layers = [*conv_bn(in_channels, 64, 3), nn.ReLU(inplace=True)]
    else:
        stem_layers = [*conv_bn(in_channels, 64, 7, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    stages, widths = [], []
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        stage = []
        for j in range(depth):
            stage.append(block(channels, planes, 2 if i > 0 and j == 0 else 1))
            channels = planes * expansion
        stages.append(nn.Sequential(*stage))
        widths.append(channels)
    model = Classifier(ResNetExtractor(stem_layers, stages, widths), nn.Linear(channels, num_classes))
    init_torchvision(model)
    return model


def resnet18(num_classes: int, in_channels: int = 3, stem: str = "cifar") -> Classifier:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]); features h (B, 512). `stem="cifar"`: one 3x3 stride-1 conv and
    no max-pool (32x32 inputs end at 4x4); `stem="imagenet"`: 7x7 stride-2 conv and 3x3 stride-2 max-pool."""
    return _resnet(basic_block, 1, (2, 2, 2, 2), num_classes, in_channels, stem)


def resnet50(num_classes: int, in_channels: int = 3, stem: str = "cifar") -> Classifier:
    """ResNet-50 (Bottleneck v1.5, [3, 4, 6, 3]); features h (B, 2048). Stems as in `resnet18`."""
    return _resnet(bottleneck, 4, (3, 4, 6, 3), num_classes, in_channels, stem)


def resnet101(num_classes: int, in_channels: int = 3, stem: str = "cifar") -> Classifier:
    """ResNet-101 (Bottleneck v1.5, [3, 4, 23, 3]); features h (B, 2048). Stems as in `resnet18`."""
    return _resnet(bottleneck, 4, (3, 4, 23, 3), num_classes, in_channels, stem)
