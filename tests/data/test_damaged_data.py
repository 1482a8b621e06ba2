"""Damaged dataset files, as a class: every file (and folder) that a dataset loader reads from its data directory x
every kind of damage, each instance made on a fresh copy of a tiny valid fixture that is first checked to load, and
damages of every loader through `itra train --data-dir`.

An instance ends in one of two ways, and the grid says which (`HARMLESS`): refused, with a `UserError` whose message is
one line naming the damaged file; or loaded, where the damage provably does no harm (the reason is written next to
it). The loaders: Fashion-MNIST's gzip IDX files, WordNet's data files, ImageNet-style image folders, and the Hugging
Face `save_to_disk` copies of the Hub image and text datasets (skipped without `datasets`). The OOD sets of
`itra.data.ood_sets` read no file (scikit-learn's bundled digits, generated noise), so they have no instance here.
"""
from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from itra.cli import main
from itra.data.fashion_mnist import DEFAULT_DIR as FMNIST_DIR, load_fashion_mnist
from itra.data.image_folder import load_image_folder
from itra.data.paired import PairedLoader
from itra.data.wordnet import load_wordnet
from itra.errors import UserError
from tests.data.test_fashion_mnist import write_fake_dir
from tests.data.test_image_folder import write_tree
from tests.data.test_wordnet import LICENCE, write_data

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads a file whatever its mode


# ---------------------------------------------------------------- the valid fixtures and how each loader reads them
def fashion_fixture(root: Path) -> None:
    write_fake_dir(root, 7, 3)


def wordnet_fixture(root: Path) -> None:
    write_data(root, [(5, "a dog"), (5, "a cat"), (18, "a human being"), (18, "a child")],
               [(29, "breathe in"), (29, "breathe out"), (43, "fall as rain"), (43, "fall as snow")])


def image_folder_fixture(root: Path) -> None:
    """write_tree's PNGs (and a notes.txt) in train/ and val/ of cat and dog, and a JPEG in each class folder."""
    write_tree(root)
    for folder in root.glob("*/*"):
        Image.new("RGB", (24, 18), (90, 60, 30)).save(folder / "3.jpg", quality=90)


def hf_images_fixture(root: Path) -> None:
    from tests.data.test_hf_images import fake_split, save

    save(root, train=fake_split("kmnist", 5, 0)[0], test=fake_split("kmnist", 3, 1)[0])


def hf_text_fixture(root: Path) -> None:
    from tests.data.test_hf_text import fake_split, save

    save(root, train=fake_split("ag-news", 0)[0], test=fake_split("ag-news", 1, 3)[0])


def read_every_image(root: Path):
    """The lazy image folder, each of its images read: a damaged image shows when it is read, not when it is listed."""
    splits = load_image_folder(root, image_size=8)
    for dataset in (splits.train, splits.test):
        for index in range(len(dataset)):
            dataset[index]
    return splits


def hf_images(root: Path):
    from itra.data.hf_images import load_hf_image_dataset

    return load_hf_image_dataset("kmnist", root)


def hf_text(root: Path):
    from itra.data.hf_text import load_hf_text_dataset

    return load_hf_text_dataset("ag-news", root)


EVERY_FILE = ("deleted", "empty", "truncated", "random", "text", "directory", "unreadable")
IDX = ("not-gzip", "magic", "fewer-items", "overlong", "shape", "other-file")
WORDNET = ("not-utf8", "gzip", "lex-filenum", "header-only", "other-category", "torn-last-line", "crlf",
           "blank-line")
IMAGE = ("other-format",)
FOLDER = ("deleted", "empty", "file", "unreadable", "no-images")
SPLIT_FILES = ("train/state.json", "train/dataset_info.json", "test/data-00000-of-00001.arrow")  # save_to_disk's
JSON = ("list", "null", "no-splits", "other-splits")
CONTENT = ("missing-split", "missing-column", "empty-split", "filtered-to-empty", "not-a-dataset-dict", "labels-out-of-range",
           "labels-as-text", "labels-as-float", "labels-none", "inputs-as-numbers", "inputs-none")


@dataclass(frozen=True)
class Loader:
    """A loader of files in a data directory: the valid fixture it reads, how it reads all of it, and what to damage:
    {file or folder relative to the data directory ("." the data itself): its damages}."""

    fixture: Callable[[Path], None]
    load: Callable[[Path], object]
    targets: dict[str, tuple[str, ...]]
    needs: str | None = None  # an optional package


