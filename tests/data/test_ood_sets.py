"""The OOD image sets of `itra.data.ood_sets`: made at the model's image shape, normalised like its training images
(Fashion-MNIST's pixel range is its MEAN and STD's map of [0, 1]), fixed by their seed; bad shapes and counts."""
import pytest
import torch
from torch.utils.data import TensorDataset

from itra.data.fashion_mnist import MEAN, STD
from itra.data.ood_sets import digits_like, like_training_images, pixel_range, uniform_noise
from itra.errors import BadValue

from tests.helpers import needs_fmnist

pytest.importorskip("sklearn")  # the digits


@needs_fmnist
def test_the_pixel_range_of_fashion_mnist_is_its_normalisation_of_0_and_1(splits):
    low, high = pixel_range(splits.train)
    # the loader's float32 arithmetic ((p / 255 - MEAN) / STD) against float64: a few float32 ulps
    torch.testing.assert_close(low, torch.tensor([(0 - MEAN) / STD]), rtol=0, atol=1e-6)
    torch.testing.assert_close(high, torch.tensor([(1 - MEAN) / STD]), rtol=0, atol=1e-6)


def test_the_pixel_range_is_per_channel_and_over_every_batch():
    images = torch.zeros(5000, 3, 2, 2)
    images[4500, 1, 0, 0], images[10, 2, 1, 1] = 7.0, -3.0  # past the first batch of 4,096, and in it
    low, high = pixel_range(TensorDataset(images, torch.zeros(5000)))
    assert low.tolist() == [0.0, 0.0, -3.0] and high.tolist() == [0.0, 7.0, 0.0]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (2, 5, 9)])
def test_digits_are_made_at_the_shape_and_range_given(shape):
    low, high = torch.linspace(-1, 0, shape[0]), torch.linspace(1, 3, shape[0])
    images, labels = digits_like(shape, low, high).tensors
    assert images.shape == (1797, *shape) and labels.tolist()[:10] == list(range(10))
    for c in range(shape[0]):  # each channel the same intensities, on its own range
        intensity = (images[:, c] - low[c]) / (high[c] - low[c])
        assert intensity.min() >= -1e-6 and intensity.max() <= 1 + 1e-6
        torch.testing.assert_close(intensity, (images[:, 0] - low[0]) / (high[0] - low[0]), rtol=0, atol=1e-5)
    if shape[1:] == (8, 8):  # no resize: the digits themselves, / 16
        from sklearn.datasets import load_digits

        torch.testing.assert_close((images[:, 0] - low[0]) / (high[0] - low[0]),
                                   torch.from_numpy(load_digits().images).float() / 16, rtol=0, atol=1e-6)


def test_noise_is_uniform_in_the_range_and_fixed_by_its_seed():
    low, high = torch.tensor([-0.81]), torch.tensor([2.02])
    images, labels = uniform_noise(2000, (1, 4, 4), low, high).tensors
    assert images.shape == (2000, 1, 4, 4) and set(labels.tolist()) == {-1}
    assert images.min() >= -0.81 - 1e-6 and images.max() <= 2.02 + 1e-6
    assert abs(float(images.mean()) - (-0.81 + 2.02) / 2) < 0.02  # 32,000 uniform draws: the mean within 5 sigma
    assert torch.equal(images, uniform_noise(2000, (1, 4, 4), low, high).tensors[0])
    assert not torch.equal(images, uniform_noise(2000, (1, 4, 4), low, high, seed=1).tensors[0])


def test_like_training_images_maps_0_and_1_onto_each_channels_range():
    intensities = torch.tensor([0.0, 1.0, 0.5]).view(1, 1, 1, 3).expand(1, 2, 1, 3)
    out = like_training_images(intensities, torch.tensor([-2.0, 0.0]), torch.tensor([5.0, 1.0]))
    assert out[0, :, 0].tolist() == [[-2.0, 5.0, 1.5], [0.0, 1.0, 0.5]]


@pytest.mark.parametrize("shape", [(28, 28), (1, 0, 28), (1, 28, 28.0), "28x28", (1, 2, 3, 4)])
def test_a_bad_shape_is_one_line(shape):
    for make in (lambda: digits_like(shape, torch.zeros(1), torch.ones(1)),
                 lambda: uniform_noise(3, shape, torch.zeros(1), torch.ones(1))):
        with pytest.raises(BadValue, match="image shape"):
            make()


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "3"])
def test_a_bad_noise_count_is_one_line(count):
    with pytest.raises(BadValue, match="`count`"):
        uniform_noise(count, (1, 2, 2), torch.zeros(1), torch.ones(1))


def test_the_docstring_examples_run():
    import doctest

    import itra.data.ood_sets

    assert doctest.testmod(itra.data.ood_sets).failed == 0
