from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from itra.data.image_folder import ImageFolderDataset, load_image_folder
from itra.data.transforms import IMAGENET_MEAN, IMAGENET_STD, random_horizontal_flip

COLOURS = {"dog": (200, 30, 90), "cat": (10, 250, 128)}  # written in this order: classes must come out sorted


def write_tree(root: Path, classes=("dog", "cat"), val_classes=None, per_class: int = 3) -> Path:
    """root/{train,val}/<class>/ with `per_class` uniform PNGs of mixed sizes and modes, plus a non-image."""
    for split, names in (("train", classes), ("val", classes if val_classes is None else val_classes)):
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = Image.new("RGB", (20 + 7 * i, 17 + 3 * i), COLOURS[name])
                image = image.convert("RGBA") if i == 1 else image
                image.save(folder / f"{i}.PNG" if i == 2 else folder / f"{i}.png")
            (folder / "notes.txt").write_text("not an image")
    return root


def expected_pixel(colour) -> torch.Tensor:
    return (torch.tensor(colour) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)  # (3,)


def test_tree_of_pngs(tmp_path):
    splits = load_image_folder(write_tree(tmp_path), image_size=16)
    assert splits.class_names == ("cat", "dog") and splits.num_classes == 2
    assert len(splits.train) == len(splits.test) == 6
    assert splits.train_transform is random_horizontal_flip
    for dataset in (splits.train, splits.test):
        for (path, label), index in zip(dataset.samples, range(len(dataset))):
            assert splits.class_names[label] == path.parent.name
            image, item_label = dataset[index]
            assert item_label == label
            assert image.shape == (3, 16, 16) and image.dtype == torch.float32
            expected = expected_pixel(COLOURS[path.parent.name]).view(3, 1, 1).expand(3, 16, 16)
            torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)
        assert dataset.labels.tolist() == [dataset[i][1] for i in range(len(dataset))]  # for a stratified split


def test_batches_through_a_data_loader(tmp_path):
    splits = load_image_folder(write_tree(tmp_path), image_size=8)
    images, labels = next(iter(DataLoader(splits.train, batch_size=4)))
    assert images.shape == (4, 3, 8, 8) and labels.dtype == torch.int64
    flipped = splits.train_transform(images, torch.Generator().manual_seed(0))
    assert flipped.shape == images.shape


def test_center_crop_of_an_image_already_at_the_resize_size(tmp_path):
    # image_size 224 resizes the short side to 256: a 256 x 300 (W x H) image keeps its size, then the
    # center 224 x 224 window starts at left (256 - 224) / 2 = 16 and top (300 - 224) / 2 = 38.
    pixels = np.random.default_rng(0).integers(0, 256, (300, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    image, label = ImageFolderDataset([(tmp_path / "x.png", 7)], ("a",), image_size=224)[0]
    window = torch.from_numpy(pixels[38:262, 16:240]).permute(2, 0, 1).float() / 255
    expected = (window - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert label == 7
    torch.testing.assert_close(image, expected)


def test_class_missing_from_val(tmp_path):
    root = write_tree(tmp_path, classes=("dog", "cat"), val_classes=("dog",))
    with pytest.raises(ValueError, match="same class folders.*missing: cat; not in train: none"):
        load_image_folder(root)


def test_class_folder_without_images(tmp_path):
    root = write_tree(tmp_path)
    for path in (root / "val" / "cat").glob("*.png"):
        path.unlink()
    (root / "val" / "cat" / "2.PNG").unlink()
    with pytest.raises(ValueError, match=r"val: no .* images in the folders of 1 classes: cat"):
        load_image_folder(root)


def test_train_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        load_image_folder(tmp_path)


def test_missing_split_folder(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="val: no such folder"):
        load_image_folder(tmp_path)


def test_unreadable_image_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="broken.jpg: cannot read image"):
        ImageFolderDataset([(path, 0)], ("a",), image_size=8)[0]
