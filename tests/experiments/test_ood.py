"""`itra ood` and the `ood-fmnist` preset: the table from cached measures (synthetic), the measures of two tiny real
runs and their cache, bad input by class (damaged or missing checkpoints, OOD sets of other image shapes, bad flags),
and `itra reproduce ood-fmnist --smoke` end to end."""
import json
import random
import shutil

import pytest
import torch
from torch.utils.data import TensorDataset

from itra.cli import main
from itra.data.registry import DATASETS, ImageDataset
from itra.data.splits import Splits
from itra.experiments.ood import OOD_SETS, ood_table, summarise
from itra.experiments.presets import find_preset
from itra.experiments.reproduce import preset_configs, result_table
from itra.ood import SCORES
from itra.retrieval import METRICS

from tests.helpers import needs_fmnist


# ---------------------------------------------------------------- the table, from synthetic measures
def measures(seed: int, temperature: bool = True) -> dict:
    """A run's measures as `measure_run` writes them, with values drawn from `seed`."""
    draw = random.Random(seed)
    scores = [score for score in SCORES if temperature or score != "msp_ts"]
    return {"run": f"run-{seed}", "epoch": 40, "knn_k": 50, "sets": {name: 1000 for name in OOD_SETS},
            "test_size": 6000, "temperature": 1.3 if temperature else None, "accuracy": 90 + draw.random(),
            "detection": {name: {score: {"auroc": draw.random(), "fpr95": draw.random()} for score in scores}
                          for name in OOD_SETS},
            "retrieval": {metric: draw.random() for metric in METRICS}}


def test_the_table_is_mean_and_std_over_seeds_of_the_cached_measures():
    runs = [measures(seed) for seed in range(3)]
    row = summarise(runs)
    auroc = [run["detection"]["digits"]["knn"]["auroc"] for run in runs]
    mean = sum(auroc) / 3
    assert row["seeds"] == 3 and row["detection"]["digits"]["knn"]["auroc"][0] == pytest.approx(mean, rel=1e-12)
    assert row["detection"]["digits"]["knn"]["auroc"][1] == pytest.approx(
        (sum((a - mean) ** 2 for a in auroc) / 2) ** 0.5, rel=1e-12)  # the sample std
    without = summarise([measures(3), measures(4, temperature=False)])  # one run without a validation split
    assert without["detection"]["noise"]["msp_ts"]["auroc"] is None and without["detection"]["noise"]["msp"]["auroc"]
    ood = {"knn_k": 50, "sets": {name: 1000 for name in OOD_SETS},
           "rows": {"Baseline (CE)": {**row, "failed": 0}, "ITRA-c": {**without, "failed": 1},
                    "never ran": {"seeds": 0, "failed": 0}}}
    table = ood_table(ood)
    assert table.count("\n| method | seeds | ID acc (%) | MSP | MSP after TS |") == 2 * len(OOD_SETS)
    assert f"| Baseline (CE) | 3 | {row['accuracy'][0]:.2f} ± {row['accuracy'][1]:.2f} | " in table
    cell = row["detection"]["held-out"]["msp"]["auroc"]
    assert f"| {100 * cell[0]:.1f} ± {100 * cell[1]:.1f} |" in table
    assert "| ITRA-c | 2 (+1 failed) |" in table and "never ran" not in table
    assert "MAP@R (%)" in table and "FPR at 95 % TPR (%), lower is better" in table
    line = next(line for line in table.splitlines() if line.startswith("| ITRA-c |"))
    assert line.split(" | ")[4] == "–"  # MSP after TS of a row with a run without a temperature
    study = {"settings": {"epochs": 40, "batch_size": 128, "lr": 0.05, "dataset": "fashion-mnist-first6",
                          "model": "cnn", "val_split": 1800}, "paper_table": "t", "seeds": 3, "smoke": False,
             "compared": "itra-c", "rows": [], "ood": ood}
    assert table in result_table(study)  # reproduce's table ends with it


