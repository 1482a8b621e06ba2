"""Runs by config: reuse of ended runs, resume of interrupted ones, never overwriting another config."""
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from itra.config import TrainConfig
from itra.experiments.runs import duration, longest_first, run
from itra.resolve import resolve

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


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ce", "lsr", "center", "itra-c"]), st.sampled_from(["independent", "previous"]),
                          st.integers(1, 4), st.sampled_from([None, 500, 1000]), st.booleans()), min_size=1, max_size=8))
def test_workers_take_the_ended_runs_first_then_the_longest(runs):
    with tempfile.TemporaryDirectory() as out:
        configs = []
        for seed, (method, pairing, epochs, subset, ended) in enumerate(runs):
            config = resolve(TrainConfig(method=method, pairing=pairing if method == "itra-c" else "independent",
                                         epochs=epochs, train_subset=subset, seed=seed))
            configs.append(config)
            if ended:
                (Path(out) / config.name).mkdir()
                (Path(out) / config.name / "summary.json").write_text("{}")
        order = longest_first(configs, Path(out))
        assert sorted(order) == list(range(len(configs)))  # every run once
        ended = [(Path(out) / configs[i].name / "summary.json").exists() for i in order]
        assert ended == sorted(ended, reverse=True)
        waiting = [configs[i] for i, done in zip(order, ended) if not done]
        passes = [1 + (c.method == "itra-c" and c.pairing == "independent") for c in waiting]
        costs = [c.epochs * (c.train_subset or float("inf")) * p for c, p in zip(waiting, passes)]
        assert costs == sorted(costs, reverse=True)
