"""ImageNet-style class folders, read lazily with Pillow (ImageNet does not fit in memory).

    root/train/<class>/*.{jpg,jpeg,png}
    root/val/<class>/*.{jpg,jpeg,png}      # ImageNet's flat val/ must first be sorted into class folders

    python -c "from itra.data.image_folder import load_image_folder; print(load_image_folder('/data/imagenet'))"
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from itra.data.splits import Splits
from itra.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, random_horizontal_flip
from itra.errors import BadValue, MissingFile, first_line

EXTENSIONS = (".jpg", ".jpeg", ".png")  # compared case-insensitively
SPLIT_DIRS = ("train", "val")


class UnreadableImage(BadValue, OSError):
    """An image file that cannot be opened or decoded (empty, truncated, not an image, no read permission), found when
    it is read; the message names it. An `OSError` as Pillow's own errors, and a `BadValue`: the CLI prints one line."""


class ImageFolderDataset(Dataset):
    """Items `(image, label)`: image (3, image_size, image_size) float32 normalised with the ImageNet
    statistics, label an int. Each item is opened, converted to RGB, resized so its short side is
    `round(image_size * 256 / 224)` and center-cropped to `image_size` (the standard evaluation crop).
    """

    def __init__(self, samples: list[tuple[Path, int]], classes: tuple[str, ...], image_size: int):
        self.samples = samples
        self.classes = classes
        self.image_size = image_size
        self.resize = round(image_size * 256 / 224)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        """(N,) int64, without opening an image: what a stratified split needs."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                image = _resize_center_crop(image.convert("RGB"), self.resize, self.image_size)
        except (OSError, Image.DecompressionBombError) as error:  # Pillow's UnidentifiedImageError is an OSError
            raise UnreadableImage(f"{path}: cannot read image: {first_line(error)}; replace the file or remove it "
                                  "from its class folder") from None
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # (3, S, S)
        return normalize(pixels.float().div_(255), IMAGENET_MEAN, IMAGENET_STD), label


def _resize_center_crop(image: Image.Image, short_side: int, size: int) -> Image.Image:
    width, height = image.size
    scale = short_side / min(width, height)
    width, height = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = round((width - size) / 2), round((height - size) / 2)
    return image.crop((left, top, left + size, top + size))


def _scan(split_dir: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(path, label) of every image under split_dir/<class>/, in sorted order; every class needs an image."""
    samples, empty = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in _entries(split_dir / name) if p.is_file() and p.suffix.lower() in EXTENSIONS)
        if not files:
            empty.append(name)
        samples.extend((path, label) for path in files)
    if empty:
        raise BadValue(
            f"{split_dir}: no {'/'.join(EXTENSIONS)} images in the folders of {len(empty)} classes: {', '.join(empty)}"
        )
    return samples


def _entries(folder: Path) -> list[Path]:
    """What `folder` holds; a folder that cannot be listed (no permission) is one line naming it."""
    try:
        return list(folder.iterdir())
    except OSError as error:
        raise BadValue(f"{folder}: cannot list it: {error.strerror or error}; give it read and execute permission "
                       "(chmod a+rx)") from None


def load_image_folder(root: Path | str, image_size: int = 224) -> Splits:
    """`root/train` and `root/val` as lazy `ImageFolderDataset`s; classes are train's sorted subfolder names.

    Train and test items get the same resize and center crop; `train_transform` is only a batched
    `random_horizontal_flip` (no random-resized crop). `root/train` must have two or more classes, `root/val`
    exactly train's, and each class folder an image. Images are opened when they are read: one that cannot be
    decoded then raises `UnreadableImage` naming it.
    """
    root = Path(root)
    if root.is_dir():
        _entries(root)  # one that cannot be listed (no permission) is one line naming it
    for split in SPLIT_DIRS:
        if not (root / split).is_dir():
            raise MissingFile(
                f"{root / split}: no such folder; expected root/train/<class>/ and root/val/<class>/"
            )
    if image_size < 1:
        raise BadValue(f"Expected `image_size` to be a positive integer, but got {image_size}")
    classes = tuple(sorted(p.name for p in _entries(root / "train") if p.is_dir()))
    if not classes:
        raise BadValue(f"{root / 'train'}: no class subfolders; expected root/train/<class>/*.jpg")
    val_classes = {p.name for p in _entries(root / "val") if p.is_dir()}
    missing, extra = sorted(set(classes) - val_classes), sorted(val_classes - set(classes))
    if missing or extra:
        raise BadValue(
            f"{root / 'val'}: must have the same class folders as {root / 'train'}; "
            f"missing: {', '.join(missing) or 'none'}; not in train: {', '.join(extra) or 'none'}"
        )
    if len(classes) == 1:
        raise BadValue(f"{root / 'train'}: one class folder, {classes[0]}; a classifier needs two or more: "
                       "root/train/<class>/*.jpg for each class")
    train, test = (ImageFolderDataset(_scan(root / split, classes), classes, image_size) for split in SPLIT_DIRS)
    return Splits(
        "image-folder", train, test, num_classes=len(classes), class_names=classes,
        train_transform=random_horizontal_flip,
    )
