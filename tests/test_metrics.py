import math

import pytest
import torch

from itra.metrics import calibration_bins, classification_metrics, expected_calibration_error


def logits_with_confidence(confidences, num_classes=2):
    """Two-class logits whose max-probability (for class 0) is exactly each confidence."""
    return torch.tensor([[math.log(c), math.log(1 - c)] if c < 1 else [0.0, -1e4] for c in confidences])


def test_ece_by_hand():
    # 3 bins: (0, 1/3], (1/3, 2/3], (2/3, 1]
    logits = logits_with_confidence([0.9, 0.8, 0.6, 0.55, 1.0])
    labels = torch.tensor([0, 1, 0, 0, 0])  # correct, wrong, correct, correct, correct
    # bin 2 (2/3, 1]: confidences 0.9, 0.8, 1.0 -> mean 0.9, accuracy 2/3 -> |2/3 - 0.9| * 3/5
    # bin 1 (1/3, 2/3]: confidences 0.6, 0.55 -> mean 0.575, accuracy 1 -> |1 - 0.575| * 2/5
    expected = abs(2 / 3 - 0.9) * 3 / 5 + abs(1 - 0.575) * 2 / 5
    assert expected_calibration_error(logits, labels, n_bins=3) == pytest.approx(expected, abs=1e-6)


def test_confidence_of_one_falls_in_the_last_bin_and_edges_are_right_closed():
    bins = calibration_bins(logits_with_confidence([1.0, 0.5]), torch.tensor([0, 0]), n_bins=2)
    assert bins.counts.tolist() == [1.0, 1.0]  # 0.5 is in (0, 0.5], 1.0 in (0.5, 1]
    assert bins.mean_confidence.tolist() == pytest.approx([0.5, 1.0])


def test_perfectly_calibrated_and_fully_confident():
    logits = logits_with_confidence([1.0] * 4)
    assert expected_calibration_error(logits, torch.zeros(4, dtype=torch.long)) == pytest.approx(0.0, abs=1e-6)
    assert expected_calibration_error(logits, torch.ones(4, dtype=torch.long)) == pytest.approx(1.0, abs=1e-6)


def test_classification_metrics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    metrics = classification_metrics(logits, labels)
    assert metrics["accuracy"] == pytest.approx(75.0)
    assert metrics["cross_entropy"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_bad_bins():
    with pytest.raises(ValueError, match="n_bins"):
        calibration_bins(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), n_bins=0)


def test_compactness_on_features_with_a_known_answer():
    from itra.metrics import compactness

    # Class 0 at x=0, class 1 at x=3, one sample of each class in each batch, 1-D features.
    h1 = torch.tensor([[0.0], [3.0]])
    h2 = torch.tensor([[0.0], [3.0]])
    y = torch.tensor([0, 1])
    # same-class distances: 0, 0 -> mean 0; all pairs: 0, 3, 3, 0 -> mean 1.5
    assert compactness(h1, y, h2, y) == 0.0
    # Move batch 2's class-0 sample to x=1: same-class 1 and 0 -> 0.5; all: 1, 3, 2, 0 -> 1.5
    h2 = torch.tensor([[1.0], [3.0]])
    assert compactness(h1, y, h2, y) == pytest.approx(0.5 / 1.5)
    # Labels carry no information about the features: about 1.
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    labels = torch.randint(0, 4, (400,), generator=g)
    assert compactness(a, labels, b, labels) == pytest.approx(1.0, abs=0.02)
    assert math.isnan(compactness(h1, torch.tensor([0, 0]), h2, torch.tensor([1, 1])))
    collapsed = torch.ones(4, 3)  # every feature the same vector: no distance to normalise by
    assert math.isnan(compactness(collapsed, torch.tensor([0, 1, 0, 1]), collapsed, torch.tensor([0, 1, 1, 0])))


def test_metric_sums_of_parts_add_up_to_the_whole_set():
    from itra.metrics import metric_sums, metrics_from_sums

    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(101, 5, generator=generator) * 3, torch.randint(0, 5, (101,), generator=generator)
    parts = [metric_sums(z, y, n_bins=7) for z, y in zip(logits.tensor_split([30, 31]), labels.tensor_split([30, 31]))]
    torch.testing.assert_close(sum(parts), metric_sums(logits, labels, n_bins=7), rtol=1e-12, atol=1e-12)
    whole = metrics_from_sums(sum(parts))
    assert whole == pytest.approx(classification_metrics(logits, labels, n_bins=7), rel=1e-12)
    assert whole["accuracy"] == pytest.approx(100 * (logits.argmax(1) == labels).double().mean().item())
    assert whole["cross_entropy"] == pytest.approx(torch.nn.functional.cross_entropy(logits.double(), labels).item())
    confidence, correct = logits.softmax(1).max(1).values.double(), (logits.argmax(1) == labels).double()
    ece = sum(abs(correct[b].sum() - confidence[b].sum()) for b in
              [(confidence > k / 7) & (confidence <= (k + 1) / 7) for k in range(7)]) / 101
    assert whole["ece"] == pytest.approx(float(ece), abs=1e-6)


def test_ece_equals_torchmetrics_multiclass_calibration_error():
    """torchmetrics' ECE (its bins [b/n, (b+1)/n), ours (b/n, (b+1)/n]: the same away from the edges, which random
    logits do not hit). torchmetrics exposes no reliability bins, only the scalar, so the bins are not compared."""
    functional = pytest.importorskip("torchmetrics.functional.classification", reason="pip install torchmetrics")
    generator = torch.Generator().manual_seed(0)
    for num_classes, scale in ((2, 1.0), (10, 3.0), (100, 5.0)):
        logits = torch.randn(1000, num_classes, generator=generator) * scale
        # Labels drawn at a random temperature per sample: some bins over-, some underconfident, so the bins matter.
        temperature = 2 * torch.rand(1000, 1, generator=generator)
        labels = torch.multinomial((logits * temperature).softmax(dim=1), 1, generator=generator).squeeze(1)
        expected = functional.multiclass_calibration_error(logits.softmax(dim=1), labels, num_classes, n_bins=15,
                                                           norm="l1")
        assert expected_calibration_error(logits, labels, n_bins=15) == pytest.approx(expected.item(), abs=1e-6)
