import pytest
import torch
from tests.models.test_resnet import check_trains
from torch import nn

from itra.models.cnn import small_cnn


@pytest.mark.parametrize("size", [8, 28, 32])  # sklearn digits, Fashion-MNIST, CIFAR
def test_forward_backward(size):
    torch.manual_seed(0)
    model = small_cnn(10)
    assert model.feature_dim == 128
    check_trains(model, in_channels=1, size=size)


def test_three_input_channels():
    torch.manual_seed(0)
    check_trains(small_cnn(5, in_channels=3), in_channels=3, num_classes=5)


def test_features_are_non_negative():
    # h is the output of a ReLU, the layer the matching losses compare
    model = small_cnn(10).eval()
    with torch.no_grad():
        h = model.extractor(torch.randn(4, 1, 28, 28))
    assert isinstance(model.extractor[-1], nn.ReLU) and (h >= 0).all()
