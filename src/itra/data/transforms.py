"""Batched image transforms in plain torch (no torchvision), and each dataset's channel statistics.

Augmentations take a whole batch `(B, C, H, W)` and an explicit `torch.Generator`, so the same seed
gives the same augmented batches (`Splits.train_transform`). Random numbers are drawn on the
generator's device and moved to the batch's, so a CPU generator can augment a CUDA batch; the copy
goes through pinned memory without blocking (`on_device`), so augmenting waits for no kernel.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from itra.data.splits import BatchTransform
from itra.errors import BadValue

# Per-channel mean and std of the training images on the [0, 1] scale.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
STL10_MEAN, STL10_STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)
KMNIST_MEAN, KMNIST_STD = (0.1918,), (0.3483,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """`(images - mean) / std` per channel: images (N, C, H, W) or (C, H, W) float in [0, 1], len(mean) == C."""
    channels = images.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise BadValue(
            f"Expected {channels} channel statistics for images of shape {tuple(images.shape)}, "
            f"but got mean {tuple(mean)} and std {tuple(std)}"
        )
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean_t) / std_t


def on_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`values` on `device`: a CPU tensor bound for CUDA is pinned and copied without blocking the host."""
    if values.device == device or device.type != "cuda" or values.device.type != "cpu":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)


def random_crop(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each side by `padding`, then take an independent random H x W window per image.

    batch (B, C, H, W) -> (B, C, H, W). Padding is with zeros, i.e. the dataset mean once normalised.
    """
    if padding < 0:
        raise BadValue(f"Expected `padding` to be a non-negative integer, but got {padding}")
    if padding == 0:
        return batch
    b, _, h, w = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # (B, H+2p, W+2p, C)
    top, left = (
        on_device(torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=generator.device), batch.device)
    )
    rows = top[:, None] + torch.arange(h, device=batch.device)  # (B, H)
    cols = left[:, None] + torch.arange(w, device=batch.device)  # (B, W)
    index = torch.arange(b, device=batch.device)[:, None, None]
    crops = padded[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2).contiguous()


def random_horizontal_flip(batch: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image of batch (B, C, H, W) left-right, independently with probability `p`."""
    if not 0.0 <= p <= 1.0:
        raise BadValue(f"Expected `p` to be a probability in [0, 1], but got {p}")
    flip = on_device(torch.rand(batch.shape[0], generator=generator, device=generator.device), batch.device) < p
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


def standard_augmentation(padding: int = 4) -> BatchTransform:
    """The CIFAR recipe: `random_crop` with zero padding, then `random_horizontal_flip` with p = 0.5."""

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_horizontal_flip(random_crop(batch, padding, generator), generator)

    return augment
