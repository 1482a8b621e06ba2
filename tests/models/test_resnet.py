import math

import pytest
import torch
from torch import nn

from itra.models.classifier import Classifier
from itra.models.resnet import resnet18, resnet50, resnet101


def check_trains(model: Classifier, in_channels: int = 3, num_classes: int = 10, size: int = 32) -> None:
    """Forward a (2, in_channels, size, size) batch, check the shapes of h and the logits, and that the
    cross-entropy gradient reaches the first conv."""
    x = torch.randn(2, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    h = model.extractor(x)
    assert h.shape == (2, model.head.in_features)
    logits = model.head(h)
    assert logits.shape == (2, num_classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == in_channels
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def downsampling(model: nn.Module) -> int:
    """Total stride from input to features: strided k>1 convs and pools (1x1 shortcut convs repeat a branch's stride)."""
    return math.prod(
        m.stride if isinstance(m.stride, int) else m.stride[0]
        for m in model.modules()
        if isinstance(m, (nn.MaxPool2d, nn.Conv2d)) and not (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))
    )


def num_parameters(build) -> int:
    with torch.device("meta"):  # counting only: no memory, no init cost
        return sum(p.numel() for p in build(1000, stem="imagenet").parameters())


# 16x16 for the bottleneck nets: the same code path as 32x32 at a quarter of the cost
@pytest.mark.parametrize(("build", "dim", "size"), [(resnet18, 512, 32), (resnet50, 2048, 16), (resnet101, 2048, 16)])
def test_cifar_forward_backward(build, dim, size):
    torch.manual_seed(0)
    model = build(10)
    assert model.feature_dim == dim
    check_trains(model, size=size)


def test_one_input_channel():
    torch.manual_seed(0)
    check_trains(resnet18(10, in_channels=1), in_channels=1, size=28)  # Fashion-MNIST


def test_imagenet_stem_forward():
    torch.manual_seed(0)
    model = resnet18(7, stem="imagenet").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize("build", [resnet18, resnet50, resnet101])
@pytest.mark.parametrize(("stem", "stride"), [("cifar", 8), ("imagenet", 32)])
def test_downsampling(build, stem, stride):
    with torch.device("meta"):
        assert downsampling(build(10, stem=stem)) == stride


@pytest.mark.parametrize(("build", "count"), [(resnet18, 11_689_512), (resnet50, 25_557_032), (resnet101, 44_549_160)])
def test_parameter_count_matches_torchvision(build, count):
    assert num_parameters(build) == count


@pytest.mark.parametrize("build", [resnet18, resnet50, resnet101])
def test_bad_stem(build):
    with pytest.raises(ValueError, match="'bad'"):
        build(10, stem="bad")


def test_torchvision_init():
    model = resnet18(10)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    conv = model.extractor[0]  # kaiming normal, fan_out: std sqrt(2 / (64 * 3 * 3))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.1)


@pytest.mark.parametrize(("build", "widths", "size"), [(resnet18, (64, 128, 256, 512), 32), (resnet50, (256, 512, 1024, 2048), 16)])
def test_one_exit_per_stage_and_the_last_is_the_head_s_features(build, widths, size):
    torch.manual_seed(0)
    model = build(10).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        exits = model.exits(x)
        assert [h.shape for h in exits] == [(2, width) for width in widths]
        assert torch.equal(exits[-1], model.extractor(x))
        # the first exit is the first stage's output averaged over positions
        first_stage = model.extractor[:4](x)  # CIFAR stem (conv, BN, ReLU), then stage 1
        torch.testing.assert_close(exits[0], first_stage.mean(dim=(2, 3)))


def test_imagenet_stem_exits():
    torch.manual_seed(0)
    model = resnet18(10, stem="imagenet").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        exits = model.exits(x)
        assert len(exits) == 4 and torch.equal(exits[-1], model.extractor(x))


def test_gradient_from_the_first_stage_reaches_the_stem_and_no_later_stage():
    torch.manual_seed(0)
    model = resnet18(10)
    model.exits(torch.randn(2, 3, 16, 16))[0].sum().backward()
    assert model.extractor[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.extractor[4:].parameters())


def test_state_dict_keys_are_those_of_a_plain_sequential():
    """Checkpoints written before the extractor had exits still load."""
    with torch.device("meta"):
        model = resnet18(10)
    assert list(model.extractor.state_dict()) == list(nn.Sequential(*model.extractor).state_dict())
    assert type(model.extractor[:-2]) is nn.Sequential and len(model.extractor[:-2]) == len(model.extractor) - 2
