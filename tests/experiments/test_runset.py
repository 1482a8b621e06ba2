"""Finding and selecting runs, on run directories the tests write by hand (no training)."""
import math

import pytest

from itra import rundir
from itra.experiments.runset import (best_groups, by_group, compactness_log, find_runs, finished, main_runs,
                                     paired_and_reference, representative_runs, study_rows, study_runs)
from itra.methods import METHODS
from tests.helpers import resolved


def write_run(root, test_ce=0.5, status="finished", compactness=((3, 0.8), (6, 0.6)), **fields):
    """A run directory as `itra train` leaves it: config, one metrics row, and a summary unless `status` is None."""
    config = resolved(epochs=1, **fields)
    run_dir = root / config.name
    run_dir.mkdir(parents=True)
    rundir.write_config(run_dir, config)
    row = {"epoch": 1, "train_ce": 0.4, "test_accuracy": 80.0, "test_cross_entropy": test_ce, "test_ece": 0.02,
           "compactness": [list(pair) for pair in compactness]}
    rundir.append_metrics(run_dir, row)
    if status == "finished":
        rundir.write_summary(run_dir, {"name": config.name, "status": "finished", **row})
    elif status == "failed":  # what `fit` writes when a run fails after an epoch: the reason and the last good row
        rundir.write_summary(run_dir, {"name": config.name, "status": "failed", "reason": "loss is NaN", **row})
    return run_dir


def test_find_runs_keeps_failed_runs_apart_and_leaves_out_unended_ones(tmp_path):
    write_run(tmp_path, method="ce")
    failed = write_run(tmp_path, method="ce", seed=1, status="failed")
    write_run(tmp_path, method="ce", seed=2, status=None)  # still running: no summary
    runs = find_runs([tmp_path])
    assert sorted(r.config.seed for r in runs) == [0, 1]
    assert [r.directory for r in runs if r.failed] == [failed]
    assert [r.config.seed for r in finished(runs)] == [0]
    assert list(by_group(runs)) == [runs[0].config.group]  # seeds of one config form one group
    assert find_runs([failed])[0].summary["reason"] == "loss is NaN"  # a run directory itself may be passed


def test_no_ended_runs_and_a_missing_path_are_clear_errors(tmp_path):
    write_run(tmp_path, method="ce", status=None)
    with pytest.raises(ValueError, match="No finished runs"):
        find_runs([tmp_path])
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        find_runs([tmp_path / "nope"])


def test_runs_of_two_studies_are_an_error_naming_both(tmp_path):
    write_run(tmp_path, method="ce", train_subset=64)
    write_run(tmp_path, method="ce", train_subset=96)
    with pytest.raises(ValueError, match="these runs have 2") as error:
        find_runs([tmp_path])
    assert "fashion-mnist, cnn, 64 training samples" in str(error.value) and "96 training samples" in str(error.value)


def test_best_groups_picks_the_lambda_of_lowest_mean_test_ce_among_finished_runs(tmp_path):
    write_run(tmp_path, method="itra-c", lam=0.3, test_ce=0.5)
    write_run(tmp_path, method="itra-c", lam=0.3, seed=1, test_ce=0.7)  # mean 0.6
    write_run(tmp_path, method="itra-c", lam=0.9, seed=1, test_ce=0.55)
    write_run(tmp_path, method="itra-c", lam=0.9, seed=0, status="failed", test_ce=0.1)  # never averaged in
    write_run(tmp_path, method="itra-c", lam=1.5, status="failed", test_ce=0.1)  # no finished run: never picked
    write_run(tmp_path, method="ce", test_ce=0.9)
    best = best_groups(find_runs([tmp_path]))
    assert [(r.config.method, r.config.lam, r.config.seed) for r in best] == [("ce", None, 0), ("itra-c", 0.9, 1)]
    assert [r.config.method for r in representative_runs(find_runs([tmp_path]))] == ["ce", "itra-c"]  # METHODS order


def test_representative_run_is_the_lowest_seed_of_the_best_group(tmp_path):
    for seed in (2, 1):
        write_run(tmp_path, method="lsr", seed=seed)
    assert [r.config.seed for r in representative_runs(find_runs([tmp_path]))] == [1]


def test_main_runs_are_clean_at_the_most_common_batch_size_and_budget(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, method="ce", batch_size=64, seed=seed)
        write_run(tmp_path, method="ce", batch_size=64, seed=seed, label_noise=0.4)
    write_run(tmp_path, method="ce", batch_size=32)
    main = main_runs(find_runs([tmp_path]))
    kept = sorted((r.config.batch_size, r.config.label_noise, r.config.seed) for r in main)
    assert kept == [(64, 0.0, 0), (64, 0.0, 1)]


def test_paired_and_reference_keeps_the_reference_and_two_batch_methods(tmp_path):
    for method in METHODS:
        write_run(tmp_path, method=method)
    kept = {r.config.method for r in paired_and_reference(find_runs([tmp_path]))}
    assert kept == {"ce"} | {name for name, spec in METHODS.items() if spec.needs_second_batch}


def test_study_keeps_arms_that_vary_the_field_and_the_reference(tmp_path):
    write_run(tmp_path, method="ce", batch_size=64)
    write_run(tmp_path, method="lsr", batch_size=64)  # one batch size, not the reference: left out
    for batch_size in (32, 64):
        write_run(tmp_path, method="itra-c", lam=0.3, batch_size=batch_size, test_ce=batch_size / 100)
    selected = study_runs(find_runs([tmp_path]), "batch_size", reference="ce")
    rows = study_rows(selected, "batch_size")
    assert [(arm, value, row["seeds"]) for arm, value, row in rows] == [
        ("CE", 64, 1), ("ITRA-c λ=0.3", 32, 1), ("ITRA-c λ=0.3", 64, 1)]
    assert rows[1][2]["test_cross_entropy"] == [0.32, 0.0]


def test_compactness_log_reads_null_as_nan(tmp_path):
    """A non-finite compactness (collapsed features) is written as null in strict JSON."""
    write_run(tmp_path, method="ce", compactness=((3, 0.8), (6, float("nan"))))
    steps, values = compactness_log(find_runs([tmp_path])[0])
    assert steps.tolist() == [3, 6] and values[0] == 0.8 and math.isnan(values[1])


def test_variants_of_one_method_are_never_merged(tmp_path):
    """Two bandwidths of ITRA-c at one λ are two arms, each at its own best λ."""
    write_run(tmp_path, method="itra-c", lam=0.6, bandwidth="class", test_ce=0.30)
    write_run(tmp_path, method="itra-c", lam=0.6, bandwidth="batch", match="mmd2", test_ce=0.40)
    write_run(tmp_path, method="itra-c", lam=0.2, bandwidth="batch", match="mmd2", test_ce=0.35)
    best = best_groups(find_runs([tmp_path]))
    assert sorted((r.config.bandwidth, r.config.lam) for r in best) == [("batch", 0.2), ("class", 0.6)]
    assert len(representative_runs(find_runs([tmp_path]))) == 2
