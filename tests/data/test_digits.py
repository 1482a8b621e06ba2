import math

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
from sklearn.datasets import load_digits as sklearn_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from itra.data.digits import load_digits  # noqa: E402


@pytest.mark.parametrize("test_fraction", [0.2, 0.5])
def test_sizes_shapes_and_labels(test_fraction):
    splits = load_digits(test_fraction)
    n_test = math.ceil(test_fraction * 1797)  # sklearn rounds the test count up
    assert (len(splits.train), len(splits.test)) == (1797 - n_test, n_test)
    for dataset in (splits.train, splits.test):
        images, labels = dataset.tensors
        assert images.shape == (len(dataset), 1, 8, 8) and images.dtype == torch.float32
        assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert splits.class_names == tuple("0123456789") and splits.num_classes == 10
    assert splits.train_transform is None


def test_matches_a_split_rebuilt_by_hand():
    """The same stratified split from sklearn, normalised by hand in float64 with the train pixels' mean and std."""
    digits = sklearn_digits()
    train_index, test_index = train_test_split(
        np.arange(1797), test_size=0.2, random_state=4, stratify=digits.target
    )
    train_pixels = digits.images[train_index].astype(np.float64)
    mean, std = train_pixels.mean(), train_pixels.std(ddof=1)
    splits = load_digits(0.2, seed=4)
    for dataset, index in ((splits.train, train_index), (splits.test, test_index)):
        images, labels = dataset.tensors
        expected = torch.from_numpy((digits.images[index] - mean) / std).float().unsqueeze(1)
        torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(labels.numpy(), digits.target[index])
    train = splits.train.tensors[0]
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std()) - 1) < 1e-5


def test_stratified_to_within_one_sample_per_class():
    fraction = 0.2
    splits = load_digits(fraction, seed=3)
    totals = np.bincount(sklearn_digits().target, minlength=10)
    test_counts = np.bincount(splits.test.tensors[1].numpy(), minlength=10)
    train_counts = np.bincount(splits.train.tensors[1].numpy(), minlength=10)
    np.testing.assert_array_equal(train_counts + test_counts, totals)
    assert np.all(np.abs(test_counts - fraction * totals) <= 1)


def test_deterministic_by_seed():
    first, again, other = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    for a, b in ((first.train, again.train), (first.test, again.test)):
        assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    assert not torch.equal(first.test.tensors[0], other.test.tensors[0])


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1])
def test_rejects_bad_fraction(test_fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction)
