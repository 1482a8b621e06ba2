"""Datasets by name, as `--dataset` takes them: each maps an optional `--data-dir` to `Splits` (images,
ready to train) or `TextSplits` (texts, tokenised later by the model's own tokenizer), and says what a model for
it needs: whether it is text, and for images the stem (`models.registry.build_image_model`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from itra.data.classes import held_out, keep_classes
from itra.data.digits import load_digits
from itra.data.fashion_mnist import load_fashion_mnist, merge_pairs
from itra.data.hf_images import load_hf_image_dataset
from itra.data.image_folder import load_image_folder
from itra.data.splits import Splits
from itra.data.text import TextSplits
from itra.errors import BadValue


def _fashion_mnist(data_dir: Path | None) -> Splits:
    return load_fashion_mnist() if data_dir is None else load_fashion_mnist(data_dir)


def _fashion_mnist_pairs(data_dir: Path | None) -> Splits:
    return merge_pairs(_fashion_mnist(data_dir))


def _hub(name: str) -> Callable[[Path | None], Splits]:
    return lambda data_dir: load_hf_image_dataset(name, data_dir)


def _imagenet(data_dir: Path | None) -> Splits:
    if data_dir is None:
        raise BadValue("imagenet needs --data-dir: a folder with train/<class>/*.JPEG and val/<class>/*.JPEG")
    return load_image_folder(data_dir)


def _digits(data_dir: Path | None) -> Splits:
    if data_dir is not None:
        raise BadValue("digits is bundled with scikit-learn and takes no --data-dir")
    return load_digits()


@dataclass(frozen=True)
class ImageDataset:
    """An image dataset: its loader, and the stem of the models built for it: "cifar" (a 3x3 conv) for the paper's
    small images (8x8 to 96x96), "imagenet" (7x7 conv + max-pool) for 224x224."""

    load: Callable[[Path | None], Splits]
    stem: str = "cifar"


DATASETS: dict[str, ImageDataset] = {
    "fashion-mnist": ImageDataset(_fashion_mnist),  # offline: Debian's dataset-fashion-mnist
    "fashion-mnist-pairs": ImageDataset(_fashion_mnist_pairs),  # its 10 classes merged in pairs into 5 two-mode labels
    "digits": ImageDataset(_digits),  # offline: scikit-learn
    "kmnist": ImageDataset(_hub("kmnist")),
    "cifar10": ImageDataset(_hub("cifar10")),
    "cifar100": ImageDataset(_hub("cifar100")),
    "stl10": ImageDataset(_hub("stl10")),
    "imagenet": ImageDataset(_imagenet, stem="imagenet"),
}

# Datasets of some of another's classes (`data.classes`): {name: (dataset, the classes kept, in their new order)}.
# The test samples of its other classes are the held-out set of `itra ood` (`held_out_set`).
CLASS_SUBSETS: dict[str, tuple[str, tuple[int, ...]]] = {
    "fashion-mnist-first6": ("fashion-mnist", (0, 1, 2, 3, 4, 5)),  # T-shirt/top ... Shirt; held out: Sneaker, Bag, ...
}


def _class_subset(name: str) -> Callable[[Path | None], Splits]:
    def load(data_dir: Path | None) -> Splits:
        base, classes = CLASS_SUBSETS[name]
        return keep_classes(DATASETS[base].load(data_dir), classes, name)

    return load


DATASETS.update({name: ImageDataset(_class_subset(name), DATASETS[base].stem) for name, (base, _) in CLASS_SUBSETS.items()})


def _wordnet(data_dir: Path | None) -> TextSplits:
    from itra.data.wordnet import load_wordnet

    return load_wordnet() if data_dir is None else load_wordnet(data_dir)


def _wordnet_top10(data_dir: Path | None) -> TextSplits:
    from itra.data.wordnet import largest_classes, unseen_test

    return unseen_test(largest_classes(_wordnet(data_dir), 10))


def _hub_text(name: str) -> Callable[[Path | None], TextSplits]:
    def load(data_dir: Path | None) -> TextSplits:
        from itra.data.hf_text import load_hf_text_dataset

        return load_hf_text_dataset(name, data_dir)

    return load


TEXT_DATASETS: dict[str, Callable[[Path | None], TextSplits]] = {
    "wordnet": _wordnet,  # offline: Debian's wordnet-base
    "wordnet-top10": _wordnet_top10,  # its 10 largest classes, no test gloss that is also a training gloss
    "ag-news": _hub_text("ag-news"),
    "amazon-full": _hub_text("amazon-full"),
    "yahoo": _hub_text("yahoo"),
    "yelp-full": _hub_text("yelp-full"),
}
ALIASES = {"fmnist": "fashion-mnist"}


def canonical_dataset_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in DATASETS and name not in TEXT_DATASETS:
        raise BadValue(f"Unknown dataset {name!r}; expected one of: {', '.join([*DATASETS, *TEXT_DATASETS])}")
    return name


def is_text_dataset(name: str) -> bool:
    return canonical_dataset_name(name) in TEXT_DATASETS


def image_stem(name: str) -> str:
    """The stem of the models built for the image dataset `name` (`ImageDataset.stem`)."""
    return DATASETS[canonical_dataset_name(name)].stem


def held_out_set(name: str, data_dir: str | Path | None = None) -> Dataset | None:
    """The test samples of the classes the dataset `name` leaves out of its source (`CLASS_SUBSETS`, `data.classes`),
    None for a dataset that keeps all of its classes."""
    name = canonical_dataset_name(name)
    if name not in CLASS_SUBSETS:
        return None
    base, classes = CLASS_SUBSETS[name]
    return held_out(DATASETS[base].load(None if data_dir is None else Path(data_dir)), classes)


def load_dataset(name: str, data_dir: str | Path | None = None) -> Splits | TextSplits:
    """Load a dataset by name; `data_dir` None means the loader's default location (or the Hub)."""
    name = canonical_dataset_name(name)
    load = DATASETS[name].load if name in DATASETS else TEXT_DATASETS[name]
    return load(None if data_dir is None else Path(data_dir))
