import math

import pytest
import torch
import torch.nn.functional as F

from itra import ITRALoss, class_conditional_mmd, mmd


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    h1, h2 = torch.randn(12, 5, generator=g), torch.randn(10, 5, generator=g)
    y1, y2 = torch.randint(0, 3, (12,), generator=g), torch.randint(0, 3, (10,), generator=g)
    return h1, y1, h2, y2


@pytest.mark.parametrize("bandwidth", ["class", "batch", 2.0])
def test_conditional_is_class_conditional_mmd(bandwidth):
    h1, y1, h2, y2 = batches()
    expected = class_conditional_mmd(h1, y1, h2, y2, 3, bandwidth)
    assert ITRALoss(bandwidth=bandwidth)(h1, y1, h2, y2).item() == pytest.approx(expected.item())
    # num_classes inferred from the labels or given larger: absent classes do not change the mean.
    assert ITRALoss(bandwidth=bandwidth, num_classes=7)(h1, y1, h2, y2).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("bandwidth,sigma", [("class", "batch"), ("batch", "batch"), (2.0, 2.0)])
def test_unconditional_is_mmd_of_whole_batches(bandwidth, sigma):
    h1, y1, h2, y2 = batches(1)
    loss = ITRALoss(conditional=False, bandwidth=bandwidth)
    assert loss(h1, y1, h2, y2).item() == pytest.approx(mmd(h1, h2, sigma).item())
    assert loss(h1, None, h2, None).item() == pytest.approx(mmd(h1, h2, sigma).item())


def test_in_a_training_step_gradients_reach_the_extractor():
    torch.manual_seed(0)
    extractor, head = torch.nn.Linear(4, 6), torch.nn.Linear(6, 3)
    x1, x2 = torch.randn(16, 4), torch.randn(16, 4)
    y1, y2 = torch.randint(0, 3, (16,)), torch.randint(0, 3, (16,))
    h1, h2 = extractor(x1), extractor(x2)
    loss = F.cross_entropy(head(h1), y1) + 0.6 * ITRALoss()(h1, y1, h2, y2)
    loss.backward()
    assert torch.isfinite(extractor.weight.grad).all() and extractor.weight.grad.abs().sum() > 0


def test_errors():
    h1, y1, h2, y2 = batches()
    with pytest.raises(ValueError, match="labels"):
        ITRALoss()(h1, None, h2, None)
    with pytest.raises(ValueError, match="both mini-batches"):
        ITRALoss()(h1, y1)
    with pytest.raises(ValueError, match="num_classes"):
        ITRALoss(num_classes=0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ITRALoss(num_classes=2)(h1, y1, h2, y2)


def test_unchecked_calls_compute_the_same_and_the_bandwidth_is_checked_once():
    generator = torch.Generator().manual_seed(3)
    h1, h2 = torch.randn(12, 5, generator=generator), torch.randn(10, 5, generator=generator)
    y1, y2 = torch.randint(0, 3, (12,), generator=generator), torch.randint(0, 3, (10,), generator=generator)
    for conditional in (True, False):
        checked = ITRALoss(conditional, "batch", 3)(h1, y1, h2, y2)
        unchecked = ITRALoss(conditional, "batch", 3, validate_args=False)(h1, y1, h2, y2)
        assert torch.equal(checked, unchecked)
    with pytest.raises(ValueError, match="bandwidth"):
        ITRALoss(bandwidth="median")
    assert ITRALoss.needs_second_batch


def test_one_sample_per_class_the_paper_is_constant_and_the_default_is_not():
    """The per-class median makes a single pair's MMD sqrt(2 - 2/e) at any distance (the collapse
    pathology); with a bandwidth from the whole batch the value falls as the pair comes closer."""
    generator = torch.Generator().manual_seed(0)
    h1 = torch.randn(10, 6, generator=generator, dtype=torch.float64)  # one sample of each of 10 classes
    direction = torch.randn(10, 6, generator=generator, dtype=torch.float64)
    labels = torch.arange(10)
    for bandwidth in ("class", "batch", "multi"):
        values = [ITRALoss(True, bandwidth, 10)(h1, labels, h1 + gap * direction, labels).item() for gap in (1.0, 0.3, 0.1)]
        if bandwidth == "class":
            assert values == pytest.approx([math.sqrt(2 - 2 / math.e)] * 3)
        else:
            assert values[0] > values[1] > values[2] > 0, bandwidth
    default = [ITRALoss(num_classes=10)(h1, labels, h1 + gap * direction, labels).item() for gap in (1.0, 0.3, 0.1)]
    assert default[0] > default[1] > default[2] > 0  # the library's default is not the constant
    assert ITRALoss.paper().bandwidth == "class" and not ITRALoss.paper().squared


@pytest.mark.parametrize("convert", [lambda t: t.numpy(), lambda t: t.tolist()])
def test_arrays_and_lists_are_one_clear_error(convert):
    h, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="Expected `h1` to be a torch.Tensor, but got .*torch.as_tensor"):
        ITRALoss()(convert(h), y, h, y)
    with pytest.raises(ValueError, match="Expected `y2` to be a torch.Tensor"):
        ITRALoss()(h, y, h, convert(y))
