"""`itra reproduce layerwise-*`: the configs of a layer-wise preset, and its whole pipeline in smoke size."""
import json

import pytest

from itra.cli import main
from itra.experiments.multi_exit import config_label, layerwise_configs
from itra.experiments.presets import LAYERWISE_PRESETS
from tests.helpers import needs_fmnist


@pytest.mark.parametrize("name", list(LAYERWISE_PRESETS))
def test_every_arm_once_per_seed_seed_by_seed(name):
    preset = LAYERWISE_PRESETS[name]
    configs = layerwise_configs(preset, seeds=2, smoke=False)
    assert len(configs) == 2 * len(preset.arms) == 14
    assert [config.seed for config in configs] == [0] * 7 + [1] * 7  # a partial study holds every arm once
    assert len({config.name for config in configs}) == 14
    labels = [config_label(config) for config in configs[:7]]
    assert labels[:3] == ["CE, standard", "CE, aligned (shared head)", "CE, separate heads"]
    assert labels[-1].endswith(", aligned (shared head), matched at every exit")
    assert {(c.exits, c.match_at) for c in configs if c.method == "itra-c"} == {
        ("last", None), ("shared", "last"), ("separate", "last"), ("shared", "every")}


def test_similarity_by_layer_distance_averages_each_off_diagonal():
    from itra.experiments.multi_exit import by_distance

    matrix = [[1.0, 0.8, 0.5], [0.8, 1.0, 0.6], [0.5, 0.6, 1.0]]
    assert by_distance(matrix) == pytest.approx([0.7, 0.5])
    assert by_distance([[1.0, None], [None, 1.0]]) == [None]


def test_smoke_and_overrides_shrink_the_budget():
    configs = layerwise_configs(LAYERWISE_PRESETS["layerwise-fmnist"], seeds=1, smoke=True, device="cpu", epochs=None)
    assert all(c.epochs == 1 and c.train_subset == 256 and c.test_subset == 128 and c.device == "cpu" for c in configs)
    with pytest.raises(ValueError, match="larger than 0, but got 0"):
        layerwise_configs(LAYERWISE_PRESETS["layerwise-fmnist"], seeds=0, smoke=True)


@pytest.mark.slow
@needs_fmnist
def test_the_fmnist_preset_in_smoke_size_trains_measures_and_writes_its_table(tmp_path, capsys):
    assert main(["reproduce", "layerwise-fmnist", "--smoke", "--seeds", "1", "--out", str(tmp_path), "--quiet",
                 "--device", "cpu"]) == 0
    study = tmp_path / "reproduce-layerwise-fmnist-smoke"
    table = (study / "table.md").read_text()
    assert "| CE, separate heads (own heads) | 1 |" in table and "matched at every exit" in table
    assert "threshold 0.9" in table and "cosine–CKA r" in table and "| d = 5 |" in table
    result = json.loads((study / "table.json").read_text())
    separate = result["rows"]["CE, separate heads"]["layers"]
    assert len(separate["accuracy"]) == 6 and separate["separate_accuracy"] is not None
    assert result["rows"]["CE, standard"]["layers"]["separate_accuracy"] is None
    for figure in ("exit-accuracy.png", "early-exit.png"):
        assert (study / figure).stat().st_size > 10_000
    assert len(list((study / "similarity").glob("*/layers.json"))) == 7
    assert "table and figures written to" in capsys.readouterr().out


def test_a_layerwise_preset_has_one_model(tmp_path, capsys):
    assert main(["reproduce", "layerwise-fmnist", "--model", "cnn", "--out", str(tmp_path)]) == 2
    assert "layerwise-fmnist has one model (vit): leave --model out" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/wordnet/data.noun").exists(),
                    reason="apt-get install wordnet-base")
def test_the_wordnet_preset_in_smoke_size_runs_minilm_layer_by_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["reproduce", "layerwise-wordnet", "--smoke", "--seeds", "1", "--out", str(tmp_path), "--quiet",
                 "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "reproduce-layerwise-wordnet-smoke" / "table.json").read_text())
    assert len(result["rows"]) == 7
    aligned = result["rows"]["CE, aligned (shared head)"]["layers"]
    assert aligned["width"] == [384] * 6 and aligned["cosine_cka_correlation"] is not None
