"""VGG-13 with BatchNorm (Simonyan & Zisserman, 2015), as torchvision builds it, with a CIFAR variant."""
from __future__ import annotations

from torch import nn

from itra.models.classifier import Classifier
from itra.models.layers import check_stem, conv_bn, init_torchvision

VGG13_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg13_bn(num_classes: int, in_channels: int = 3, stem: str = "cifar") -> Classifier:
    """VGG-13-BN: 3x3 conv (with bias) + BN + ReLU blocks and five 2x2 max-pools, (B, C, H, W) -> (B, 512, H/32, W/32).

    `stem="imagenet"` is torchvision's `vgg13_bn`: average-pool to 7x7, then 25088 -> 4096 -> 4096 linear layers
    with ReLU and Dropout(0.5); features h (B, 4096) after the second Dropout, head Linear(4096, num_classes).
    `stem="cifar"` pools the conv features globally instead: h (B, 512), head Linear(512, num_classes); its
    max-pools round up, so any input size works (28x28 -> 1x1).
    """
    check_stem(stem)
    # Rounding up changes nothing at multiples of 32 (CIFAR, STL-10) and keeps 28x28 or 8x8 inputs from shrinking to 0x0.
    ceil_mode = stem == "cifar"
    layers: list[nn.Module] = []
    channels = in_channels
    for v in VGG13_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        else:
            layers += [*conv_bn(channels, v, 3, bias=True), nn.ReLU(inplace=True)]
            channels = v
    if stem == "imagenet":
        layers += [
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        ]
        channels = 4096
    else:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = Classifier(nn.Sequential(*layers), nn.Linear(channels, num_classes))
    init_torchvision(model, linear_std=0.01)
    return model
