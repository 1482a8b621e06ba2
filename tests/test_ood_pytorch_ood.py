"""`itra.ood` against pytorch-ood's detectors and metrics on the same inputs.

pytorch-ood imports torchvision, which does not import with the CPU torch that scripts/setup.sh pins: these tests skip
without it, and run in CI's second environment (scripts/setup_timm.sh, .ci/run), where ITRA_REQUIRE_TIMM=1 makes a
library that does not import a failure rather than a skip.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from itra.ood import auroc, energy_score, fit_class_gaussians, fpr_at_tpr, knn_score, mahalanobis_score, \
    max_logit_score, msp_score


@pytest.fixture(scope="module")
def pytorch_ood():
    try:
        return pytest.importorskip("pytorch_ood")
    except (pytest.skip.Exception, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch
        if os.environ.get("ITRA_REQUIRE_TIMM") == "1":
            pytest.fail(f"ITRA_REQUIRE_TIMM=1 but pytorch_ood does not import: {error}")
        pytest.skip(f"pytorch_ood does not import with torch {torch.__version__}: {error}")


def data(seed=0, n=400, d=8, k=4):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(k).repeat(n // k)
    train = torch.randn(n, d, generator=generator, dtype=torch.float64) + 2 * torch.randn(k, d, generator=generator,
                                                                                          dtype=torch.float64)[labels]
    inside = train[:100] + 0.3 * torch.randn(100, d, generator=generator, dtype=torch.float64)
    outside = 3 * torch.randn(150, d, generator=generator, dtype=torch.float64)
    logits = lambda h: h[:, :k] * 2  # noqa: E731  (any logits will do)
    return train, labels, inside, outside, logits


def test_the_logit_scores_are_pytorch_oods(pytorch_ood):
    from pytorch_ood.detector import EnergyBased, MaxLogit, MaxSoftmax

    z = data()[2][:, :5] * 3  # float64 (N, 5)
    torch.testing.assert_close(msp_score(z), MaxSoftmax.score(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(msp_score(z, 2.5), MaxSoftmax.score(z, 2.5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(energy_score(z), EnergyBased.score(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(max_logit_score(z), MaxLogit.score(z), rtol=0, atol=0)


def test_mahalanobis_is_pytorch_oods_up_to_its_scale(pytorch_ood):
    """pytorch-ood's shared covariance is the sum of the centred outer products, not divided by N (some versions
    divide), plus a 1e-6 ridge, and its score is half the distance: ours / (2N) (or / 2), up to the ridge. The ratio is
    one constant, and the AUROC the same."""
    from pytorch_ood.detector import Mahalanobis

    train, labels, inside, outside, _ = data()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its centres and covariance are made in the default dtype
    try:
        detector = Mahalanobis(None).fit_features(train, labels)
        theirs_in, theirs_out = detector.predict_features(inside), detector.predict_features(outside)
    finally:
        torch.set_default_dtype(default)
    fitted = fit_class_gaussians(train, labels, 4)
    ours_in, ours_out = mahalanobis_score(inside, fitted), mahalanobis_score(outside, fitted)
    ratio = torch.cat([theirs_in / ours_in, theirs_out / ours_out])
    torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), rtol=1e-6, atol=0)  # the ridge: ~1e-8 relative
    assert ratio.mean().item() == pytest.approx(0.5 / len(train), rel=1e-6) or ratio.mean().item() == pytest.approx(0.5, rel=1e-6)
    assert auroc(ours_in, ours_out) == pytest.approx(auroc(theirs_in.double(), theirs_out.double()), abs=1e-6)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_is_pytorch_oods_on_normalised_features(pytorch_ood, k):
    from pytorch_ood.detector import KNN

    train, labels, inside, outside, _ = data(seed=1)
    # normalised here: the keyword that switches pytorch-ood's own normalisation changed between versions
    detector = KNN(None, k=k).fit_features(F.normalize(train, dim=1), labels)
    for features in (inside, outside):
        torch.testing.assert_close(knn_score(features, train, k),
                                   detector.predict_features(F.normalize(features, dim=1)).double(), rtol=0, atol=1e-6)


def test_auroc_and_fpr_are_pytorch_oods(pytorch_ood):
    try:
        from pytorch_ood.metrics import OODMetrics
    except ImportError:  # before pytorch-ood 0.4
        from pytorch_ood.utils import OODMetrics

    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        inside = torch.randn(300, generator=generator, dtype=torch.float64)
        outside = torch.randn(200, generator=generator, dtype=torch.float64) + 1
        if seed % 2:
            inside, outside = inside.round(), outside.round()  # ties
        scores = torch.cat([inside, outside])
        known = torch.cat([torch.zeros(300), -torch.ones(200)]).long()  # labels < 0: OOD, its positive class
        theirs = OODMetrics().update(scores, known).compute()
        assert auroc(inside, outside) == pytest.approx(theirs["AUROC"], abs=1e-6)
        # its FPR95TPR takes OOD as the positive class; ours, ID: the same metric with the roles and signs swapped
        swapped = OODMetrics().update(-scores, -1 - known).compute()
        assert fpr_at_tpr(inside, outside) == pytest.approx(swapped["FPR95TPR"], abs=1e-6)
