import pytest
import torch
from tests.models.test_resnet import check_trains, downsampling, num_parameters
from torch import nn

from itra.models.vgg import vgg13_bn


def test_cifar_forward_backward():
    torch.manual_seed(0)
    model = vgg13_bn(10)
    assert model.feature_dim == 512
    check_trains(model)


def test_one_input_channel():
    torch.manual_seed(0)
    check_trains(vgg13_bn(10, in_channels=1), in_channels=1, size=28)  # Fashion-MNIST


def test_imagenet_features_are_the_last_hidden_layer():
    with torch.device("meta"):
        model = vgg13_bn(10, stem="imagenet")
    assert model.feature_dim == 4096
    assert [type(m) for m in model.extractor[-6:]] == [nn.Linear, nn.ReLU, nn.Dropout] * 2
    assert downsampling(model) == 32


def test_parameter_count_matches_torchvision():
    assert num_parameters(vgg13_bn) == 133_053_736


def test_bad_stem():
    with pytest.raises(ValueError, match="'bad'"):
        vgg13_bn(10, stem="bad")
