"""Runs by config: reuse of ended runs, resume of interrupted ones, never overwriting another config."""
import json
from pathlib import Path

import pytest

from itra.config import TrainConfig
from itra.data.registry import load_dataset
from itra.experiments.runs import run

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def splits():
    return load_dataset("fashion-mnist")


def small(method="itra-c", **kwargs):
    values = dict(method=method, lam=0.1 if method == "center" else 0.6, epochs=2, batch_size=64, train_subset=1280,
                  test_subset=300, device="cpu", seed=0, compactness_every=10)
    values.update(kwargs)
    return TrainConfig(**values)


@needs_fmnist
def test_finished_runs_are_reused_and_other_configs_are_not_overwritten(tmp_path, splits):
    config = small("ce", epochs=1)
    run_dir, first = run(config, tmp_path, splits, progress=False)
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    _, again = run(config, tmp_path, splits, progress=False)
    assert again == first and (run_dir / "summary.json").stat().st_mtime_ns == stamp
    (run_dir / "config.json").write_text(json.dumps({**json.loads((run_dir / "config.json").read_text()), "lr": 0.1}))
    with pytest.raises(ValueError, match="another config"):
        run(config, tmp_path, splits, progress=False)
