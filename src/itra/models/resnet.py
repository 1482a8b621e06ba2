"""ResNet-18/50/101 (He et al., 2016), as torchvision builds them, with a CIFAR or an ImageNet stem.

Also the pieces the other image models share: `check_stem`, `conv_bn`, `Residual`, `init_torchvision`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from itra.models.classifier import Classifier

STEMS = ("cifar", "imagenet")


def check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ValueError(f"Expected `stem` to be one of {', '.join(map(repr, STEMS))}, but got {stem!r}")


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1, bias: bool = False
) -> list[nn.Module]:
    """Conv with padding `kernel_size // 2`, then BatchNorm: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
    return [conv, nn.BatchNorm2d(out_channels)]


def init_torchvision(module: nn.Module, linear_std: float | None = None) -> None:
    """torchvision's initialisation: kaiming-normal (fan-out, ReLU gain) conv weights and zero conv biases,
    BatchNorm weight 1 and bias 0; with `linear_std`, linear weights N(0, linear_std^2) and zero biases
    (otherwise linear layers keep PyTorch's default, as in torchvision's ResNet)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


class Residual(nn.Module):
    """`activation(branch(x) + shortcut(x))`; both paths map (B, C_in, H, W) to the same (B, C_out, H', W')."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module | None = None, activation: nn.Module | None = None) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = nn.Identity() if shortcut is None else shortcut
        self.activation = nn.Identity() if activation is None else activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.branch(x) + self.shortcut(x))


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


def _resnet(
    block: Callable[[int, int, int], Residual], expansion: int, depths: tuple[int, int, int, int],
    num_classes: int, in_channels: int, stem: str,
) -> Classifier:
    check_stem(stem)
    if stem == "cifar":
        layers = [*conv_bn(in_channels, 64, 3), nn.ReLU(inplace=True)]
    else:
        layers = [*conv_bn(in_channels, 64, 7, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        stage = []
        for j in range(depth):
            stage.append(block(channels, planes, 2 if i > 0 and j == 0 else 1))
            channels = planes * expansion
        layers.append(nn.Sequential(*stage))
    extractor = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, C, H, W) -> (B, channels)
    model = Classifier(extractor, nn.Linear(channels, num_classes))
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
