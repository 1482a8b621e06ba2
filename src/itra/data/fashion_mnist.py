"""Fashion-MNIST (Xiao et al. 2017) from the gzip IDX files of Debian's `dataset-fashion-mnist`.

    apt-get install dataset-fashion-mnist     # installs /usr/share/datasets/fashion-mnist/*.gz
    python -c "from itra.data.fashion_mnist import load_fashion_mnist; print(load_fashion_mnist())"
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from itra.data.splits import Splits
from itra.errors import BadValue, MissingFile

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Mean and std of all pixels of the 60,000 training images on the [0, 1] scale
# (0.28604, 0.35302; tests/data/test_fashion_mnist.py recomputes them from the installed data).
MEAN, STD = 0.2860, 0.3530
INSTALL_HINT = "install the Debian package: apt-get install dataset-fashion-mnist, or pass --data-dir"
REPAIR_HINT = "reinstall it (apt-get install --reinstall dataset-fashion-mnist) or pass --data-dir with an intact copy"
_FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_UINT8 = 0x08  # IDX type byte; Fashion-MNIST uses no other


class IdxFormatError(BadValue):
    """An IDX file that is corrupt, truncated or not the expected content; the message names the file (a user's
    mistake, `BadValue`: the CLI prints it as one line)."""


def read_idx(path: Path) -> torch.Tensor:
    """Read a gzip-compressed IDX file of unsigned bytes into a uint8 tensor of the header's shape.

    IDX layout: magic number `0x00 0x00 0x08 NDIM`, then NDIM big-endian uint32 sizes, then the data
    in row-major order, e.g. labels (N,) with magic 0x00000801, images (N, 28, 28) with 0x00000803.
    Raises `FileNotFoundError` (`MissingFile`) if `path` is missing and `IdxFormatError` (a `BadValue`) if it cannot
    be read or its content is invalid.
    """
    path = Path(path)
    try:
        compressed = path.read_bytes()
    except FileNotFoundError:
        raise MissingFile(f"{path}: no such file; {INSTALL_HINT}") from None
    except OSError as error:  # a folder, a file without read permission
        raise IdxFormatError(f"{path}: cannot read it: {error.strerror or error}") from None
    if compressed[:3] == bytes([0, 0, _UINT8]):
        raise IdxFormatError(f"{path}: a raw IDX file, not gzip-compressed: compress it with `gzip`")
    try:
        raw = gzip.decompress(compressed)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt gzip data: {error}") from None
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: truncated: {len(raw)} bytes, shorter than the 4-byte magic number")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _UINT8 or raw[3] == 0:
        raise IdxFormatError(
            f"{path}: bad magic number 0x{raw[:4].hex()}: expected 0x000008NN (uint8 data, NN >= 1 dims)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated: a header of {ndim} dims needs {header} bytes, got {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected, actual = math.prod(shape), len(raw) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "overlong"
        raise IdxFormatError(f"{path}: {kind}: header says shape {shape} ({expected} bytes) but {actual} bytes follow")
    # copy: frombuffer over immutable bytes is read-only, and callers may write in place
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())


def _read_split(data_dir: Path, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) float32, normalised with `MEAN` and `STD`, and labels (N,) int64."""
    image_path, label_path = (data_dir / name for name in _FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.shape[1:] != (28, 28):
        raise IdxFormatError(f"{image_path}: expected images of shape (N, 28, 28), got {tuple(images.shape)}")
    if labels.ndim != 1:
        raise IdxFormatError(f"{label_path}: expected labels of shape (N,), got {tuple(labels.shape)}")
    for path, count in ((image_path, len(images)), (label_path, len(labels))):
        if count != size:
            raise IdxFormatError(f"{path}: expected {size} {split} items, got {count}")
    if (labels >= len(CLASS_NAMES)).any():
        raise IdxFormatError(f"{label_path}: label {int(labels.max())} outside [0, {len(CLASS_NAMES)})")
    images = images.unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)  # (N, 1, 28, 28)
    return images, labels.long()


def load_fashion_mnist(
    data_dir: Path | str = DEFAULT_DIR, expected_sizes: tuple[int, int] = (60_000, 10_000)
) -> Splits:
    """The official train / test split as `Splits` of `TensorDataset`s of (image, label); no augmentation.

    Images are (N, 1, 28, 28) float32 normalised with the training `MEAN` and `STD`, labels (N,) int64
    in [0, 10). `expected_sizes` is the (train, test) count every file must hold; any mismatch with
    the files, or between images and labels, raises `IdxFormatError` naming the file.
    """
    data_dir = Path(data_dir)
    try:
        train = TensorDataset(*_read_split(data_dir, "train", expected_sizes[0]))
        test = TensorDataset(*_read_split(data_dir, "test", expected_sizes[1]))
    except IdxFormatError as error:  # a damaged file of the dataset: say how to replace it
        raise IdxFormatError(f"{error}; {REPAIR_HINT}") from None
    return Splits("fashion-mnist", train, test, num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)


# Multi-modal classes by construction (the paper's third claim): the 10 classes merged in pairs into 5 labels.
# The pairing is the perfect matching of the 10 classes that maximises the smallest distance between the mean
# training images of paired classes (normalised pixels; of the matchings that tie, the one with the largest sum of
# distances): every pair is at least 23.2 apart, where the classes
# a model confuses (Pullover, Coat, Shirt, T-shirt) are 7-11 apart, so each label holds two distinct modes
# (tests/data/test_fashion_mnist.py recomputes the matching from the installed data).
PAIRS = ((0, 9), (1, 2), (3, 8), (4, 5), (6, 7))  # (T-shirt/top, Ankle boot), (Trouser, Pullover), ...


def merge_pairs(splits: Splits, pairs: tuple[tuple[int, int], ...] = PAIRS) -> Splits:
    """`splits` with class `pairs[j][0]` and `pairs[j][1]` both labelled j: the same images in the same order,
    `len(pairs)` labels named `"first+second"`; `source_class` (`PAIRS`'s inverse) recovers which was which."""
    merged = torch.empty(splits.num_classes, dtype=torch.int64)
    for label, pair in enumerate(pairs):
        merged[list(pair)] = label

    def relabel(dataset: TensorDataset) -> TensorDataset:
        *inputs, labels = dataset.tensors
        return TensorDataset(*inputs, merged[labels])

    names = tuple("+".join(splits.class_names[k] for k in pair) for pair in pairs)
    return Splits(f"{splits.name}-pairs", relabel(splits.train), relabel(splits.test), len(pairs), names)  # type: ignore[arg-type]
