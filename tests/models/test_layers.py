import pytest
import torch
from torch import nn

from itra.models.layers import STEMS, Residual, check_stem, conv_bn, init_torchvision


def test_check_stem_accepts_the_stems_and_names_a_bad_one():
    for stem in STEMS:
        check_stem(stem)
    with pytest.raises(ValueError, match="'cifar', 'imagenet', but got 'cifar10'"):
        check_stem("cifar10")


@pytest.mark.parametrize("kernel_size, stride, size", [(1, 1, 9), (3, 1, 9), (3, 2, 5), (7, 2, 5)])
def test_conv_bn_keeps_the_size_up_to_the_stride(kernel_size, stride, size):
    conv, bn = conv_bn(3, 8, kernel_size, stride)
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 8
    assert conv.bias is None  # the BatchNorm's bias takes its place
    assert nn.Sequential(conv, bn)(torch.randn(2, 3, 9, 9)).shape == (2, 8, size, size)


def test_conv_bn_groups_and_bias():
    conv, _ = conv_bn(8, 8, 3, groups=8, bias=True)
    assert conv.groups == 8 and conv.weight.shape == (8, 1, 3, 3) and conv.bias is not None


def test_residual_adds_the_shortcut_then_applies_the_activation():
    x = torch.randn(2, 4, 5, 5)
    branch = nn.Conv2d(4, 4, 3, padding=1)
    torch.testing.assert_close(Residual(branch)(x), branch(x) + x)
    shortcut = nn.Conv2d(4, 4, 1)
    torch.testing.assert_close(Residual(branch, shortcut, nn.ReLU())(x), torch.relu(branch(x) + shortcut(x)))


def test_init_torchvision():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4))
    for p in model.parameters():
        nn.init.constant_(p, 0.5)
    init_torchvision(model)
    conv, bn, _, linear = model
    assert torch.equal(conv.bias, torch.zeros(8))
    assert not torch.equal(conv.weight, torch.full_like(conv.weight, 0.5))  # kaiming-normal
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))
    assert torch.equal(linear.weight, torch.full((4, 8), 0.5))  # without `linear_std`, linear layers are left alone
    init_torchvision(model, linear_std=0.01)
    assert torch.equal(linear.bias, torch.zeros(4)) and 0 < linear.weight.std() < 0.05


@pytest.mark.parametrize("size, output", [(7, 3), (8, 1), (4, 2), (1, 3), (2, 4), (7, 4), (5, 5)])
def test_the_fixed_window_pool_is_the_adaptive_one(size, output):
    from itra.models.layers import FixedWindowAvgPool

    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64, requires_grad=True)
    fixed, adaptive = FixedWindowAvgPool(output)(x), nn.AdaptiveAvgPool2d(output)(x)
    torch.testing.assert_close(fixed, adaptive)
    weights = torch.randn_like(adaptive)
    (grad_fixed,), (grad_adaptive,) = (torch.autograd.grad((y * weights).sum(), x) for y in (fixed, adaptive))
    torch.testing.assert_close(grad_fixed, grad_adaptive)


def test_exact_pools_replaces_every_adaptive_pool_and_keeps_the_state_dict():
    from itra.models.layers import FixedWindowAvgPool, exact_pools
    from itra.models.registry import build_image_model

    model = build_image_model("mobilenetv2", 10, 3)
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    before = model(x)
    exact_pools(model)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())
    assert any(isinstance(m, FixedWindowAvgPool) for m in model.modules())
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(model(x), before)
