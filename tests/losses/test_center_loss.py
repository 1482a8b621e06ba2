import pytest
import torch

from itra import CenterLoss
from itra.losses import center_loss, center_update


def test_loss_value_matches_definition():
    loss = CenterLoss(num_classes=3, feat_dim=2, alpha=0.5)
    loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    y = torch.tensor([0, 1, 2])
    # ||(1,0)-(0,0)||^2 = 1, ||(1,3)-(1,1)||^2 = 4, ||(0,0)-(2,-1)||^2 = 5 -> 0.5 * mean = 5/3
    assert loss.eval()(x, y).item() == pytest.approx(5 / 3)


def test_one_update_by_hand():
    loss = CenterLoss(num_classes=3, feat_dim=2, alpha=0.5)
    loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    x = torch.tensor([[2.0, 0.0], [4.0, 2.0], [3.0, 3.0]])
    y = torch.tensor([0, 0, 1])  # class 2 absent
    loss.train()(x, y)
    # class 0: n=2, delta = ((0,0)-(2,0) + (0,0)-(4,2)) / 3 = (-2, -2/3); c <- c - 0.5 delta = (1, 1/3)
    # class 1: n=1, delta = ((1,1)-(3,3)) / 2 = (-1, -1);           c <- (1.5, 1.5)
    # class 2: absent, unchanged
    expected = torch.tensor([[1.0, 1 / 3], [1.5, 1.5], [5.0, 5.0]])
    assert torch.allclose(loss.centers, expected)


def test_alpha_zero_and_eval_mode_freeze_centres():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    frozen = CenterLoss(3, 4, alpha=0.0)
    frozen.centers.normal_()
    before = frozen.centers.clone()
    frozen(x, y)
    assert torch.equal(frozen.centers, before)
    moving = CenterLoss(3, 4, alpha=0.5).eval()
    moving(x, y)
    assert torch.equal(moving.centers, torch.zeros(3, 4))


def test_centres_are_a_buffer_not_a_parameter():
    loss = CenterLoss(3, 4)
    assert list(loss.parameters()) == [] and "centers" in dict(loss.named_buffers())
    assert "centers" in loss.state_dict()


def test_update_moves_centres_towards_class_means():
    torch.manual_seed(0)
    loss = CenterLoss(2, 3, alpha=0.5)
    x = torch.cat([torch.randn(50, 3) + 4, torch.randn(50, 3) - 4])
    y = torch.cat([torch.zeros(50, dtype=torch.long), torch.ones(50, dtype=torch.long)])
    for _ in range(60):
        loss(x, y)
    assert torch.allclose(loss.centers[0], x[:50].mean(0), atol=1e-3)
    assert torch.allclose(loss.centers[1], x[50:].mean(0), atol=1e-3)


def test_gradcheck():
    centers = torch.randn(3, 4, dtype=torch.float64)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 1])
    assert torch.autograd.gradcheck(lambda f: center_loss(f, y, centers), (x,))
    module = CenterLoss(3, 4, alpha=0.0).double()
    module.centers.copy_(centers)
    assert torch.autograd.gradcheck(lambda f: module(f, y), (x,))


def test_update_is_pure():
    centers = torch.randn(3, 2)
    before = centers.clone()
    center_update(torch.randn(4, 2), torch.tensor([0, 1, 1, 2]), centers, 0.5)
    assert torch.equal(centers, before)


@pytest.mark.parametrize(
    "kwargs,x,y,match",
    [
        ({}, torch.randn(4, 5), torch.zeros(4, dtype=torch.long), r"\(B, 4\)"),
        ({}, torch.randn(4, 4), torch.zeros(3, dtype=torch.long), "one label per feature row"),
        ({}, torch.randn(4, 4), torch.tensor([0, 1, 2, 3]), r"\[0, 3\)"),
        ({}, torch.full((2, 4), float("nan")), torch.zeros(2, dtype=torch.long), "finite"),
    ],
)
def test_bad_input(kwargs, x, y, match):
    with pytest.raises(ValueError, match=match):
        CenterLoss(3, 4, **kwargs)(x, y)


def test_bad_construction():
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(3, 4, alpha=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        CenterLoss(0, 4)


def test_the_regularisers_signature_and_unchecked_calls():
    loss = CenterLoss(3, 2, alpha=0.0, validate_args=False)
    features, labels = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    assert not CenterLoss.needs_second_batch
    assert torch.equal(loss(features, labels, torch.randn(5, 2), torch.zeros(5, dtype=torch.long)),
                       CenterLoss(3, 2, alpha=0.0)(features, labels))
