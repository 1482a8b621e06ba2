"""The layer-wise view: `layer_analysis.layerwise` against one-shot references, and its pure functions (saturation
layer, early exit, cosine-CKA correlation) against slow references."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from itra.layer_analysis import EXIT_THRESHOLDS, cosine_cka_correlation, early_exit, layerwise, saturation_layers
from itra.metrics import classification_metrics, expected_calibration_error
from itra.models.registry import build_image_model
from itra.similarity import linear_cka, sample_cosine


def test_layerwise_in_batches_equals_the_one_shot_measures():
    torch.manual_seed(0)
    model = build_image_model("vit", 10, 1).eval()
    images, labels = torch.randn(70, 1, 28, 28), torch.randint(0, 10, (70,))
    measured = layerwise(model, TensorDataset(images, labels), torch.device("cpu"), batch_size=32)  # 3 uneven batches
    with torch.no_grad():
        exits = model.exits(images)
    assert measured["width"] == [64] * 6
    for i, h in enumerate(exits):
        logits = model.head(h)
        assert measured["accuracy"][i] == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
        assert measured["cross_entropy"][i] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
        assert measured["cosine"][i] == pytest.approx(sample_cosine(h, exits[-1]).item(), abs=1e-6)
        for j, g in enumerate(exits):
            assert measured["cka"][i][j] == pytest.approx(linear_cka(h, g).item(), abs=1e-6)
            assert measured["cka_debiased"][i][j] == pytest.approx(linear_cka(h, g, debiased=True).item(), abs=1e-6)
    assert measured["cosine"][-1] == pytest.approx(1.0) and measured["cka"][2][2] == pytest.approx(1.0)


def test_layerwise_with_separate_heads_scores_each_exits_own_head_and_both_kinds_exits():
    torch.manual_seed(0)
    model = build_image_model("vit", 4, 1)
    model.add_exit_heads()
    images, labels = torch.randn(50, 1, 28, 28), torch.randint(0, 4, (50,))
    measured = layerwise(model.eval(), TensorDataset(images, labels), torch.device("cpu"), batch_size=16)
    with torch.no_grad():
        exits = model.exits(images)
        kinds = {"shared": torch.stack([model.head(h) for h in exits]),  # (L, N, K)
                 "separate": torch.stack([head(h) for head, h in zip([*model.exit_heads, model.head], exits)])}
    for i, logits in enumerate(kinds["separate"]):
        accuracy = 100 * (logits.argmax(1) == labels).float().mean().item()
        assert measured["separate_accuracy"][i] == pytest.approx(accuracy)
        assert measured["separate_cross_entropy"][i] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
        assert measured["separate_ece"][i] == pytest.approx(expected_calibration_error(logits, labels), abs=1e-6)
    assert measured["separate_accuracy"][-1] == measured["accuracy"][-1]  # the last exit's head is `head`
    for kind, logits in kinds.items():
        layers = saturation_layers(logits)
        assert measured["saturation"][kind]["mean_layer"] == pytest.approx(layers.double().mean().item())
        by_layer = [(layers <= l).double().mean().item() for l in range(1, 7)]
        assert measured["saturation"][kind]["saturated"] == pytest.approx(by_layer)
        for got, expected in zip(measured["early_exit"][kind], early_exit(logits, labels), strict=True):
            assert got == pytest.approx(expected)
    json.dumps(measured, allow_nan=False)  # JSON-ready as it is


def test_the_cosine_matrix_is_the_sample_cosine_of_every_pair_and_tracks_cka():
    torch.manual_seed(0)
    model = build_image_model("vit", 10, 1).eval()
    images = torch.randn(40, 1, 28, 28)
    measured = layerwise(model, TensorDataset(images, torch.randint(0, 10, (40,))), torch.device("cpu"), batch_size=16)
    with torch.no_grad():
        exits = model.exits(images)
    for i, h in enumerate(exits):
        assert measured["cosine_matrix"][i][i] == pytest.approx(1.0)
        for j, g in enumerate(exits):
            assert measured["cosine_matrix"][i][j] == pytest.approx(sample_cosine(h, g).item(), abs=1e-6)
    assert [row[-1] for row in measured["cosine_matrix"]] == measured["cosine"]
    assert measured["cosine_cka_correlation"] == cosine_cka_correlation(measured["cosine_matrix"], measured["cka"])
    assert "separate_accuracy" not in measured and set(measured["saturation"]) == {"shared"}


def test_layers_of_other_widths_get_cka_only():
    model = build_image_model("resnet18", 4, 3).eval()
    data = TensorDataset(torch.randn(12, 3, 16, 16), torch.randint(0, 4, (12,)))
    measured = layerwise(model, data, torch.device("cpu"))
    assert measured["width"] == [64, 128, 256, 512]
    assert measured["accuracy"][:3] == [None] * 3 and measured["accuracy"][3] is not None
    assert measured["cosine"][:3] == [None] * 3 and len(measured["cka"]) == 4
    assert all((measured["cosine_matrix"][i][j] is None) == (i != j) for i in range(4) for j in range(4))
    assert measured["cosine_cka_correlation"] is None  # no pair of layers of one width
    assert measured["saturation"] == {} and measured["early_exit"] == {}  # the shared head reads the last layer only
    model.add_exit_heads()
    measured = layerwise(model, data, torch.device("cpu"))
    assert all(value is not None for value in measured["separate_accuracy"])
    assert set(measured["saturation"]) == set(measured["early_exit"]) == {"separate"}


# ---------------------------------------------------------------- the pure functions against slow loops
def ref_saturation_layers(logits):
    """For each sample, the first layer l (1-based) from which every exit predicts what the last one does."""
    predictions = logits.argmax(dim=2).tolist()  # (L, N)
    layers = len(predictions)
    found = []
    for n in range(len(predictions[0])):
        for l in range(layers):
            if all(predictions[k][n] == predictions[-1][n] for k in range(l, layers)):
                found.append(l + 1)
                break
    return found


def ref_early_exit(logits, labels, threshold):
    """(accuracy %, mean exit layer / L) by walking every sample through its exits."""
    layers, samples, _ = logits.shape
    correct, depth = 0, 0
    for n in range(samples):
        for l in range(layers):
            probabilities = torch.softmax(logits[l, n].double(), dim=0)
            if probabilities.max() >= threshold or l == layers - 1:
                correct += int(probabilities.argmax() == labels[n])
                depth += l + 1
                break
    return 100.0 * correct / samples, depth / (samples * layers)


@pytest.mark.parametrize("layers, samples, classes", [(6, 200, 3), (1, 5, 4), (3, 1, 2)])
def test_saturation_layers_equal_the_double_loop(layers, samples, classes):
    logits = torch.randn(layers, samples, classes, generator=torch.Generator().manual_seed(layers))
    found = saturation_layers(logits)
    assert found.dtype == torch.long and found.tolist() == ref_saturation_layers(logits)
    assert found.min() >= 1 and found.max() <= layers


def test_a_prediction_that_changes_and_comes_back_saturates_after_its_last_change():
    # one sample, two classes: predictions by layer 0, 1, 0, 0 -> saturated from layer 3
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]], [[2.0, 0.0]]])
    assert saturation_layers(logits).tolist() == [3]


def test_early_exit_equals_the_double_loop_and_its_limits():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(5, 120, 4, generator=generator)  # (L, N, K): confidences spread over (0.25, 1)
    labels = torch.randint(0, 4, (120,), generator=generator)
    thresholds = (0.0, 0.4, 0.6, 0.8, 0.95, 1.0, 2.0)
    curve = early_exit(logits, labels, thresholds)
    assert [point["threshold"] for point in curve] == list(thresholds)
    for point, threshold in zip(curve, thresholds):
        accuracy, compute = ref_early_exit(logits, labels, threshold)
        assert point["accuracy"] == pytest.approx(accuracy) and point["relative_compute"] == pytest.approx(compute)
    first, last = classification_metrics(logits[0], labels), classification_metrics(logits[-1], labels)
    assert curve[0]["relative_compute"] == pytest.approx(1 / 5)  # threshold 0: all at the first exit
    assert curve[0]["accuracy"] == pytest.approx(first["accuracy"])
    assert curve[-1]["relative_compute"] == 1.0 and curve[-1]["accuracy"] == pytest.approx(last["accuracy"])
    assert [point["threshold"] for point in early_exit(logits, labels)] == list(EXIT_THRESHOLDS)
    assert EXIT_THRESHOLDS[-1] > 1  # the grid ends with the full model


def test_early_exit_and_saturation_name_bad_shapes():
    with pytest.raises(ValueError, match=r"logits \(L, N, K\) and labels \(N,\), but got \(3, 4\)"):
        early_exit(torch.zeros(3, 4), torch.zeros(4, dtype=torch.long), (0.5,))
    with pytest.raises(ValueError, match=r"logits \(L, N, K\) of L exits, but got shape \(3, 4\)"):
        saturation_layers(torch.zeros(3, 4))


def test_the_cosine_cka_correlation_is_pearson_over_the_defined_pairs_above_the_diagonal():
    generator = torch.Generator().manual_seed(0)
    size = 5
    cka = torch.rand(size, size, generator=generator, dtype=torch.float64)
    cka = ((cka + cka.T) / 2).tolist()
    cosine = torch.rand(size, size, generator=generator, dtype=torch.float64).tolist()
    cosine[0][3] = None  # widths differ
    cka[1][4] = float("nan")  # an undefined CKA
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size) if (i, j) not in {(0, 3), (1, 4)}]
    expected = np.corrcoef([cosine[i][j] for i, j in pairs], [cka[i][j] for i, j in pairs])[0, 1]
    assert cosine_cka_correlation(cosine, cka) == pytest.approx(expected)
    assert cosine_cka_correlation([[1.0, 0.5], [0.5, 1.0]], [[1.0, 0.7], [0.7, 1.0]]) is None  # one pair
    flat = [[1.0 if i == j else 0.5 for j in range(size)] for i in range(size)]
    assert cosine_cka_correlation(flat, cka) is None  # a constant cosine: no correlation
