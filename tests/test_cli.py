import subprocess
import sys

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


def test_no_network_for_a_hub_dataset_is_one_line(monkeypatch, capsys):
    import itra.experiments.reproduce as reproduce_module

    def offline(name, data_dir=None):
        raise ConnectionError(f"{name}: downloading needs the network; or pass --data-dir")

    monkeypatch.setattr(reproduce_module, "load_dataset", offline)
    assert main(["reproduce", "cifar10", "--model", "vgg13", "--smoke", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the network" in err
