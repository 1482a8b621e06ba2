"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8x8 images, values 0..16.

    python -c "from itra.data.digits import load_digits; print(load_digits())"
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from itra.data.splits import Splits
from itra.errors import BadValue

CLASS_NAMES = tuple(str(d) for d in range(10))


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """A stratified train / test split, fixed by `seed`, as `TensorDataset`s of (image, label); no augmentation.

    Images are (N, 1, 8, 8) float32 normalised with the mean and std of all training pixels (so no
    test statistics leak in), labels (N,) int64 in [0, 10). Each class's test count is
    `test_fraction` of its samples, rounded (sklearn's `train_test_split(stratify=...)`).
    """
    try:  # optional dependency: only this loader needs it
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("digits: the dataset ships with scikit-learn: pip install scikit-learn") from None

    if not 0.0 < test_fraction < 1.0:
        raise BadValue(f"Expected `test_fraction` in (0, 1), but got {test_fraction}")
    digits = sklearn_digits()
    images = torch.from_numpy(digits.images.astype(np.float32)).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    train_images, test_images = images[train_index], images[test_index]
    mean, std = train_images.mean(), train_images.std()
    return Splits(
        "digits",
        TensorDataset((train_images - mean) / std, labels[train_index]),
        TensorDataset((test_images - mean) / std, labels[test_index]),
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
    )