LOADERS = {
    "fashion-mnist": Loader(fashion_fixture, lambda root: load_fashion_mnist(root, expected_sizes=(7, 3)), {
        "train-images-idx3-ubyte.gz": EVERY_FILE + IDX,
        "train-labels-idx1-ubyte.gz": EVERY_FILE + IDX + ("labels-out-of-range",),
        "t10k-images-idx3-ubyte.gz": EVERY_FILE + IDX,
        "t10k-labels-idx1-ubyte.gz": EVERY_FILE + IDX + ("labels-out-of-range",), ".": ("unreadable",),
    }),
    "wordnet": Loader(wordnet_fixture, lambda root: load_wordnet(root, test_fraction=0.5), {
        "data.noun": EVERY_FILE + WORDNET, "data.verb": EVERY_FILE + WORDNET, ".": ("unreadable",),
    }),
    "image-folder": Loader(image_folder_fixture, read_every_image, {
        "train/cat/0.png": EVERY_FILE + IMAGE, "val/dog/3.jpg": EVERY_FILE + IMAGE,
        "train": FOLDER, "val": FOLDER, "train/dog": FOLDER, "val/cat": FOLDER,
        ".": ("one-class", "extra-val-class", "unreadable"),
    }),
    "hf-images": Loader(hf_images_fixture, hf_images, {
        "dataset_dict.json": EVERY_FILE + JSON, **{path: EVERY_FILE + JSON[:2] for path in SPLIT_FILES[:2]},
        SPLIT_FILES[2]: EVERY_FILE, "train": FOLDER[:-1], ".": CONTENT + ("unreadable",),
    }, needs="datasets"),
    "hf-text": Loader(hf_text_fixture, hf_text, {
        "dataset_dict.json": EVERY_FILE + JSON, **{path: EVERY_FILE + JSON[:2] for path in SPLIT_FILES[:2]},
        SPLIT_FILES[2]: EVERY_FILE, "test": FOLDER[:-1], ".": CONTENT + ("unreadable",),
    }, needs="datasets"),
}
FMNIST_FILES = tuple(target for target in LOADERS["fashion-mnist"].targets if target != ".")  # its four files

# (loader, target, damage): why the loader reads it right
HARMLESS = {
    **{("image-folder", image, "deleted"): "the folder is listed when it loads: the other images of the class remain"
       for image in ("train/cat/0.png", "val/dog/3.jpg")},
    **{("image-folder", image, "directory"): "a folder named like an image is no file: not listed, like notes.txt"
       for image in ("train/cat/0.png", "val/dog/3.jpg")},
    **{("image-folder", image, "other-format"): "Pillow reads an image by its content, not by its name"
       for image in ("train/cat/0.png", "val/dog/3.jpg")},
    **{("wordnet", name, "crlf"): "a line's fields are split on white space and its gloss stripped"
       for name in ("data.noun", "data.verb")},
    ("hf-text", ".", "inputs-none"): "a missing text field is left out of the joined text, as documented (an empty "
                                     "title of Amazon's CSVs reads as None)",
}
CONTENT_SPLIT = {"missing-split": "test", "empty-split": "test", "filtered-to-empty": "test"}  # the split a damage of the data is in; else train


def cases() -> list[tuple[str, str, str]]:
    return [(loader, target, damage) for loader, spec in LOADERS.items() for target, damages in spec.targets.items()
            for damage in damages]


CASES = cases()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Each loader's valid fixture, written once; every instance damages a copy."""
    root = tmp_path_factory.mktemp("valid")
    made = {}
    for name, spec in LOADERS.items():
        if spec.needs is not None and not _importable(spec.needs):
            continue
        (root / name).mkdir()
        spec.fixture(root / name)
        made[name] = root / name
    if all((FMNIST_DIR / name).is_file() for name in FMNIST_FILES):  # for the command line: the real sizes
        (root / "fashion-mnist-real").mkdir()
        for name in FMNIST_FILES:
            (root / "fashion-mnist-real" / name).symlink_to(FMNIST_DIR / name)  # a copy is made of what it points to
        made["fashion-mnist-real"] = root / "fashion-mnist-real"
    return made


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def fresh_copy(fixtures: dict[str, Path], loader: str, tmp_path: Path) -> Path:
    """A copy of `loader`'s fixture (files, not links to them: a damage never reaches the original)."""
    if loader == "fashion-mnist-real" and loader not in fixtures:
        pytest.skip("apt-get install dataset-fashion-mnist")
    if loader not in fixtures:
        pytest.importorskip(LOADERS[loader].needs)
    root = tmp_path.resolve() / "data"
    shutil.copytree(fixtures[loader], root)
    return root


