"""Input checks: each bad value gives one ValueError that names it."""
import pytest
import torch

from itra.checks import check_bandwidth, check_features, check_labels, check_pair


def test_each_check_names_the_bad_value():
    with pytest.raises(ValueError, match="Expected `h` to be 2-D"):
        check_features("h", torch.randn(3))
    with pytest.raises(ValueError, match="same feature dim, but got 2 and 3"):
        check_pair(torch.randn(4, 2), torch.randn(4, 3), ("a", "b"))
    with pytest.raises(ValueError, match=r"Expected `y` in \[0, 2\), but got the label 2"):
        check_labels("y", torch.tensor([0, 2]), torch.randn(2, 3), 2)
    check_labels("y", torch.tensor([0, 1]), torch.randn(2, 3), 2)


@pytest.mark.parametrize("value", ["class", "batch", "multi", 0.5, 2])
def test_bandwidths_that_are_allowed(value):
    check_bandwidth(value, modes=("class", "batch", "multi"))


@pytest.mark.parametrize("value", ["median", 0, -1.0, True, None])
def test_bandwidths_that_are_not(value):
    with pytest.raises(ValueError, match=f"but got {value!r}"):
        check_bandwidth(value, modes=("class", "batch", "multi"))
