"""Evaluation through the Objective: predictions, the test metrics row, the compactness probe; the layer-wise
pure functions (saturation layer, early exit, cosine-CKA correlation) against slow references."""
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from itra.evaluate import (EXIT_THRESHOLDS, compactness_probe, cosine_cka_correlation, early_exit, evaluate, predict,
                           probe_compactness, saturation_layers)
from itra.methods import Objective
from itra.metrics import classification_metrics
from itra.models.registry import build_image_model


def toy_data(n=50, classes=3):
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, classes, (n,), generator=generator))


def test_predict_is_the_models_eval_output_in_batches():
    torch.manual_seed(0)
    model = build_image_model("cnn", 3, 1)
    data = toy_data()
    objective = Objective(model).train()
    features, logits, labels = predict(objective, data, torch.device("cpu"), batch_size=16)
    assert not objective.training and features.shape == (50, model.feature_dim) and torch.equal(labels, data.tensors[1])
    with torch.no_grad():
        torch.testing.assert_close(logits, model(data.tensors[0]))
    row = evaluate(objective, data, torch.device("cpu"))
    _, logits, _ = predict(objective, data, torch.device("cpu"))  # evaluate's batches: the same logits, bit for bit
    assert row == {f"test_{k}": v for k, v in classification_metrics(logits, labels).items()}


def test_the_probe_is_two_fixed_disjoint_batches_and_restores_train_mode():
    data = toy_data(40)
    first, second = compactness_probe(data, torch.Generator().manual_seed(1), size=256)
    assert len(first[0]) == len(second[0]) == 20  # capped at half the set
    rows = {tuple(x.flatten()[:4].tolist()) for x in torch.cat([first[0], second[0]])}
    assert len(rows) == 40  # disjoint
    again = compactness_probe(data, torch.Generator().manual_seed(1))
    assert torch.equal(again[0][0], first[0])
    objective = Objective(build_image_model("cnn", 3, 1)).train()
    value = probe_compactness(objective, (first, second), torch.device("cpu"))
    assert objective.training and 0 < value < 2


# ---------------------------------------------------------------- the layer-wise pure functions against slow loops
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
