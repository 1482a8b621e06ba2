import subprocess
import sys

import pytest

from itra import __version__
from itra.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as stop:
        assert stop.code == 0
    assert capsys.readouterr().out.strip() == f"itra {__version__}"


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "itra.cli", "--help"], capture_output=True, text=True, check=True)
    assert "usage: itra" in out.stdout


def test_reproduce_smoke_end_to_end(tmp_path, capsys):
    """The README's main job in its CI size: real Fashion-MNIST subset, all four methods, 3 seeds."""
    import pytest

    from itra.data.fashion_mnist import DEFAULT_DIR

    if not DEFAULT_DIR.exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    assert main(["reproduce", "fashion-mnist", "--smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    for label in ("Baseline (CE)", "LSR", "Center", "ITRA-c", "92.57"):
        assert label in out
    table = tmp_path / "reproduce-fashion-mnist-cnn-smoke" / "table.md"
    assert table.exists() and len(list(tmp_path.glob("fashion-mnist-cnn-*-seed*"))) == 12


def test_train_and_resume_via_cli(tmp_path, capsys):
    import pytest

    from itra.data.fashion_mnist import DEFAULT_DIR

    if not DEFAULT_DIR.exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    flags = ["train", "--method", "itra", "--epochs", "1", "--train-subset", "256", "--test-subset", "128",
             "--batch-size", "64", "--out", str(tmp_path), "--quiet"]
    assert main(flags) == 0
    run_dir = next(tmp_path.iterdir())
    assert (run_dir / "summary.json").exists() and "test accuracy" in capsys.readouterr().out
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0  # finished: nothing left, same summary


def test_bad_flags_give_one_line(capsys):
    assert main(["train", "--method", "mixup"]) == 2
    assert "Expected `method` in ce, lsr, center, itra, itra-c, but got 'mixup'" in capsys.readouterr().err


@pytest.mark.parametrize("preset", [["cifar10", "--model", "vgg13"], ["ag-news", "--model", "distilbert-base-uncased"]])
def test_no_network_for_a_hub_dataset_is_one_line(monkeypatch, capsys, preset):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["reproduce", *preset, "--smoke", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the network" in err


WORDNET = pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/wordnet/data.noun").exists(),
                             reason="apt-get install wordnet-base")


@WORDNET
def test_train_a_text_classifier_on_real_wordnet_glosses(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "--dataset", "wordnet", "--model", "minilm", "--method", "itra-c", "--lam", "0.5",
                 "--optimizer", "adamw", "--lr", "5e-5", "--epochs", "1", "--batch-size", "16", "--max-length", "16",
                 "--train-subset", "64", "--test-subset", "48", "--compactness-every", "2", "--out", str(tmp_path),
                 "--quiet"]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name == "wordnet-minilm-itra-c-lam0.5-bs16-e1-n64-seed0"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_size"] == 64 and summary["test_size"] == 48 and summary["train_match"] > 0
    (row,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in row["compactness"]] == [2, 4]


@WORDNET
def test_a_text_dataset_with_an_image_model_is_a_clear_error(capsys):
    assert main(["train", "--dataset", "wordnet", "--model", "cnn", "--quiet"]) == 2
    assert "wordnet is a text dataset" in capsys.readouterr().err
