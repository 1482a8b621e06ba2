import pytest

from itra.cli import main
from itra.data.fashion_mnist import DEFAULT_DIR
from itra.experiments.sweep import grid_configs


def test_grid_dedupes_runs_that_resolve_to_the_same_config():
    configs = grid_configs({"method": ["ce", "itra-c"], "lam": [0.2, 0.4], "epochs": [1]}, seeds=2)
    names = [c.name for c in configs]
    assert len(names) == len(set(names)) == 2 * 1 + 2 * 2  # ce once per seed, itra-c per lambda and seed
    assert {c.seed for c in configs} == {0, 1}


def test_bad_grid_values_are_clear():
    with pytest.raises(ValueError, match="method"):
        grid_configs({"method": ["nope"]}, 1)
    with pytest.raises(ValueError, match="seeds"):
        grid_configs({"method": ["ce"]}, 0)


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_sweep_runs_then_reuses(tmp_path, capsys):
    flags = ["sweep", "--method", "ce,itra-c", "--lam", "0.2,0.6", "--epochs", "1", "--train-subset", "256",
             "--test-subset", "128", "--batch-size", "64", "--seeds", "1", "--out", str(tmp_path), "--quiet"]
    assert main(flags) == 0
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert len(runs) == 3 and all((tmp_path / r / "summary.json").exists() for r in runs)
    stamps = {r: (tmp_path / r / "summary.json").stat().st_mtime_ns for r in runs}
    assert main(flags) == 0  # everything finished: nothing retrained
    assert stamps == {r: (tmp_path / r / "summary.json").stat().st_mtime_ns for r in runs}
    assert "itra-c-lam0.2" in capsys.readouterr().out
