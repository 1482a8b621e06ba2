import pytest
import torch
from tests.models.test_resnet import check_trains, downsampling, num_parameters
from torch import nn

from itra.models.layers import Residual
from itra.models.mobilenet import mobilenet_v2


def test_cifar_forward_backward():
    torch.manual_seed(0)
    model = mobilenet_v2(10)
    assert model.feature_dim == 1280
    assert isinstance(model.extractor[-1], nn.Dropout) and model.extractor[-1].p == 0.2
    check_trains(model)


def test_one_input_channel():
    torch.manual_seed(0)
    check_trains(mobilenet_v2(10, in_channels=1), in_channels=1, size=28)  # Fashion-MNIST


@pytest.mark.parametrize(("stem", "stride"), [("cifar", 8), ("imagenet", 32)])
def test_downsampling(stem, stride):
    with torch.device("meta"):
        model = mobilenet_v2(10, stem=stem)
    assert downsampling(model) == stride
    # torchvision: 17 inverted residual blocks, 10 of them keep their shape and add the input back
    assert sum(isinstance(m, Residual) for m in model.extractor) == 10


def test_parameter_count_matches_torchvision():
    assert num_parameters(mobilenet_v2) == 3_504_872


def test_bad_stem():
    with pytest.raises(ValueError, match="'bad'"):
        mobilenet_v2(10, stem="bad")