def test_the_preset_trains_the_four_rows_on_the_first_six_classes_with_a_validation_split():
    preset = find_preset("ood-fmnist")
    configs = preset_configs(preset, 3, smoke=False)
    assert preset.ood and len(configs) == 12
    names = {setting.label: config.name for setting, config in configs if config.seed == 0}
    assert names == {
        "Baseline (CE)": "fashion-mnist-first6-cnn-ce-bs128-e40-n6000-val1800-seed0",
        "Center": "fashion-mnist-first6-cnn-center-lam0.1-bs128-e40-n6000-val1800-seed0",
        "ITRA-c": "fashion-mnist-first6-cnn-itra-c-lam0.6-warmr0.1-bs128-e40-n6000-val1800-seed0",
        "ITRA-c λ=0 (control)": "fashion-mnist-first6-cnn-itra-c-lam0-warmr0.1-bs128-e40-n6000-val1800-seed0"}
    assert all(config.s2_state in (None, "update") for _, config in configs)


# ---------------------------------------------------------------- two tiny real runs
TINY = ["--dataset", "fashion-mnist-first6", "--model", "cnn", "--method", "ce", "--epochs", "1", "--batch-size", "64",
        "--train-subset", "200", "--test-subset", "60", "--val-split", "60", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two seeds of CE on 200 images of Fashion-MNIST's first 6 classes, one epoch."""
    root = tmp_path_factory.mktemp("runs").resolve()
    for seed in ("0", "1"):
        assert main(["train", *TINY, "--seed", seed, "--out", str(root)]) == 0
    return root


def copy_runs(trained, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    return runs, sorted(runs.iterdir())


def one_line(capsys, code):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("note:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@needs_fmnist
def test_ood_measures_every_run_and_reuses_its_measures_without_the_checkpoint(trained, tmp_path, capsys):
    runs, (first, second) = copy_runs(trained, tmp_path)
    out = tmp_path / "ood"
    assert main(["ood", str(runs), "--out", str(out), "--knn-k", "20"]) == 0
    result = json.loads((out / "ood.json").read_text())
    assert list(result["rows"]) == ["CE"] and result["rows"]["CE"]["seeds"] == 2
    assert result["sets"] == {"held-out": 60, "digits": 60, "noise": 60} and result["knn_k"] == 20
    for run_dir in (first, second):
        measured = json.loads((out / f"{run_dir.name}.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        # the same model on the same test set as the run's own last evaluation, and its temperature
        assert measured["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
        assert measured["temperature"] == summary["temperature"] and measured["test_size"] == 60
        for scores in measured["detection"].values():
            assert list(scores) == list(SCORES)
            assert all(0 <= value <= 1 for metric in scores.values() for value in metric.values())
        assert 0 <= measured["retrieval"]["map_at_r"] <= measured["retrieval"]["r_precision"] + 1e-12
    assert "OOD detection, the ID test set against held-out" in (out / "ood.md").read_text()
    assert "| CE | 2 |" in capsys.readouterr().out

    for run_dir in (first, second):
        (run_dir / "checkpoint.pt").unlink()  # as committed: the measures are read back
    assert main(["ood", str(runs), "--out", str(out), "--knn-k", "20"]) == 0
    assert json.loads((out / "ood.json").read_text()) == result
    line = one_line(capsys, main(["ood", str(runs), "--out", str(out), "--knn-k", "21"]))  # not measured with k 21
    assert str(first / "checkpoint.pt") in line and "no such file" in line
    cached = out / f"{first.name}.json"
    cached.write_text(json.dumps({**json.loads(cached.read_text()), "epoch": 0}))  # before the run trained on
    line = one_line(capsys, main(["ood", str(runs), "--out", str(out), "--knn-k", "20"]))  # so measured again
    assert str(first / "checkpoint.pt") in line and "no such file" in line


DAMAGES = {"deleted": None, "empty": b"", "truncated": "half", "random": bytes(random.Random(0).randbytes(200))}
WHERE = ("the run", "its folder")
CASES = [(damage, where) for damage in DAMAGES for where in WHERE]


@needs_fmnist
@pytest.mark.parametrize("damage, where", CASES, ids=[f"{d}-{w.replace(' ', '-')}" for d, w in CASES])
def test_a_missing_or_damaged_checkpoint_is_one_line_naming_it(trained, tmp_path, capsys, damage, where):
    runs, (first, second) = copy_runs(trained, tmp_path)
    damaged = second if where == "its folder" else first
    path = damaged / "checkpoint.pt"
    if DAMAGES[damage] is None:
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if damage == "truncated" else DAMAGES[damage])
    capsys.readouterr()
    target = runs if where == "its folder" else first
    line = one_line(capsys, main(["ood", str(target), "--out", str(tmp_path / "ood")]))
    assert str(path) in line, line


def fake_dataset(shape):
    def load(data_dir):
        images = torch.rand(40, *shape, generator=torch.Generator().manual_seed(0))
        labels = torch.arange(40) % 4
        return Splits("fake", TensorDataset(images, labels), TensorDataset(images, labels), 4, tuple("abcd"))

    return ImageDataset(load)


SHAPES = [(3, 28, 28), (1, 32, 32), (1, 28, 27), (1, 8, 8), (2, 28, 28)]


@needs_fmnist
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, shape)) for shape in SHAPES])
def test_an_ood_set_of_another_image_shape_is_one_line(trained, tmp_path, capsys, monkeypatch, shape):
    monkeypatch.setitem(DATASETS, "fake-set", fake_dataset(shape))
    runs, (first, _) = copy_runs(trained, tmp_path)
    line = one_line(capsys, main(["ood", str(first), "--out", str(tmp_path / "ood"), "--sets", "noise,fake-set"]))
    assert "'fake-set'" in line and str(shape) in line and "(1, 28, 28)" in line, line


@needs_fmnist
def test_an_ood_set_of_the_runs_shape_is_measured_on_the_runs_pixel_range(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "fake-set", fake_dataset((1, 28, 28)))
    runs, (first, _) = copy_runs(trained, tmp_path)
    assert main(["ood", str(first), "--out", str(tmp_path / "ood"), "--sets", "fake-set,held-out"]) == 0
    assert json.loads((tmp_path / "ood" / "ood.json").read_text())["sets"] == {"fake-set": 40, "held-out": 60}


BAD_FLAGS = [(["--sets", "mnist"], "Unknown dataset 'mnist'"), (["--sets", "wordnet"], "text dataset"),
             (["--sets", "noise,ag-news"], "text dataset"), (["--knn-k", "100000"], "at most the 200 training features")]


@needs_fmnist
@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(flags) for flags, _ in BAD_FLAGS])
def test_bad_flags_are_one_line(trained, tmp_path, capsys, flags, message):
    runs, _ = copy_runs(trained, tmp_path)
    line = one_line(capsys, main(["ood", str(runs), "--out", str(tmp_path / "ood"), *flags]))
    assert message in line, line


