"""Evaluation through the Objective: predictions, the test metrics row, the compactness probe."""
import torch
from torch.utils.data import TensorDataset

from itra.evaluate import compactness_probe, evaluate, predict, probe_compactness
from itra.objective import Objective
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
