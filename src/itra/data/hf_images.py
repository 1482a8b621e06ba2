"""KMNIST, CIFAR-10, CIFAR-100 and STL-10 from the Hugging Face Hub, as in-memory `Splits`.

    pip install datasets pillow
    python -c "from itra.data.hf_images import load_hf_image_dataset; print(load_hf_image_dataset('cifar10'))"

For an offline machine, save a copy where the Hub is reachable and pass its folder as `data_dir`:

    python -c "import datasets; datasets.load_dataset('uoft-cs/cifar10').save_to_disk('cifar10')"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from itra.data import transforms
from itra.data.hub import SPLITS, check_column_type, load_hub_dataset_dict
from itra.data.splits import BatchTransform, Splits
from itra.errors import BadValue

_DECODE_BATCH = 1000  # images held as PIL objects at a time while decoding


@dataclass(frozen=True)
class HubImageDataset:
    """Where a dataset lives on the Hub, its columns, and how its images look once decoded."""

    hub_name: str
    image_column: str
    label_column: str
    mode: str  # Pillow mode the images are converted to: "L" (1 channel) or "RGB" (3)
    size: int  # images are size x size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int | None  # `standard_augmentation(crop_padding)` for training; None: no augmentation


HF_IMAGE_DATASETS = {
    "kmnist": HubImageDataset(
        "tanganke/kmnist", "image", "label", "L", 28, transforms.KMNIST_MEAN, transforms.KMNIST_STD, None
    ),
    "cifar10": HubImageDataset(
        "uoft-cs/cifar10", "img", "label", "RGB", 32, transforms.CIFAR10_MEAN, transforms.CIFAR10_STD, 4
    ),
    "cifar100": HubImageDataset(
        "uoft-cs/cifar100", "img", "fine_label", "RGB", 32, transforms.CIFAR100_MEAN, transforms.CIFAR100_STD, 4
    ),
    "stl10": HubImageDataset(
        "tanganke/stl10", "image", "label", "RGB", 96, transforms.STL10_MEAN, transforms.STL10_STD, 12
    ),
}


def load_hf_image_dataset(name: str, data_dir: Path | str | None = None) -> Splits:
    """The official train / test split of `name` (a key of `HF_IMAGE_DATASETS`) as `TensorDataset`s.

    If `data_dir` holds a `DatasetDict.save_to_disk` copy (a `dataset_dict.json`), it is read from
    there, offline; otherwise `datasets.load_dataset` downloads it, caching under `data_dir` (None:
    the Hugging Face default cache). Images are (N, C, size, size) float32 normalised with the
    dataset's channel statistics, labels (N,) int64; CIFAR and STL-10 train with
    `standard_augmentation` (random crop with 4 or 12 pixels of padding, flip), KMNIST without.
    """
    if name not in HF_IMAGE_DATASETS:
        raise BadValue(
            f"Unknown Hugging Face image dataset {name!r}; expected one of: {', '.join(HF_IMAGE_DATASETS)}"
        )
    spec = HF_IMAGE_DATASETS[name]
    dataset_dict = load_hub_dataset_dict(name, spec.hub_name, None if data_dir is None else Path(data_dir))
    for split in SPLITS:
        columns = dataset_dict[split].column_names
        if spec.image_column not in columns or spec.label_column not in columns:
            raise BadValue(
                f"{name}: split {split!r} needs columns {spec.image_column!r} (image) and {spec.label_column!r} "
                f"(label); columns found: {columns}"
            )
        check_column_type(name, split, dataset_dict[split], spec.image_column, "images", spec.hub_name)
        check_column_type(name, split, dataset_dict[split], spec.label_column, "labels", spec.hub_name)
    class_names = _class_names(spec, dataset_dict)
    train, test = (
        TensorDataset(*_to_tensors(name, spec, dataset_dict[split], split, len(class_names))) for split in SPLITS
    )
    augment: BatchTransform | None = None
    if spec.crop_padding is not None:
        augment = transforms.standard_augmentation(spec.crop_padding)
    return Splits(name, train, test, num_classes=len(class_names), class_names=class_names, train_transform=augment)


def _class_names(spec: HubImageDataset, dataset_dict) -> tuple[str, ...]:
    """The ClassLabel names of the label column, or "0".."K-1" when it is a plain integer column."""
    feature = dataset_dict["train"].features[spec.label_column]
    if hasattr(feature, "names"):
        return tuple(feature.names)
    top = max(max(dataset_dict[split][spec.label_column]) for split in SPLITS)
    return tuple(str(k) for k in range(top + 1))


def _to_tensors(
    name: str, spec: HubImageDataset, split_data, split: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, size, size) float32 normalised, and labels (N,) int64, decoded with Pillow."""
    channels = len(spec.mode)
    pixels = np.empty((len(split_data), spec.size, spec.size, channels), dtype=np.uint8)  # (N, H, W, C)
    start = 0
    for batch in split_data.select_columns([spec.image_column]).iter(batch_size=_DECODE_BATCH):
        for image in batch[spec.image_column]:
            if image.size != (spec.size, spec.size):
                raise BadValue(
                    f"{name}: split {split!r} item {start}: expected a {spec.size}x{spec.size} image, got "
                    f"{image.size[0]}x{image.size[1]}"
                )
            pixels[start] = np.asarray(image.convert(spec.mode), dtype=np.uint8).reshape(spec.size, spec.size, channels)
            start += 1
    labels = torch.as_tensor(np.asarray(split_data[spec.label_column], dtype=np.int64))
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise BadValue(
            f"{name}: split {split!r} has labels {int(labels.min())}..{int(labels.max())}, outside [0, {num_classes})"
        )
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().float().div_(255)  # (N, C, H, W)
    return transforms.normalize(images, spec.mean, spec.std), labels
