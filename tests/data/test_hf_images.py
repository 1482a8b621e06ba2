"""Each Hub dataset is mimicked by a tiny `save_to_disk` copy with the real columns, features and image modes."""
from pathlib import Path

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from itra.data.hf_images import HF_IMAGE_DATASETS, load_hf_image_dataset  # noqa: E402

SIZES = {"train": 5, "test": 3}


def fake_split(name: str, size: int, seed: int, image_column: str | None = None) -> tuple[Dataset, np.ndarray]:
    """A split like the Hub's: PIL images of the real size and mode, ClassLabel labels; and its pixels (N, H, W, C)."""
    spec = HF_IMAGE_DATASETS[name]
    rng = np.random.default_rng(seed)
    channels = len(spec.mode)
    pixels = rng.integers(0, 256, (size, spec.size, spec.size, channels), dtype=np.uint8)
    images = [PILImage.fromarray(p.squeeze(-1) if channels == 1 else p, mode=spec.mode) for p in pixels]
    num_classes = 100 if name == "cifar100" else 10
    names = [f"class_{k}" for k in range(num_classes)]
    image_column = image_column or spec.image_column
    columns = {image_column: images, spec.label_column: rng.integers(0, num_classes, size).tolist()}
    features = {image_column: Image(), spec.label_column: ClassLabel(names=names)}
    if name == "cifar100":  # the real dataset also carries the 20 superclasses
        columns["coarse_label"] = rng.integers(0, 20, size).tolist()
        features["coarse_label"] = ClassLabel(names=[f"super_{k}" for k in range(20)])
    return Dataset.from_dict(columns, features=Features(features)), pixels


def save(path: Path, **splits: Dataset) -> Path:
    DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("name", sorted(HF_IMAGE_DATASETS))
def test_loads_a_save_to_disk_copy(tmp_path, name):
    spec = HF_IMAGE_DATASETS[name]
    parts = {split: fake_split(name, n, seed) for seed, (split, n) in enumerate(SIZES.items())}
    splits = load_hf_image_dataset(name, save(tmp_path, **{s: d for s, (d, _) in parts.items()}))

    num_classes = 100 if name == "cifar100" else 10
    assert splits.name == name and splits.num_classes == num_classes
    assert splits.class_names == tuple(f"class_{k}" for k in range(num_classes))
    channels = len(spec.mode)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    for split, dataset in (("train", splits.train), ("test", splits.test)):
        data, pixels = parts[split]
        images, labels = dataset.tensors
        assert images.shape == (SIZES[split], channels, spec.size, spec.size) and images.dtype == torch.float32
        assert labels.dtype == torch.int64 and labels.tolist() == data[spec.label_column]
        expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
        torch.testing.assert_close(images * std + mean, expected, atol=1e-5, rtol=0)

    if spec.crop_padding is None:
        assert splits.train_transform is None
    else:
        batch = splits.train.tensors[0]
        out = splits.train_transform(batch, torch.Generator().manual_seed(0))
        assert out.shape == batch.shape


def test_augmentation_padding_suits_the_image_size():
    assert HF_IMAGE_DATASETS["kmnist"].crop_padding is None
    assert HF_IMAGE_DATASETS["cifar10"].crop_padding == HF_IMAGE_DATASETS["cifar100"].crop_padding == 4
    assert HF_IMAGE_DATASETS["stl10"].crop_padding == 12


def test_missing_column_is_a_clear_error(tmp_path):
    train, _ = fake_split("cifar10", 2, 0, image_column="image")  # 'image' where cifar10 has 'img'
    test, _ = fake_split("cifar10", 2, 1)
    with pytest.raises(ValueError, match=r"cifar10: split 'train' needs columns 'img'.*found: \['image', 'label'\]"):
        load_hf_image_dataset("cifar10", save(tmp_path, train=train, test=test))


def test_missing_split_is_a_clear_error(tmp_path):
    train, _ = fake_split("kmnist", 2, 0)
    with pytest.raises(ValueError, match=r"kmnist: no 'test' split; splits found: \['train'\]"):
        load_hf_image_dataset("kmnist", save(tmp_path, train=train))


def test_wrong_image_size_is_a_clear_error(tmp_path):
    train, _ = fake_split("cifar10", 2, 0)
    test, _ = fake_split("stl10", 2, 1)  # 96x96 where cifar10 has 32x32
    test = test.rename_column("image", "img")
    with pytest.raises(ValueError, match="cifar10: split 'test' item 0: expected a 32x32 image, got 96x96"):
        load_hf_image_dataset("cifar10", save(tmp_path, train=train, test=test))


def test_plain_integer_labels_get_numeric_class_names(tmp_path):
    features = Features({"image": Image(), "label": Value("int64")})
    image = PILImage.new("L", (28, 28))
    train = Dataset.from_dict({"image": [image] * 3, "label": [0, 2, 1]}, features=features)
    test = Dataset.from_dict({"image": [image] * 2, "label": [3, 0]}, features=features)
    splits = load_hf_image_dataset("kmnist", save(tmp_path, train=train, test=test))
    assert splits.class_names == ("0", "1", "2", "3") and splits.num_classes == 4


def test_unknown_name():
    with pytest.raises(ValueError, match="Unknown Hugging Face image dataset 'mnist'"):
        load_hf_image_dataset("mnist")


def test_downloads_from_the_hub_into_data_dir(tmp_path, monkeypatch):
    calls = []
    train, _ = fake_split("stl10", 2, 0)
    test, _ = fake_split("stl10", 1, 1)

    def fake_load_dataset(path, cache_dir=None):
        calls.append((path, cache_dir))
        return DatasetDict(train=train, test=test)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_hf_image_dataset("stl10", tmp_path)  # no dataset_dict.json: a cache folder
    assert calls == [("tanganke/stl10", str(tmp_path))] and len(splits.train) == 2


def test_no_network_is_one_clear_line(monkeypatch):
    def offline(path, cache_dir=None):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match="cifar100: downloading uoft-cs/cifar100 needs the network") as error:
        load_hf_image_dataset("cifar100")
    assert "--data-dir" in str(error.value) and "save_to_disk" in str(error.value) and "\n" not in str(error.value)



def test_no_network_with_a_data_dir_that_holds_no_copy_names_it(monkeypatch, tmp_path):
    """A --data-dir without a save_to_disk copy is a cache folder to download into: without the network, the line
    says that the folder holds no copy (a user may have given the wrong one)."""
    def offline(path, cache_dir=None):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError) as error:
        load_hf_image_dataset("cifar100", tmp_path)
    assert f"into --data-dir {tmp_path}, which holds no copy saved by save_to_disk" in str(error.value)
    assert "\n" not in str(error.value)