@needs_fmnist
def test_runs_that_have_not_ended_are_no_runs_to_measure(trained, tmp_path, capsys):
    runs, run_dirs = copy_runs(trained, tmp_path)
    for run_dir in run_dirs:
        (run_dir / "summary.json").unlink()
    assert "No finished runs" in one_line(capsys, main(["ood", str(runs), "--out", str(tmp_path / "ood")]))


# ---------------------------------------------------------------- the preset, end to end
@needs_fmnist
@pytest.mark.slow
def test_ood_fmnist_smoke_measures_every_run_once_and_regenerates_without_checkpoints(tmp_path):
    command = ["reproduce", "ood-fmnist", "--smoke", "--seeds", "2", "--out", str(tmp_path), "--quiet",
               "--timing-steps", "2"]
    assert main(command) == 0
    study = tmp_path / "reproduce-ood-fmnist-cnn-smoke"
    assert len(list((study / "ood").glob("*.json"))) == 8  # 4 rows x 2 seeds
    result = json.loads((study / "table.json").read_text())
    assert set(result["ood"]["rows"]) == {"Baseline (CE)", "Center", "ITRA-c", "ITRA-c λ=0 (control)"}
    assert result["ood"]["sets"] == {"held-out": 120, "digits": 120, "noise": 120}
    assert all(row["seeds"] == 2 and row["detection"]["held-out"]["msp_ts"]["auroc"] is not None
               for row in result["ood"]["rows"].values())
    table = (study / "table.md").read_text()
    assert "OOD detection, the ID test set against digits" in table and "MAP@R (%)" in table
    for run_dir in tmp_path.glob("fashion-mnist-first6-*"):
        (run_dir / "checkpoint.pt").unlink()  # as committed: the table regenerates from the measures alone
    assert main([*command, "--table-only"]) == 0
    assert json.loads((study / "table.json").read_text())["ood"] == result["ood"]
