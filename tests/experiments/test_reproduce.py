"""`itra reproduce fashion-mnist-overfit --smoke`: every row before and after temperature scaling, the
early-stopping rows read from the same runs, Figure 2, and the one-seed table that claims no separation."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from itra.cli import main
from itra.experiments.presets import find_preset
from itra.experiments.reproduce import picked_rows, preset_configs, reuse_step_times, strength_grid
from itra.methods import METHODS
from itra.rundir import read_metrics
from itra.data.paired import PairedLoader
from itra.pairing import samples_per_step
from itra.warmup import warmup_steps

from tests.helpers import needs_fmnist

needs_wordnet = pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/wordnet/data.noun").exists(),
                                   reason="apt-get install wordnet-base")


def test_the_overfit_preset_rows_are_the_settings_a_user_would_compare():
    preset = find_preset("fashion-mnist-overfit")
    configs = preset_configs(preset, 1, smoke=False)
    names = {setting.label: config.name for setting, config in configs}
    assert names["Baseline (CE)"] == "fashion-mnist-cnn-ce-bs128-e40-n10000-val5000-seed0"
    assert names["ITRA-c (paper variant)"] == "fashion-mnist-cnn-itra-c-lam0.6-bwclass-warm0-bs128-e40-n10000-val5000-seed0"
    assert names["ITRA-c (previous)"] == "fashion-mnist-cnn-itra-c-lam0.6-previous-bs128-e40-n10000-val5000-seed0"
    grids = {method: [s.strength for s in strength_grid(preset, method)] for method in ("itra-c", "lsr", "center")}
    assert grids == {"itra-c": [0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0], "lsr": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5],
                     "center": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]}  # each regulariser's grid is as large
    assert sorted(c.lam for s, c in configs if s.label in {g.label for g in strength_grid(preset, "itra-c")}) == grids["itra-c"]
    assert len(set(names.values())) == len(names)  # every row its own runs


def _row(label, method, strength, val_ce, seeds=3, **metrics):
    return {"label": label, "method": method, "strength_field": METHODS[method].strength, "strength": strength,
            "seeds": seeds, "val_cross_entropy": None if val_ce is None else [val_ce, 0.01], **metrics}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0.05, 3.0)), min_size=8, max_size=8),
       st.lists(st.integers(1, 3), min_size=8, max_size=8))
def test_the_picked_row_is_the_strength_of_lowest_validation_ce_among_those_with_the_most_seeds(val_ces, seeds):
    preset = find_preset("fashion-mnist-overfit")
    grid = strength_grid(preset, "lsr")
    rows = [_row(s.label, "lsr", s.strength, ce, n, test_accuracy=[90.0 + i, 0.1])
            for i, (s, ce, n) in enumerate(zip(grid, val_ces, seeds))]
    others = [_row("Baseline (CE)", "ce", None, 0.01), _row("LSR + early stopping", "lsr", 0.1, 0.001, early_stopping=True)]
    picked = {row["label"].split(",")[0]: row for row in picked_rows(preset, others + rows)}
    measured = [(row, n) for row, n in zip(rows, seeds) if row["val_cross_entropy"] is not None]
    most = max((n for _, n in measured), default=0)
    fair = [row for row, n in measured if n == most]
    if len(fair) < 2:
        assert "LSR" not in picked
        return
    best = min(fair, key=lambda row: (row["val_cross_entropy"][0], rows.index(row)))
    assert picked["LSR"]["strength"] == best["strength"]
    assert picked["LSR"]["test_accuracy"] == best["test_accuracy"]  # the chosen runs' metrics, not another row's
    assert picked["LSR"]["label"] == f"LSR, picked on validation (ε={best['strength']:g})"
    assert picked["LSR"]["picked_from"] == [row["strength"] for row in fair]
    assert "ITRA-c" not in picked and "Center" not in picked  # no rows of theirs given


@needs_fmnist
@pytest.mark.slow
def test_overfit_smoke_has_scaled_columns_early_stopping_rows_and_figure_2(tmp_path, capsys):
    assert main(["reproduce", "fashion-mnist-overfit", "--smoke", "--seeds", "2", "--epochs", "2", "--out",
                 str(tmp_path), "--quiet", "--timing-steps", "3"]) == 0
    study = tmp_path / "reproduce-fashion-mnist-overfit-cnn-smoke"
    table = (study / "table.md").read_text()
    assert "test CE after TS" in table and "paper acc" not in table  # no paper numbers for this regime
    result = json.loads((study / "table.json").read_text())
    rows = {row["label"]: row for row in result["rows"]}
    assert "Baseline (CE) + early stopping" in rows and "ITRA-c + early stopping" in rows
    ce_runs = sorted(tmp_path.glob("fashion-mnist-cnn-ce-*-seed*"))
    assert len(ce_runs) == 2
    best = [min(read_metrics(d), key=lambda row: row["val_cross_entropy"]) for d in ce_runs]
    stopped = rows["Baseline (CE) + early stopping"]
    assert stopped["test_cross_entropy"][0] == pytest.approx(sum(b["test_cross_entropy"] for b in best) / 2, rel=1e-12)
    assert stopped["epoch"][0] == sum(b["epoch"] for b in best) / 2
    last = [read_metrics(d)[-1] for d in ce_runs]
    assert rows["Baseline (CE)"]["ts_test_cross_entropy"][0] == pytest.approx(
        sum(row["ts_test_cross_entropy"] for row in last) / 2, rel=1e-12)
    assert (study / "test-ce.png").stat().st_size > 10_000 and (study / "ce-vs-lambda.png").exists()
    picked = [row for row in result["rows"] if ", picked on validation" in row["label"]]
    assert [row["method"] for row in picked] == ["itra-c", "lsr", "center"]
    for row in picked:  # the strength whose runs have the lowest mean final validation CE, read from their summaries
        grid = [r for r in result["rows"] if r["method"] == row["method"] and r["strength"] in row["picked_from"]
                and not r.get("early_stopping") and ", picked" not in r["label"] and "(" not in r["label"]]
        assert len(grid) == 8 and min(grid, key=lambda r: r["val_cross_entropy"][0])["strength"] == row["strength"]

    (ce_runs[1] / "summary.json").unlink()  # a study in parts: this run has not ended
    trained = (ce_runs[1] / "metrics.jsonl").read_text()
    assert main(["reproduce", "fashion-mnist-overfit", "--smoke", "--seeds", "2", "--epochs", "2", "--out",
                 str(tmp_path), "--quiet", "--timing-steps", "3", "--table-only"]) == 0
    partial = json.loads((study / "table.json").read_text())
    assert partial["not_run"] == [ce_runs[1].name] and (ce_runs[1] / "metrics.jsonl").read_text() == trained
    assert partial["step_seconds"] == result["step_seconds"]  # the table regenerates with the times it had
    assert {row["label"]: row["seeds"] for row in partial["rows"]}["Baseline (CE)"] == 1
    assert "Not run yet (1;" in (study / "table.md").read_text()


def test_the_wordnet_top10_preset_trains_minilm_at_full_lambda_for_most_of_its_steps():
    configs = preset_configs(find_preset("wordnet-top10"), 1, smoke=False)
    names = {setting.label: config.name for setting, config in configs}
    assert names["Baseline (CE)"] == ("wordnet-top10-minilm-ce-bs32-e12-n2000-test1000-val500-adamw-lr5e-05-wd0.01-len32"
                                      "-seed0")
    assert names["ITRA-c (previous)"].startswith("wordnet-top10-minilm-itra-c-lam0.5-warmr0.1-previous-bs32-e12-")
    rows = {setting.label: (config.method, config.lam, config.smoothing) for setting, config in configs}
    assert rows == {"Baseline (CE)": ("ce", None, None), "LSR": ("lsr", None, 0.1), "Center": ("center", 0.1, None),
                    "ITRA-c": ("itra-c", 0.5, None), "ITRA-c (previous)": ("itra-c", 0.5, None),
                    "ITRA-c λ=1": ("itra-c", 1.0, None), "ITRA-c λ=0 (control)": ("itra-c", 0.0, None)}
    for setting, config in configs:
        loader = PairedLoader(list(range(config.train_subset)), samples_per_step(config.pairing, config.batch_size),
                              seed=0, world_size=config.world_size)  # the length `fit`'s schedule and warm-up count
        steps = config.epochs * len(loader)  # the preset's 12 x 63
        assert steps == 756 and config.val_split == 500 and config.test_subset == 1000 and config.max_length == 32
        if config.method == "itra-c":  # λ full for at least three quarters of the run
            assert warmup_steps(config.lam_warmup, config.lam_warmup_ratio, steps) <= steps / 4


@needs_wordnet
@pytest.mark.slow
def test_wordnet_top10_smoke_has_every_row_and_early_stopping(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["reproduce", "wordnet-top10", "--smoke", "--seeds", "1", "--jobs", "1", "--out", str(tmp_path),
                 "--quiet", "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "reproduce-wordnet-top10-minilm-smoke" / "table.json").read_text())
    labels = [row["label"] for row in result["rows"]]
    assert labels[:-1] == ["Baseline (CE)", "Baseline (CE) + early stopping", "LSR", "Center", "ITRA-c",
                           "ITRA-c + early stopping", "ITRA-c (previous)", "ITRA-c λ=1", "ITRA-c λ=0 (control)"]
    picked = {row["label"]: row for row in result["rows"]}[labels[-1]]  # λ 0.5 or 1, whichever validates better
    grid = [row for row in result["rows"] if row["label"] in ("ITRA-c", "ITRA-c λ=1")]
    assert picked["picked_from"] == [0.5, 1.0] and labels[-1] == f"ITRA-c, picked on validation (λ={picked['strength']:g})"
    assert picked["strength"] == min(grid, key=lambda row: row["val_cross_entropy"][0])["strength"]
    assert all(row["seeds"] == 1 and row["ts_test_cross_entropy"] is not None for row in result["rows"])
    assert result["settings"]["dataset"] == "wordnet-top10" and result["settings"]["val_split"] == 32


def test_one_seed_claims_no_separation(tmp_path, capsys):
    assert main(["reproduce", "digits", "--smoke", "--seeds", "1", "--out", str(tmp_path), "--quiet",
                 "--timing-steps", "2"]) == 0
    table = (tmp_path / "reproduce-digits-cnn-smoke" / "table.md").read_text()
    assert "| yes |" not in table and "– (1 seed)" in table


def test_table_only_times_only_the_rows_the_last_table_lacks(tmp_path):
    preset = find_preset("fashion-mnist-overfit", None)
    first = [config for _, config in preset_configs(preset, 1, True)]
    ce, new = first[0].name, first[-1].name
    asked = []

    def timed(chosen):
        asked.append([c.name for c in chosen])
        return {c.name: 2.0 if c.name == ce else 5.0 for c in chosen}  # now: the new row is 2.5x the reference

    assert reuse_step_times(tmp_path / "table.json", preset, first, ce, timed) == {c.name: 5.0 if c.name != ce else 2.0
                                                                                 for c in first}
    earlier = {c.name: 1.0 for c in first if c.name != new}
    (tmp_path / "table.json").write_text(json.dumps({"step_seconds": earlier, "rows": []}))
    asked.clear()
    times = reuse_step_times(tmp_path / "table.json", preset, first, ce, timed)
    assert asked == [[ce, new]] and times[new] == 2.5 and all(times[c] == 1.0 for c in earlier)


def test_the_final_compactness_is_the_last_probe_even_when_the_last_epoch_has_none(tmp_path):
    """9 epochs of 7 steps, a probe every 50 steps: the one probe is in epoch 8, and the summary (the last epoch's row)
    holds none; the table reads it from metrics.jsonl."""
    from itra.config import TrainConfig
    from itra.experiments.reproduce import final_compactness
    from itra.experiments.runs import run
    from itra.resolve import resolve

    config = resolve(TrainConfig(dataset="digits", method="ce", epochs=9, batch_size=64, train_subset=448, test_subset=64,
                                 device="cpu"))
    run_dir, summary = run(config, tmp_path, progress=False)
    probes = [probe for row in read_metrics(run_dir) for probe in row["compactness"]]
    assert summary["compactness"] == [] and [step for step, _ in probes] == [50]
    assert final_compactness([summary], [run_dir]) == [probes[0][1], 0.0]
