"""Runs by config: reuse of ended runs, resume of interrupted ones, never overwriting another config."""
import json

import pytest

from itra.experiments.runs import duration, run

from tests.helpers import needs_fmnist, small


@needs_fmnist
def test_finished_runs_are_reused_and_other_configs_are_not_overwritten(tmp_path, splits):
    config = small("ce", epochs=1)
    run_dir, first = run(config, tmp_path, splits, progress=False)
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    _, again = run(config, tmp_path, splits, progress=False)
    assert again == first and (run_dir / "summary.json").stat().st_mtime_ns == stamp
    (run_dir / "config.json").write_text(json.dumps({**json.loads((run_dir / "config.json").read_text()), "lr": 0.1}))
    with pytest.raises(ValueError, match=r"another config \(lr 0.1 / 0.05\); its name today is .*-lr0.1-probe10-seed0: rename"):
        run(config, tmp_path, splits, progress=False)


def test_a_run_s_duration_reads_at_a_glance():
    assert [duration(s) for s in (0.4, 59.6, 252, 3599, 7500)] == ["0s", "1m00s", "4m12s", "59m59s", "2h05m"]
