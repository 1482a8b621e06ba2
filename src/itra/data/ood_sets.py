"""Out-of-distribution image sets made offline at a model's image shape, normalised like its training images.

A model sees any input through its training data's preprocessing: itra's loaders map a pixel intensity p in [0, 1]
affinely per channel (Fashion-MNIST: (p - 0.2860) / 0.3530). So each set here is made as intensities in [0, 1] and
mapped onto the range its model's training images span, channel by channel (`pixel_range`: their darkest and
brightest value, which are that map's images of 0 and 1 wherever some training pixel is fully dark and some fully
bright, as in Fashion-MNIST: tests/data/test_ood_sets.py checks it against its MEAN and STD). Normalising a set by
its own statistics instead would hide the very shift a detector is to see.

- `digits_like` (far out-of-distribution): scikit-learn's 1,797 handwritten digits (8x8, intensities 0..16, bundled,
  offline), scaled to [0, 1] and resized bilinearly to the model's height and width, each channel the same. Like
  Fashion-MNIST's objects they are bright strokes on a dark background filling the frame, so their low-level
  statistics are close and their content is of another domain: the offline stand-in for MNIST, the usual far set of
  a Fashion-MNIST model, which no Debian package ships.
- `uniform_noise`: every pixel drawn uniformly from [0, 1], by a fixed seed.

Each is a `TensorDataset` of (images (N, C, H, W) float32, labels (N,) int64): the digit for `digits_like`, -1 (no
class) for noise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from itra.data.batches import ordered_batches
from itra.errors import BadValue, MissingPackage


def pixel_range(dataset: Dataset, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest and largest value (C,) of each channel over the images (N, C, H, W) of `dataset`.

    >>> images = torch.tensor([[[[0.0, 2.0]]], [[[-1.0, 1.0]]]])  # two 1x1x2 images
    >>> pixel_range(TensorDataset(images, torch.tensor([0, 1])))
    (tensor([-1.]), tensor([2.]))
    """
    low = high = None
    for images, *_ in ordered_batches(dataset, batch_size):
        if images.ndim != 4:
            raise BadValue(f"Expected images (N, C, H, W), but got a batch of shape {tuple(images.shape)}")
        batch_low, batch_high = images.amin(dim=(0, 2, 3)), images.amax(dim=(0, 2, 3))  # (C,)
        low = batch_low if low is None else torch.minimum(low, batch_low)
        high = batch_high if high is None else torch.maximum(high, batch_high)
    if low is None:
        raise BadValue("Expected a dataset with at least one image, but got none")
    return low, high


def like_training_images(intensities: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Intensities (N, C, H, W) in [0, 1] mapped onto [low, high] (C,) per channel: low + p (high - low).

    >>> like_training_images(torch.tensor([[[[0.0, 0.5, 1.0]]]]), torch.tensor([-1.0]), torch.tensor([3.0]))
    tensor([[[[-1.,  1.,  3.]]]])
    """
    return low[:, None, None] + intensities * (high - low)[:, None, None]


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise BadValue(f"Expected an image shape (C, H, W) of positive integers, but got {shape!r}")


def digits_like(shape: tuple[int, int, int], low: torch.Tensor, high: torch.Tensor) -> TensorDataset:
    """scikit-learn's 1,797 digits as images of `shape` (C, H, W), normalised onto [low, high] (C,) per channel
    (module docstring): intensities / 16, bilinear resize (align_corners=False), repeated over the C channels.

    >>> images, digit = digits_like((1, 28, 28), torch.tensor([-1.0]), torch.tensor([3.0])).tensors
    >>> tuple(images.shape), bool(((images >= -1) & (images <= 3)).all()), digit[:3].tolist()
    ((1797, 1, 28, 28), True, [0, 1, 2])
    """
    _check_shape(shape)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingPackage("the digits OOD set ships with scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div(16).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=shape[1:], mode="bilinear", align_corners=False).clamp(0, 1)
    images = like_training_images(images.expand(-1, shape[0], -1, -1), low, high)  # (1797, C, H, W)
    return TensorDataset(images.contiguous(), torch.from_numpy(digits.target).long())


def uniform_noise(count: int, shape: tuple[int, int, int], low: torch.Tensor, high: torch.Tensor,
                  seed: int = 0) -> TensorDataset:
    """`count` images of `shape` (C, H, W) with every intensity uniform in [0, 1) (from `seed`), normalised onto
    [low, high] (C,) per channel; labels -1.

    >>> noise = uniform_noise(3, (1, 2, 2), torch.tensor([0.0]), torch.tensor([1.0]))
    >>> tuple(noise.tensors[0].shape), noise.tensors[1].tolist()
    ((3, 1, 2, 2), [-1, -1, -1])
    """
    _check_shape(shape)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BadValue(f"Expected `count` to be an integer larger than 0, but got {count!r}")
    intensities = torch.rand(count, *shape, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(like_training_images(intensities, low, high), torch.full((count,), -1, dtype=torch.int64))
