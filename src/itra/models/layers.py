"""Blocks shared by ResNet, VGG, MobileNetV2 and the small CNN: `check_stem`, `conv_bn`, `init_torchvision`,
`Residual`, and `exact_pools` (their adaptive pools as fixed windows, for `--deterministic`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from itra.errors import BadValue

STEMS = ("cifar", "imagenet")


def check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise BadValue(f"Expected `stem` to be one of {', '.join(map(repr, STEMS))}, but got {stem!r}")


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


def uniform_windows(size: int, output: int) -> tuple[int, int] | None:
    """(kernel, stride) when adaptive average pooling of `size` to `output` cells uses windows of one length at a
    fixed stride (cell i covers [floor(i size / o), ceil((i + 1) size / o))), e.g. 7 -> 3: kernel 3, stride 2;
    None when it does not (7 -> 4: windows of 2 and 3)."""
    starts = [i * size // output for i in range(output)]
    lengths = {-(-(i + 1) * size // output) - start for i, start in enumerate(starts)}
    stride = starts[1] - starts[0] if output > 1 else size
    if len(lengths) != 1 or stride < 1 or any(b - a != stride for a, b in zip(starts, starts[1:])):
        return None
    return lengths.pop(), stride


class FixedWindowAvgPool(nn.Module):
    """`nn.AdaptiveAvgPool2d(output_size)` as `F.avg_pool2d` with a fixed window where that is the same average
    (`uniform_windows`: always for output 1, and e.g. 7 -> 3), or as each cell repeated where the output is a
    multiple of the input (1 -> 3: every cell averages one), whose CUDA backward is deterministic (the adaptive
    pool's has none); other sizes fall back to the adaptive pool. (B, C, H, W) -> (B, C, oh, ow)."""

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = x.shape[-2:]
        outputs = [size if out is None else out for size, out in zip(sizes, self.output_size)]
        if all(out % size == 0 for size, out in zip(sizes, outputs)):  # (B, C, H, 1, W, 1) expanded: a sum backward
            (h, w), (rh, rw) = sizes, (out // size for size, out in zip(sizes, outputs))
            return x[..., :, None, :, None].expand(*x.shape[:-2], h, rh, w, rw).reshape(*x.shape[:-2], h * rh, w * rw)
        windows = [uniform_windows(size, out) for size, out in zip(sizes, outputs)]
        if None in windows:
            return F.adaptive_avg_pool2d(x, self.output_size)
        (kh, sh), (kw, sw) = windows  # type: ignore[misc]
        return F.avg_pool2d(x, (kh, kw), (sh, sw))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def exact_pools(model: nn.Module) -> nn.Module:
    """`model` with every `nn.AdaptiveAvgPool2d` replaced, in place, by `FixedWindowAvgPool` (no parameters: the
    state dict is unchanged)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(module, name, FixedWindowAvgPool(child.output_size))
    return model
