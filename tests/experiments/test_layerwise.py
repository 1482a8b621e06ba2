"""The layer-wise view: `evaluate.layerwise` against one-shot references, and `itra similarity` end to end."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from itra import rundir
from itra.cli import main
from itra.config import TrainConfig
from itra.evaluate import cosine_cka_correlation, early_exit, layerwise, saturation_layers
from itra.metrics import expected_calibration_error
from itra.models.registry import build_image_model
from itra.similarity import linear_cka, sample_cosine

from tests.helpers import needs_fmnist


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
        assert measured["separate_accuracy"][i] == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
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


@needs_fmnist
def test_itra_similarity_reads_a_run_and_its_last_layer_is_the_runs_own_accuracy(tmp_path, capsys):
    flags = ["train", "--model", "vit", "--method", "ce", "--optimizer", "adamw", "--lr", "0.001", "--epochs", "1",
             "--batch-size", "64", "--train-subset", "256", "--test-subset", "200", "--out", str(tmp_path), "--quiet"]
    assert main(flags) == 0
    (run_dir,) = tmp_path.iterdir()
    assert main(["similarity", str(run_dir), "--out", str(tmp_path / "sim")]) == 0
    assert "accuracy after each layer (%)" in capsys.readouterr().out
    measured = json.loads((tmp_path / "sim" / run_dir.name / "layers.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert measured["test_size"] == 200 and len(measured["accuracy"]) == 6
    assert measured["accuracy"][-1] == pytest.approx(summary["test_accuracy"], abs=1e-4)  # the same head, test set
    assert (tmp_path / "sim" / run_dir.name / "layers.png").stat().st_size > 0


def test_a_run_without_a_checkpoint_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.write_config(run_dir, TrainConfig(method="ce"))
    assert main(["similarity", str(run_dir)]) == 2
    assert "has no checkpoint.pt yet" in capsys.readouterr().err