@pytest.mark.parametrize("loader", list(LOADERS))
def test_the_valid_fixture_loads(fixtures, tmp_path, loader):
    splits = LOADERS[loader].load(fresh_copy(fixtures, loader, tmp_path))
    assert splits.num_classes >= 2


# ---------------------------------------------------------------- damages
def _random_bytes(seed: str, size: int = 256) -> bytes:
    return b"\xff" + random.Random(seed).randbytes(size - 1)  # 0xff: neither UTF-8, gzip nor an image


def _idx(payload: bytes, kind: str, path: Path) -> bytes:
    """The IDX payload of `path` damaged by `kind` (a valid gzip stream of the wrong content)."""
    ndim = payload[3]
    shape = struct.unpack(f">{ndim}I", payload[4:4 + 4 * ndim])
    data = payload[4 + 4 * ndim:]
    if kind == "magic":
        return payload[:2] + b"\x0d" + payload[3:]  # type 0x0d: float32
    if kind == "fewer-items":  # a valid file of one item fewer
        item = len(data) // shape[0]
        return bytes([0, 0, 8, ndim]) + struct.pack(f">{ndim}I", shape[0] - 1, *shape[1:]) + data[item:]
    if kind == "overlong":
        return payload + b"\x00"
    if kind == "shape":  # images as (N, 784), labels as (N, 1)
        flat = (shape[0], len(data) // shape[0])
        return bytes([0, 0, 8, 2]) + struct.pack(">2I", *flat) + data
    if kind == "labels-out-of-range":
        return payload[:-1] + b"\x0a"  # class 10 of 0..9
    assert kind == "other-file", kind  # the images where the labels belong, and the other way round
    other = path.name.replace("images-idx3", "IMAGES").replace("labels-idx1", "images-idx3").replace(
        "IMAGES", "labels-idx1")
    return gzip.decompress((path.parent / other).read_bytes())


def _wordnet(text: str, kind: str, path: Path) -> bytes:
    synsets = text[len(LICENCE):]
    if kind == "not-utf8":  # a gloss in Latin-1
        return text.replace(" | ", " | caf\xe9 ", 1).encode("latin-1")
    if kind == "gzip":
        return gzip.compress(text.encode())
    if kind == "lex-filenum":
        return (LICENCE + synsets.replace(synsets[9:11], "45", 1)).encode()
    if kind == "header-only":
        return LICENCE.encode()
    if kind == "other-category":  # the other file's synsets: verbs in data.noun, nouns in data.verb
        other = path.parent / ("data.verb" if path.name == "data.noun" else "data.noun")
        return other.read_bytes()
    if kind == "torn-last-line":  # cut inside the last gloss, as a copy that stopped
        return text.rstrip()[:-3].encode()
    if kind == "crlf":
        return text.replace("\n", "\r\n").encode()
    assert kind == "blank-line", kind
    return (LICENCE + "\n" + synsets).encode()


def _image(path: Path) -> bytes:
    """The same picture in the other format: a PNG's bytes under a .jpg name, a JPEG's under .png."""
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format="JPEG" if path.suffix.lower() == ".png" else "PNG")
    return buffer.getvalue()


def _folder(path: Path, kind: str) -> None:
    if kind == "deleted":
        shutil.rmtree(path)
    elif kind == "empty":
        shutil.rmtree(path)
        path.mkdir()
    elif kind == "file":
        shutil.rmtree(path)
        path.write_text("a file where a folder belongs\n")
    else:
        assert kind == "no-images", kind  # every image renamed: only non-images left
        for image in path.rglob("*"):
            if image.suffix.lower() in (".png", ".jpg"):
                image.rename(image.with_suffix(".txt"))


def _json(kind: str) -> str:
    return {"list": '["train", "test"]', "null": "null", "no-splits": '{"split": ["train", "test"]}',
            "other-splits": '{"splits": ["train", "validation"]}'}[kind]


