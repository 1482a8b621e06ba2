"""The collapse detector users can call on their own features."""
import pytest
import torch

from itra.collapse import feature_spread, is_collapsed


def test_identical_rows_have_no_spread_whatever_their_value():
    for row in (torch.zeros(8), torch.full((8,), 3.0), torch.randn(8)):
        features = row.expand(16, 8)
        assert feature_spread(features).item() == 0.0 and is_collapsed(features)


def test_spread_is_scale_free_and_healthy_features_are_not_collapsed():
    features = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)).relu()
    spread = feature_spread(features).item()
    assert 0.3 < spread < 1.0 and not is_collapsed(features)
    for scale in (1e-6, 1e6):
        assert feature_spread(features * scale).item() == pytest.approx(spread, rel=1e-4)
    nearly = features[:1] + 1e-6 * features  # every row within a millionth of the first
    assert is_collapsed(nearly) and not is_collapsed(nearly, threshold=1e-7)


def test_half_precision_and_bad_shapes():
    features = torch.randn(10, 4).to(torch.bfloat16)
    assert feature_spread(features).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(B, D\) with B >= 2"):
        is_collapsed(torch.randn(1, 4))


def test_a_failed_run_is_told_only_the_flags_its_method_reads():
    from itra.methods import METHODS, REMEDIES, remedies
    from tests.helpers import resolved

    for method, spec in METHODS.items():
        config = resolved(method=method)
        for failure, tips in REMEDIES.items():
            said = remedies(config.method, config.match, failure)
            assert said.startswith("try ") and "--lr" in said  # every run reads the learning rate
            for field, tip in tips:
                assert (tip in said) == (field in (*spec.fields, "lr")), (method, failure, tip)
    assert remedies("ce", None, "collapsed") == "try a lower --lr"
    assert remedies("itra-c", "mmd", "collapsed") == \
        "try a lower --lam, a longer --lam-warmup (steps) or --lam-warmup-ratio, --match mmd2 or a lower --lr"
    assert "--match mmd2" not in remedies("itra-c", "mmd2", "collapsed")
