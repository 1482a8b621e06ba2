"""The multi-modality measures on features whose modes are known, and `itra reproduce multimodal-fmnist --smoke`."""
import json

import pytest
import torch

from itra.cli import main
from itra.experiments.modes import mode_metrics, source_classes

from tests.helpers import needs_fmnist

PAIRS = ((0, 9), (1, 2), (3, 8), (4, 5), (6, 7))


def labelled(n=1000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sources = torch.randint(0, 10, (n,), generator=generator)
    merged = torch.empty(10, dtype=torch.long)
    for label, pair in enumerate(PAIRS):
        merged[list(pair)] = label
    return merged[sources], sources, generator


def test_features_that_keep_both_modes_score_perfectly():
    labels, sources, generator = labelled()
    centres = torch.randn(10, 16, generator=generator) * 10  # a far-apart centre per source class
    features = centres[sources] + 0.1 * torch.randn(len(sources), 16, generator=generator)
    measured = mode_metrics(features, labels, sources)
    assert measured["source_knn"] == measured["source_probe"] == measured["label_knn"] == 100.0
    assert measured["mode_ari"] == 1.0 and measured["mode_purity"] == 100.0
    assert measured["mode_ari_per_label"] == [1.0] * 5


def test_features_pulled_to_one_centre_per_label_lose_the_modes():
    labels, sources, generator = labelled(seed=1)
    centres = torch.randn(5, 16, generator=generator) * 10  # one centre per label: the source is gone
    features = centres[labels] + torch.randn(len(labels), 16, generator=generator)
    measured = mode_metrics(features, labels, sources)
    assert measured["label_knn"] == 100.0
    assert 40 < measured["source_knn"] < 60 and 40 < measured["source_probe"] < 60  # a coin within each label
    assert abs(measured["mode_ari"]) < 0.05 and measured["mode_purity"] < 60


def test_source_classes_says_which_of_the_pair():
    labels, sources, _ = labelled()
    which = source_classes(labels, sources, PAIRS)
    assert torch.equal(torch.tensor([PAIRS[l][w] for l, w in zip(labels.tolist(), which.tolist())]), sources)


@needs_fmnist
@pytest.mark.slow
def test_multimodal_smoke_measures_every_run_once(tmp_path, capsys):
    command = ["reproduce", "multimodal-fmnist", "--smoke", "--seeds", "2", "--out", str(tmp_path), "--quiet",
               "--timing-steps", "2"]
    assert main(command) == 0
    study = tmp_path / "reproduce-multimodal-fmnist-cnn-smoke"
    measured = sorted(p.name for p in (study / "modes").glob("*.json"))
    assert len(measured) == 7 and "pixels.json" in measured  # 3 methods x 2 seeds, and the pixels
    result = json.loads((study / "table.json").read_text())
    assert set(result["modes"]["rows"]) == {"Baseline (CE)", "Center", "ITRA-c", "pixels (the input)"}
    assert "T-shirt/top+Ankle boot" in (study / "table.md").read_text()
    for run_dir in tmp_path.glob("fashion-mnist-pairs-*"):
        (run_dir / "checkpoint.pt").unlink()  # as committed: the table regenerates from the measures alone
    assert main(command) == 0
    assert json.loads((study / "table.json").read_text())["modes"] == result["modes"]
