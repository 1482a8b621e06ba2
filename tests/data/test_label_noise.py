import pytest
import torch
from torch.utils.data import TensorDataset

from itra.data.label_noise import flip_labels, with_label_noise


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.4, 1.0])
def test_exactly_the_fraction_moves_to_another_class(fraction):
    labels = torch.arange(1000) % 10
    noisy = flip_labels(labels, 10, fraction, torch.Generator().manual_seed(0))
    assert (noisy != labels).sum().item() == round(fraction * 1000)
    assert noisy.min() >= 0 and noisy.max() < 10
    assert torch.equal(labels, torch.arange(1000) % 10)  # input untouched


def test_fixed_by_the_generator_and_roughly_uniform():
    labels = torch.zeros(20000, dtype=torch.long)
    a = flip_labels(labels, 5, 0.5, torch.Generator().manual_seed(1))
    b = flip_labels(labels, 5, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    counts = torch.bincount(a[a != 0], minlength=5)[1:]
    assert (counts - 2500).abs().max() < 200  # 10,000 flips spread over the 4 other classes


def test_dataset_wrapper_and_errors():
    data = TensorDataset(torch.randn(100, 3), torch.arange(100) % 4)
    assert with_label_noise(data, 4, 0.0, torch.Generator()) is data
    noisy = with_label_noise(data, 4, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(noisy.tensors[0], data.tensors[0]) and (noisy.tensors[1] != data.tensors[1]).sum() == 30
    with pytest.raises(ValueError, match="label_noise"):
        flip_labels(data.tensors[1], 4, 1.5, torch.Generator())
