import importlib.util
from pathlib import Path

from itra.experiments.worth_it import CE, CONTROL, ITRA, KEEP, worth_it_rows
from itra.ood import SCORES

ROOT = Path(__file__).resolve().parents[2]


def row(label: str, accuracy: tuple[float, float], ts_ce: tuple[float, float] = (0.3, 0.01), ratio: float = 1.0) -> dict:
    return {"label": label, "seeds": 3, "test_accuracy": list(accuracy), "test_cross_entropy": [0.4, 0.01],
            "ts_test_cross_entropy": list(ts_ce), "ts_test_ece": [0.01, 0.001], "step_time_ratio": ratio}


def test_the_gain_is_split_between_the_matching_loss_and_the_second_pass():
    table = {"rows": [row(CE, (89.0, 0.1)), row(ITRA, (90.0, 0.1), (0.2, 0.01), 2.0), row(CONTROL, (89.05, 0.1)),
                      row(KEEP, (89.9, 0.1))]}
    (cells,) = worth_it_rows([("regime", table)])
    assert cells[3] == "+0.95 (separated)" and cells[4] == "+0.05"  # the matching loss's, not the pass's
    assert cells[8] == "89.90 ± 0.10" and cells[9] == "2.00" and cells[10] == "–"
    assert cells[11] == "accuracy +1.00, from the matching loss; test CE level with CE's; test CE after TS lower"
    table["rows"][2] = row(CONTROL, (89.9, 0.1))  # now the second pass alone does it
    assert worth_it_rows([("regime", table)])[0][11].startswith("accuracy +1.00, from the second pass;")


def test_no_separated_gain_is_said_and_a_study_without_the_control_is_left_out():
    table = {"rows": [row(CE, (89.0, 0.2)), row(ITRA, (89.1, 0.2), (0.3, 0.01)), row(CONTROL, (89.0, 0.2))]}
    (cells,) = worth_it_rows([("regime", table)])
    assert cells[8] == "–"
    assert cells[11] == "no separated accuracy gain; test CE level with CE's; test CE after TS level with CE's"
    assert worth_it_rows([("regime", {"rows": table["rows"][:2]})]) == []


def test_a_study_with_one_seed_so_far_calls_no_difference_separated():
    table = {"rows": [row(CE, (89.0, 0.0)), row(ITRA, (90.0, 0.0), (0.2, 0.0), 2.0), row(CONTROL, (89.05, 0.0))]}
    for one in table["rows"]:
        one["seeds"] = 1
    (cells,) = worth_it_rows([("regime", table)])
    assert cells[1] == "1" and cells[3] == "+0.95" and cells[4] == "+0.05"  # the differences, none called separated
    assert cells[11] == "one seed so far: no difference can be called"


def picked(method: str, label: str, field: str, strength: float, accuracy: tuple[float, float],
           ts_ce: tuple[float, float] = (0.3, 0.01)) -> dict:
    return {**row(f"{label}, picked on validation ({'λ' if field == 'lam' else 'ε'}={strength:g})", accuracy, ts_ce),
            "method": method, "strength_field": field, "strength": strength, "picked_from": [0.1, 1.0]}


def test_each_method_at_its_picked_strength_is_listed_and_itra_c_set_against_the_best_other():
    rows = [row(CE, (89.0, 0.1)), row(ITRA, (89.5, 0.1)), row(CONTROL, (89.0, 0.1)),
            picked("center", "Center", "lam", 0.05, (89.1, 0.1)), picked("lsr", "LSR", "smoothing", 0.2, (89.4, 0.1)),
            picked("itra-c", "ITRA-c", "lam", 1.5, (89.8, 0.1), (0.25, 0.01))]
    (cells,) = worth_it_rows([("regime", {"rows": rows})])
    assert cells[10] == ("ITRA-c λ=1.5: 89.80 ± 0.10 (0.250 ± 0.010); Center λ=0.05: 89.10 ± 0.10 (0.300 ± 0.010); "
                         "LSR ε=0.2: 89.40 ± 0.10 (0.300 ± 0.010)")  # ITRA-c's first, the others in table order
    assert cells[11].endswith("; tuned, ITRA-c λ=1.5 against LSR ε=0.2 (the best of CE and the other picked "
                              "baselines): accuracy +0.40 (separated); test CE after TS lower")
    rows[3:5] = [picked("center", "Center", "lam", 0.05, (88.9, 0.1)),
                 picked("lsr", "LSR", "smoothing", 0.2, (88.0, 0.1))]  # CE is then the best of the others
    assert "against Baseline (CE) (the best" in worth_it_rows([("regime", {"rows": rows})])[0][11]
    rows[5] = picked("itra-c", "ITRA-c", "lam", 1.5, (89.05, 0.1), (0.35, 0.01))
    assert worth_it_rows([("regime", {"rows": rows})])[0][11].endswith("accuracy +0.05; test CE after TS higher")


def test_without_strength_grids_or_a_picked_itra_c_row_nothing_tuned_is_said():
    rows = [row(CE, (89.0, 0.1)), row(ITRA, (89.5, 0.1)), row(CONTROL, (89.0, 0.1))]
    (cells,) = worth_it_rows([("regime", {"rows": rows})])
    assert cells[10] == "–" and "tuned" not in cells[11]
    (cells,) = worth_it_rows([("regime", {"rows": rows + [picked("lsr", "LSR", "smoothing", 0.2, (89.4, 0.1))]})])
    assert cells[10] == "LSR ε=0.2: 89.40 ± 0.10 (0.300 ± 0.010)" and "tuned" not in cells[11]


def test_an_ood_study_adds_each_method_s_best_detection_score_and_retrieval_to_its_verdict():
    def measures(auroc: dict[str, float], map_at_r: float) -> dict:
        detection = {score: {"auroc": [auroc.get(score, 0.5), 0.01], "fpr95": [0.5, 0.01]} for score in SCORES}
        detection["msp_ts"]["auroc"] = None  # a run without a validation split has no MSP after TS
        return {"seeds": 3, "detection": {"held-out": detection}, "retrieval": {"map_at_r": [map_at_r, 0.005]}}

    table = {"rows": [row(CE, (89.0, 0.2)), row(ITRA, (89.1, 0.2), (0.3, 0.01)), row(CONTROL, (89.0, 0.2))],
             "ood": {"sets": {"held-out": 4000}, "rows": {CE: measures({"energy": 0.77, "knn": 0.76}, 0.78),
                                                         ITRA: measures({"mahalanobis": 0.725, "knn": 0.72}, 0.835),
                                                         CONTROL: measures({}, 0.78)}}}
    (cells,) = worth_it_rows([("regime", table)])
    assert cells[11].endswith("test CE after TS level with CE's; OOD AUROC (%, each one's best score), CE / ITRA-c: "
                              "held-out 77.0 (energy) / 72.5 (Mahalanobis) (separated); retrieval MAP@R (%) 78.0 / "
                              "83.5 (separated)")


def test_the_committed_verdict_regenerates_from_the_committed_studies():
    spec = importlib.util.spec_from_file_location("worth_it_script", ROOT / "benchmarks/worth_it.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from itra.experiments.worth_it import worth_it_table

    assert script.OUT.read_text() == worth_it_table(script.STUDIES)
    readme = script.README.read_text()
    assert script.with_table(readme, script.OUT.read_text()) == readme  # README holds the table the script writes
