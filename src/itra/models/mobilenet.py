"""MobileNetV2 (Sandler et al., 2018), width 1.0, as torchvision builds it, with a CIFAR variant."""
from __future__ import annotations

from torch import nn

from itra.models.classifier import Classifier
from itra.models.layers import Residual, check_stem, conv_bn, init_torchvision

# (expansion t, output channels c, blocks n, stride of the first block s), Table 2 of the paper.
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def inverted_residual(in_channels: int, out_channels: int, stride: int, expansion: int) -> nn.Module:
    """1x1 expand (skipped when `expansion` is 1), 3x3 depthwise (strided), linear 1x1 project:
    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride); residual when the shape is kept."""
    hidden = in_channels * expansion
    expand = [] if expansion == 1 else [*conv_bn(in_channels, hidden, 1), nn.ReLU6(inplace=True)]
    branch = nn.Sequential(
        *expand,
        *conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True),
        *conv_bn(hidden, out_channels, 1),
    )
    return Residual(branch) if stride == 1 and in_channels == out_channels else branch


def mobilenet_v2(num_classes: int, in_channels: int = 3, stem: str = "cifar") -> Classifier:
    """MobileNetV2: features h (B, 1280) after global average pooling and Dropout(0.2); head Linear(1280, num_classes).

    `stem="imagenet"` is torchvision's `mobilenet_v2` (input downsampled 32x). `stem="cifar"` makes the first
    conv and the first 24-channel block stride 1 (input downsampled 8x, so 32x32 inputs end at 4x4).
    """
    check_stem(stem)
    cifar = stem == "cifar"
    layers = [*conv_bn(in_channels, 32, 3, stride=1 if cifar else 2), nn.ReLU6(inplace=True)]
    channels = 32
    for i, (t, c, n, s) in enumerate(INVERTED_RESIDUAL_SETTINGS):
        stride = 1 if cifar and i == 1 else s
        for j in range(n):
            layers.append(inverted_residual(channels, c, stride if j == 0 else 1, t))
            channels = c
    extractor = nn.Sequential(
        *layers, *conv_bn(channels, 1280, 1), nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
    )
    model = Classifier(extractor, nn.Linear(1280, num_classes))
    init_torchvision(model, linear_std=0.01)
    return model
