"""The layer-wise view: `evaluate.layerwise` against one-shot references, and `itra similarity` end to end."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from itra import rundir
from itra.cli import main
from itra.config import TrainConfig
from itra.evaluate import layerwise
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


def test_layers_of_other_widths_get_cka_only():
    model = build_image_model("resnet18", 4, 3).eval()
    data = TensorDataset(torch.randn(12, 3, 16, 16), torch.randint(0, 4, (12,)))
    measured = layerwise(model, data, torch.device("cpu"))
    assert measured["width"] == [64, 128, 256, 512]
    assert measured["accuracy"][:3] == [None] * 3 and measured["accuracy"][3] is not None
    assert measured["cosine"][:3] == [None] * 3 and len(measured["cka"]) == 4


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