def _hub_content(root: Path, loader: str, kind: str) -> None:
    """Save the fixture again with its data damaged by `kind`."""
    import datasets

    saved = datasets.load_from_disk(str(root))
    train, test = saved["train"], saved["test"]
    label, inputs = "label", ("image" if loader == "hf-images" else "text")
    if kind == "missing-split":
        parts = {"train": train}
    elif kind == "missing-column":
        parts = {"train": train.remove_columns(inputs), "test": test}
    elif kind == "empty-split":  # saved without a data file
        parts = {"train": train, "test": test.select([])}
    elif kind == "filtered-to-empty":  # saved with a data file of no rows
        parts = {"train": train, "test": test.filter(lambda row: False)}
    elif kind == "not-a-dataset-dict":
        shutil.rmtree(root)
        train.save_to_disk(str(root))
        return
    elif kind == "inputs-none":  # the first one missing, the column's type kept
        parts = {"train": train.map(lambda row, i: {inputs: None if i == 0 else row[inputs]}, with_indices=True),
                 "test": test}
    else:  # a column of train replaced
        column, values = {
            "labels-out-of-range": (label, [-1] + train[label][1:]),  # a plain integer column: a ClassLabel refuses -1
            "labels-as-text": (label, [f"class {k}" for k in train[label]]),
            "labels-as-float": (label, [k + 0.5 for k in train[label]]),
            "labels-none": (label, [None] + train[label][1:]),
            "inputs-as-numbers": (inputs, list(range(len(train)))),
        }[kind]
        parts = {"train": train.remove_columns(column).add_column(column, values), "test": test}
    tmp = root.with_name("resaved")
    datasets.DatasetDict(parts).save_to_disk(str(tmp))
    del saved, train, test, parts
    shutil.rmtree(root)
    tmp.rename(root)


