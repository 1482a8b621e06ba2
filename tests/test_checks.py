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


def test_one_bandwidth_vocabulary_for_both_losses_and_the_flag():
    from itra import resolve
    from itra.mmd import BANDWIDTH_MODES, parse_bandwidth

    assert resolve.parse_bandwidth is parse_bandwidth and BANDWIDTH_MODES == ("batch", "class", "multi")  # the flag's
    assert [parse_bandwidth(v) for v in ("batch", "class", "multi", "2.5", 0.5)] == ["batch", "class", "multi", 2.5, 0.5]
    for bad in ("median", "0", "-1", "inf", "nan", None, True):
        with pytest.raises(ValueError, match="Expected `bandwidth`"):
            parse_bandwidth(bad)
    with pytest.raises(ValueError, match='"batch", "class", "multi" or a finite float > 0, but got None'):
        check_bandwidth(None, modes=BANDWIDTH_MODES)
