"""Blocks shared by ResNet, VGG, MobileNetV2 and the small CNN: `check_stem`, `conv_bn`, `init_torchvision`
and `Residual`."""
from __future__ import annotations

import torch
from torch import nn

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