def damage(root: Path, loader: str, target: str, kind: str) -> None:
    """Damage `root / target` (a copy of `loader`'s fixture) by `kind`."""
    path = root / target
    if kind == "unreadable":
        path.chmod(0)
        return
    if target == ".":
        if loader.startswith("hf-"):
            _hub_content(root, loader, kind)
        elif kind == "one-class":
            for split in ("train", "val"):
                shutil.rmtree(root / split / "dog")
        else:
            assert kind == "extra-val-class", kind
            shutil.copytree(root / "val" / "dog", root / "val" / "bird")
        return
    if path.is_dir():
        _folder(path, kind)
        return
    content = path.read_bytes()
    if kind == "deleted":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(content[:len(content) // 2])
    elif kind == "random":
        path.write_bytes(_random_bytes(target))
    elif kind == "text":
        path.write_text("This is not a dataset file.\nIt has two lines.\n")
    elif kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("x")
    elif kind in JSON:
        path.write_text(_json(kind))
    elif loader.startswith("fashion-mnist"):
        payload = gzip.decompress(content)
        path.write_bytes(payload if kind == "not-gzip" else gzip.compress(_idx(payload, kind, path)))
    elif loader == "wordnet":
        path.write_bytes(_wordnet(content.decode(), kind, path))
    else:
        assert (loader, kind) == ("image-folder", "other-format"), (loader, kind)
        path.write_bytes(_image(path))


def named(message: str, root: Path, target: str, kind: str) -> bool:
    """Whether a refusal's message names the damaged file or folder: its path, or its folder and its name (`<root>/val:
    ... not in train: dog`); for a damage of the data itself (target "."), the data directory, or for a Hub dataset
    the split it is in (`kmnist: split 'train' column 'label' ...`)."""
    path = root / target
    if target == "." and kind in CONTENT and kind != "not-a-dataset-dict":
        return f"'{CONTENT_SPLIT.get(kind, 'train')}'" in message
    return str(path) in message or (str(path.parent) in message and path.name in message)


def contents(splits, root: Path) -> tuple:
    """What a loader read, to compare: its class names, and per split its (text, label) or (image file, label)."""
    if hasattr(splits, "train_texts"):
        return splits.class_names, *(list(zip(texts, labels.tolist())) for texts, labels in (
            (splits.train_texts, splits.train_labels), (splits.test_texts, splits.test_labels)))
    return splits.class_names, *([(path.relative_to(root).as_posix(), label) for path, label in dataset.samples]
                                 for dataset in (splits.train, splits.test))


def expected(fixtures: dict[str, Path], loader: str, target: str, kind: str) -> tuple:
    """What a loader reads of a harmless damage: the valid fixture's contents, less an image file that is gone (or is
    a folder), with an empty text where its only text field is missing."""
    classes, train, test = contents(LOADERS[loader].load(fixtures[loader]), fixtures[loader])
    if kind in ("deleted", "directory"):
        train, test = ([(item, label) for item, label in split if item != target] for split in (train, test))
    if kind == "inputs-none":
        train = [("", train[0][1]), *train[1:]]
    return classes, train, test


@pytest.mark.parametrize("loader, target, kind", CASES, ids=["-".join(case) for case in CASES])
def test_a_damaged_dataset_file_is_one_line_naming_it_or_harmless(fixtures, tmp_path, loader, target, kind):
    if kind == "unreadable" and ROOT_USER:
        pytest.skip("root reads a file whatever its mode")
    root = fresh_copy(fixtures, loader, tmp_path)
    damage(root, loader, target, kind)
    try:
        if (loader, target, kind) in HARMLESS:
            assert contents(LOADERS[loader].load(root), root) == expected(fixtures, loader, target, kind)
            return
        with pytest.raises(UserError) as error:
            LOADERS[loader].load(root)
        message = str(error.value)
        assert "\n" not in message and named(message, root, target, kind), message
    finally:
        if kind == "unreadable":  # readable again, to be removed
            (root / target).chmod(0o755)


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text"])
def test_an_image_that_cannot_be_read_in_a_training_pass_is_one_line_naming_it(fixtures, tmp_path, kind, workers):
    """A lazy image folder opens an image when a batch needs it, in a worker process with `--workers`: the DataLoader
    raises the worker's error again here, with the worker's traceback as its message, unless it is taken apart."""
    root = fresh_copy(fixtures, "image-folder", tmp_path)
    damage(root, "image-folder", "train/dog/3.jpg", kind)
    loader = PairedLoader(load_image_folder(root, image_size=8).train, 4, seed=0, num_workers=workers)
    with pytest.raises(UserError) as error:
        for _ in loader:
            pass
    assert isinstance(error.value, OSError)  # as Pillow's own errors
    assert "\n" not in str(error.value) and str(error.value).startswith(f"{root / 'train/dog/3.jpg'}: cannot read")


def test_the_grid_covers_every_loader_and_damage():
    assert {loader for loader, _, _ in CASES} == set(LOADERS)
    assert len(CASES) > 150 and set(HARMLESS) <= set(CASES)


# ---------------------------------------------------------------- through the command line
FLAGS = ["--epochs", "1", "--batch-size", "4", "--method", "ce", "--device", "cpu", "--quiet"]
SUBSET = ["--train-subset", "64", "--test-subset", "32"]
# (dataset, its loader's fixture, target, damage, flags); damage "valid": none, the run trains; "small": none, but the
# fixture's 7 training images are not Fashion-MNIST's 60,000
CLI_CASES = [
    ("fashion-mnist", "fashion-mnist-real", ".", "valid", ["--model", "cnn", *SUBSET]),
    ("fashion-mnist", "fashion-mnist-real", "train-labels-idx1-ubyte.gz", "truncated", ["--model", "cnn", *SUBSET]),
    ("fashion-mnist-first6", "fashion-mnist-real", "t10k-labels-idx1-ubyte.gz", "labels-out-of-range",
     ["--model", "cnn", *SUBSET]),
    ("fashion-mnist", "fashion-mnist", "train-images-idx3-ubyte.gz", "small", ["--model", "cnn"]),
    ("fashion-mnist-pairs", "fashion-mnist", "train-images-idx3-ubyte.gz", "not-gzip", ["--model", "cnn"]),
    ("wordnet", "wordnet", "data.noun", "not-utf8", ["--model", "minilm"]),
    ("wordnet-top10", "wordnet", "data.verb", "header-only", ["--model", "minilm"]),
    ("imagenet", "image-folder", ".", "valid", ["--model", "cnn"]),
    ("imagenet", "image-folder", "train/cat/0.png", "empty", ["--model", "cnn"]),
    ("imagenet", "image-folder", "val/dog/3.jpg", "truncated", ["--model", "cnn"]),
    ("imagenet", "image-folder", ".", "one-class", ["--model", "cnn"]),
    ("kmnist", "hf-images", "dataset_dict.json", "empty", ["--model", "cnn"]),
    ("kmnist", "hf-images", ".", "labels-as-float", ["--model", "cnn"]),
    ("ag-news", "hf-text", "train/state.json", "truncated", ["--model", "minilm"]),
    ("ag-news", "hf-text", ".", "labels-as-text", ["--model", "minilm"]),
]


@pytest.mark.parametrize("dataset, loader, target, kind, flags", CLI_CASES,
                         ids=[f"{d}-{t}-{k}" + "".join(f) for d, _, t, k, f in CLI_CASES])
def test_a_damaged_data_dir_is_one_line_from_itra_train(fixtures, tmp_path, capsys, dataset, loader, target, kind,
                                                          flags):
    root = fresh_copy(fixtures, loader, tmp_path)
    if kind not in ("valid", "small"):
        damage(root, loader, target, kind)
    capsys.readouterr()
    code = main(["train", "--dataset", dataset, "--data-dir", str(root), *flags, *FLAGS, "--out",
                 str(tmp_path / "runs")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("note:", "itra train: note:"))]
    if kind == "valid":
        assert code == 0, err
        return
    assert code == 2 and len(lines) == 1 and lines[0].startswith("itra train: error: "), err
    assert named(lines[0], root, target, kind), lines[0]
