"""The reports and aggregates of `experiments.layerwise` on hand-made `layers.json`, and `itra similarity` end to
end (`layer_analysis.layerwise` itself: tests/test_layer_analysis.py)."""
import json
import statistics

import pytest

from itra import rundir
from itra.cli import main
from itra.experiments.layerwise import aggregate_layers, markdown_layers, markdown_layers_table

from tests.helpers import needs_fmnist, resolved


@needs_fmnist
def test_itra_similarity_reads_a_run_and_its_last_layer_is_the_runs_own_accuracy(tmp_path, capsys):
    flags = ["train", "--model", "vit", "--method", "ce", "--optimizer", "adamw", "--lr", "0.001", "--epochs", "1",
             "--batch-size", "64", "--train-subset", "256", "--test-subset", "200", "--out", str(tmp_path), "--quiet"]
    assert main(flags) == 0
    (run_dir,) = tmp_path.iterdir()
    assert main(["similarity", str(run_dir), "--out", str(tmp_path / "sim")]) == 0
    assert "accuracy after each layer (%)" in capsys.readouterr().out
    measured = json.loads((tmp_path / "sim" / run_dir.name / "layers.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert measured["test_size"] == 200 and len(measured["accuracy"]) == 6
    assert measured["accuracy"][-1] == pytest.approx(summary["test_accuracy"], abs=1e-4)  # the same head, test set
    assert (tmp_path / "sim" / run_dir.name / "layers.png").stat().st_size > 0
    report = (tmp_path / "sim" / run_dir.name / "layers.md").read_text()
    assert report == markdown_layers(measured) and "| 6 | 64 |" in report and "never (last layer)" in report
    assert measured["early_exit"]["shared"][-1]["accuracy"] == pytest.approx(measured["accuracy"][-1])


def test_a_run_without_a_checkpoint_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.write_config(run_dir, resolved(method="ce"))
    assert main(["similarity", str(run_dir)]) == 2
    assert "has no checkpoint.pt yet" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_vit_runs(tmp_path_factory):
    """ViT runs on digits with test sets of 3 and 32 samples."""
    root = tmp_path_factory.mktemp("vit")
    for size in (3, 32):
        assert main(["train", "--dataset", "digits", "--model", "vit", "--method", "ce", "--epochs", "1",
                     "--train-subset", "64", "--batch-size", "32", "--test-subset", str(size), "--out", str(root),
                     "--quiet"]) == 0
    return {size: next(root.glob(f"*-test{size}-*")) for size in (3, 32)}


@pytest.mark.parametrize("run_test_size, test_subset", [(32, 1), (32, 2), (32, 3), (3, None), (32, 4), (3, 4)])
def test_fewer_test_samples_than_debiased_cka_needs_is_one_line_naming_what_to_pass(tiny_vit_runs, tmp_path, capsys,
                                                                                      run_test_size, test_subset):
    """Debiased CKA needs 4 samples: --test-subset 1-3 is refused before any data loads, a run's own test set of 3
    is refused naming the run; from 4 samples on, either way, the run is measured."""
    flags = [] if test_subset is None else ["--test-subset", str(test_subset)]
    code = main(["similarity", str(tiny_vit_runs[run_test_size]), *flags, "--out", str(tmp_path / "sim")])
    err = capsys.readouterr().err
    if (test_subset or run_test_size) >= 4:
        assert code == 0, err
        return
    assert code == 2 and err.count("\n") == 1 and "4" in err, err
    assert ("`test_subset`" in err) if test_subset else (str(tiny_vit_runs[3]) in err and "--test-subset 4" in err)


def layers_json(separate=True, widths=(8, 8, 8), accuracy=(40.0, 60.0, 80.0)):
    """A `layers.json` as `layer_analysis.layerwise` and `measure_run` write it: three exits, one of another width
    when `widths` say so (None where the shared head and the cosine cannot read it)."""
    size = len(widths)
    cka = [[1.0 - 0.1 * abs(i - j) for j in range(size)] for i in range(size)]
    same = [widths[i] == widths[-1] for i in range(size)]
    curve = [{"threshold": t, "accuracy": 70.0 + 10 * t, "relative_compute": t / 2} for t in (0.5, 0.9, 2.0)]
    measured = {"run": "vit-ce", "method": "CE", "epoch": 2, "test_size": 100, "width": list(widths),
                "accuracy": [a if ok else None for a, ok in zip(accuracy, same)],
                "cross_entropy": [1.0 if ok else None for ok in same], "ece": [0.1 if ok else None for ok in same],
                "cosine": [0.9 if ok else None for ok in same], "cka": cka, "cka_debiased": cka,
                "cosine_matrix": [[c if widths[i] == widths[j] else None for j, c in enumerate(row)]
                                  for i, row in enumerate(cka)],
                "cosine_cka_correlation": None if not all(same) else 0.97,
                "saturation": {"shared": {"mean_layer": 2.1, "saturated": [0.3, 0.6, 1.0]}} if all(same) else {},
                "early_exit": {"shared": curve} if all(same) else {}}
    if separate:
        measured.update(separate_accuracy=[a + 5 for a in accuracy[:size]], separate_cross_entropy=[0.9] * size,
                        separate_ece=[0.05] * size)
        measured["saturation"]["separate"] = {"mean_layer": 1.8, "saturated": [0.5, 0.7, 1.0]}
        measured["early_exit"]["separate"] = curve
    return measured


def test_aggregate_layers_is_mean_and_std_per_exit_and_the_mean_early_exit_curve():
    one, two = layers_json(accuracy=(40.0, 60.0, 80.0)), layers_json(accuracy=(50.0, 62.0, 81.0))
    two["cka"] = [[1.0, 0.5, 0.6], [0.5, 1.0, 0.7], [0.6, 0.7, 1.0]]
    two["early_exit"]["shared"] = [{**point, "accuracy": point["accuracy"] + 2, "relative_compute": 0.5}
                                   for point in two["early_exit"]["shared"]]
    aggregated = aggregate_layers([one, two])
    assert aggregated["runs"] == 2 and aggregated["width"] == [8, 8, 8]
    for key, values in (("accuracy", [(40, 50), (60, 62), (80, 81)]), ("cosine", [(0.9, 0.9)] * 3),
                        ("separate_accuracy", [(45, 55), (65, 67), (85, 86)]),
                        ("cka_with_last", [(0.8, 0.6), (0.9, 0.7), (1.0, 1.0)])):
        expected = [[statistics.fmean(pair), statistics.stdev(pair)] for pair in values]
        assert aggregated[key] == [pytest.approx(row) for row in expected], key
    shared = aggregated["early_exit"]["shared"]
    assert [point["threshold"] for point in shared] == [0.5, 0.9, 2.0]
    assert [point["accuracy"] for point in shared] == pytest.approx([76.0, 80.0, 91.0])
    assert [point["relative_compute"] for point in shared] == pytest.approx([0.375, 0.475, 0.75])
    alone = aggregate_layers([layers_json(separate=False, widths=(4, 6, 8))])
    assert alone["separate_accuracy"] is None and alone["accuracy"][:2] == [None, None]
    assert alone["accuracy"][2] == [80.0, 0.0] and alone["early_exit"] == {}


def test_aggregate_layers_names_runs_of_other_configs():
    with pytest.raises(ValueError, match="Expected the layers.json of at least one run"):
        aggregate_layers([])
    with pytest.raises(ValueError, match=r"Expected runs of one config, but vit-ce has exits \[4, 6, 8\]"):
        aggregate_layers([layers_json(), layers_json(widths=(4, 6, 8))])
    with pytest.raises(ValueError, match="Expected runs of one config"):
        aggregate_layers([layers_json(), layers_json(separate=False)])


def test_the_markdown_tables_show_every_exit_and_head_kind():
    rows = {"CE": aggregate_layers([layers_json(separate=False), layers_json(separate=False, accuracy=(42, 64, 82))]),
            "multi-exit": aggregate_layers([layers_json()]), "shallow": aggregate_layers([layers_json(widths=(8, 8))])}
    assert markdown_layers_table(rows).splitlines() == [
        "| config | seeds | layer 1 | layer 2 | layer 3 |",
        "|---|---|---|---|---|",
        "| CE | 2 | 41.0 ± 1.4 | 62.0 ± 2.8 | 81.0 ± 1.4 |",
        "| multi-exit | 1 | 40.0 ± 0.0 | 60.0 ± 0.0 | 80.0 ± 0.0 |",
        "| multi-exit (own heads) | 1 | 45.0 ± 0.0 | 65.0 ± 0.0 | 85.0 ± 0.0 |",
        "| shallow | 1 | 40.0 ± 0.0 | 60.0 ± 0.0 | – |",
        "| shallow (own heads) | 1 | 45.0 ± 0.0 | 65.0 ± 0.0 | – |",
    ]
    report = markdown_layers(layers_json())
    assert "| 1 | 8 | 40.00 | 1.000 | 45.00 | 0.900 | 0.9000 | 0.8000 | 0.300 | 0.500 |" in report
    assert "| never (last layer) | 90.00 | 1.000 | 90.00 | 1.000 |" in report
    assert "over pairs of layers: 0.970" in report and "Mean saturation layer (own heads): 1.80 of 3" in report
    other_widths = markdown_layers(layers_json(separate=False, widths=(4, 6, 8)))
    assert "| 1 | 4 | – | – | – | 0.8000 |" in other_widths and "Early exit" not in other_widths
