import pytest

from itra.data.registry import DATASETS, TEXT_DATASETS, canonical_dataset_name, image_stem, is_text_dataset, load_dataset


def test_digits_by_name():
    splits = load_dataset("digits")
    assert splits.num_classes == 10 and len(splits.train) + len(splits.test) == 1797


def test_aliases_and_unknown_names():
    assert canonical_dataset_name("fmnist") == "fashion-mnist"
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_imagenet_needs_a_folder():
    with pytest.raises(ValueError, match="--data-dir"):
        load_dataset("imagenet")


def test_every_paper_dataset_is_registered():
    from itra.experiments.presets import PRESETS

    datasets = {preset.dataset for models in PRESETS.values() for preset in models.values()}
    assert {"fashion-mnist", "kmnist", "cifar10", "imagenet", "ag-news", "fashion-mnist-pairs"} <= datasets
    assert datasets <= set(DATASETS) | set(TEXT_DATASETS)
    assert not set(DATASETS) & set(TEXT_DATASETS)
    assert is_text_dataset("wordnet") and not is_text_dataset("fmnist")


def test_the_registry_says_each_image_datasets_stem():
    from itra.models.layers import check_stem

    assert image_stem("imagenet") == "imagenet"  # 224x224: 7x7 conv + max-pool
    assert {image_stem(name) for name in DATASETS if name != "imagenet"} == {"cifar"}  # the paper's small images
    assert image_stem("fmnist") == "cifar"  # by alias too
    for spec in DATASETS.values():
        check_stem(spec.stem)
