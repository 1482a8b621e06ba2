import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from itra.data.fashion_mnist import (
    CLASS_NAMES,
    DEFAULT_DIR,
    MEAN,
    STD,
    IdxFormatError,
    load_fashion_mnist,
    read_idx,
)

needs_real_data = pytest.mark.skipif(
    not DEFAULT_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist"
)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written independently of `read_idx`."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload))
    return path


def write_fake_dir(root: Path, train_size: int, test_size: int, train_labels: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    for prefix, size, num_labels in (
        ("train", train_size, train_size if train_labels is None else train_labels),
        ("t10k", test_size, test_size),
    ):
        write_gz(root / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(rng.integers(0, 256, (size, 28, 28))))
        write_gz(root / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(rng.integers(0, 10, num_labels)))
    return root


@pytest.mark.parametrize("shape", [(5,), (3, 28, 28), (2, 3, 4, 5), (0,)])
def test_read_idx_round_trips(tmp_path, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    tensor = read_idx(write_gz(tmp_path / "x.gz", idx_bytes(array)))
    assert tensor.dtype == torch.uint8
    assert tuple(tensor.shape) == shape
    np.testing.assert_array_equal(tensor.numpy(), array)


def test_idx_helper_writes_the_official_magic_numbers():
    labels = idx_bytes(np.zeros(3, np.uint8))
    images = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    assert labels[:4] == (2049).to_bytes(4, "big") and images[:4] == (2051).to_bytes(4, "big")


@pytest.mark.parametrize("magic", [b"\x00\x00\x0d\x01", b"\x01\x00\x08\x01", b"\x00\x00\x08\x00", b"PK\x03\x04"])
def test_wrong_magic_number(tmp_path, magic):
    path = write_gz(tmp_path / "labels.gz", magic + idx_bytes(np.zeros(4, np.uint8))[4:])
    with pytest.raises(IdxFormatError, match="magic") as error:
        read_idx(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("cut", [1, 100, 28 * 28])
def test_truncated_payload(tmp_path, cut):
    payload = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-cut]
    path = write_gz(tmp_path / "images.gz", payload)
    with pytest.raises(IdxFormatError, match="truncated") as error:
        read_idx(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x08\x03\x00\x00"])
def test_truncated_header(tmp_path, payload):
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(write_gz(tmp_path / "x.gz", payload))


def test_overlong_payload(tmp_path):
    path = write_gz(tmp_path / "labels.gz", idx_bytes(np.zeros(4, np.uint8)) + b"\x00")
    with pytest.raises(IdxFormatError, match="overlong"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    cases = {
        "garbage.gz": b"this is not gzip data at all",
        "cut.gz": good[: len(good) // 2],  # stream ends early: EOFError
        "flipped.gz": good[:12] + bytes(b ^ 0xFF for b in good[12:-8]) + good[-8:],  # bad deflate data
        "crc.gz": good[:-8] + bytes(8),  # CRC and length do not match
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IdxFormatError, match="corrupt gzip") as error:
            read_idx(tmp_path / name)
        assert name in str(error.value) and "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as error:
        read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert "train-images-idx3-ubyte.gz" in str(error.value)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_load_small_fake_dir(tmp_path):
    splits = load_fashion_mnist(write_fake_dir(tmp_path, 7, 3), expected_sizes=(7, 3))
    images, labels = splits.train.tensors
    assert images.shape == (7, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (7,) and labels.dtype == torch.int64
    assert len(splits.test) == 3
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    torch.testing.assert_close(images[:, 0], (raw.double() / 255 - MEAN).div(STD).float())
    torch.testing.assert_close(labels, read_idx(tmp_path / "train-labels-idx1-ubyte.gz").long())
    assert splits.name == "fashion-mnist" and splits.num_classes == 10 and splits.train_transform is None
    assert splits.class_names == CLASS_NAMES and len(CLASS_NAMES) == 10


def test_image_label_count_mismatch(tmp_path):
    write_fake_dir(tmp_path, 7, 3, train_labels=6)
    with pytest.raises(IdxFormatError, match="train-labels-idx1-ubyte.gz: expected 7 train items, got 6"):
        load_fashion_mnist(tmp_path, expected_sizes=(7, 3))


def test_unexpected_split_size(tmp_path):
    write_fake_dir(tmp_path, 7, 3)
    with pytest.raises(IdxFormatError, match="t10k-images-idx3-ubyte.gz: expected 4 test items, got 3"):
        load_fashion_mnist(tmp_path, expected_sizes=(7, 4))


def test_wrong_image_shape_and_label_range(tmp_path):
    write_fake_dir(tmp_path, 2, 2)
    write_gz(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((2, 32, 32), np.uint8)))
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte.gz: expected images of shape \(N, 28, 28\)"):
        load_fashion_mnist(tmp_path, expected_sizes=(2, 2))
    write_fake_dir(tmp_path, 2, 2)
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([3, 10])))
    with pytest.raises(IdxFormatError, match=r"t10k-labels-idx1-ubyte.gz: label 10 outside \[0, 10\)"):
        load_fashion_mnist(tmp_path, expected_sizes=(2, 2))


@needs_real_data
def test_real_data():
    splits = load_fashion_mnist()
    train_images, train_labels = splits.train.tensors
    test_images, test_labels = splits.test.tensors
    assert train_images.shape == (60_000, 1, 28, 28) and test_images.shape == (10_000, 1, 28, 28)
    assert train_images.dtype == test_images.dtype == torch.float32
    assert train_labels.shape == (60_000,) and test_labels.shape == (10_000,)
    assert train_labels.dtype == test_labels.dtype == torch.int64
    assert int(train_labels.min()) == 0 and int(train_labels.max()) == 9 and int(test_labels.max()) == 9
    assert torch.bincount(train_labels, minlength=10).eq(6_000).all()
    assert torch.bincount(test_labels, minlength=10).eq(1_000).all()
    assert abs(train_images.double().mean().item()) < 1e-3
    assert abs(train_images.double().std().item() - 1) < 1e-3


@needs_real_data
def test_mean_and_std_constants_match_the_real_data():
    pixels = read_idx(DEFAULT_DIR / "train-images-idx3-ubyte.gz").double() / 255
    assert round(pixels.mean().item(), 4) == MEAN
    assert round(pixels.std().item(), 4) == STD


@needs_real_data
def test_the_pairs_are_the_max_min_matching_of_the_class_means(splits):
    """`PAIRS` is the perfect matching of the 10 classes whose closest pair of mean images is farthest apart (and of
    those, whose distances add up to most)."""
    from itra.data.fashion_mnist import PAIRS, merge_pairs

    images, labels = splits.train.tensors
    means = torch.stack([images[labels == k].flatten(1).mean(0) for k in range(10)])
    distance = torch.cdist(means, means)

    def matchings(classes):
        if not classes:
            yield ()
            return
        for partner in classes[1:]:
            rest = [k for k in classes[1:] if k != partner]
            for matching in matchings(rest):
                yield ((classes[0], partner), *matching)

    def closest_then_total(matching):
        gaps = [float(distance[a, b]) for a, b in matching]
        return min(gaps), sum(gaps)

    best = max(matchings(list(range(10))), key=closest_then_total)
    assert tuple(sorted(best)) == PAIRS
    merged = merge_pairs(splits)
    assert merged.num_classes == 5 and merged.class_names[0] == "T-shirt/top+Ankle boot"
    assert torch.equal(merged.test.tensors[0], splits.test.tensors[0])
    for label, (a, b) in enumerate(PAIRS):
        assert ((merged.train.tensors[1] == label) == ((labels == a) | (labels == b))).all()
