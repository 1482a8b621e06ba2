"""Is ITRA worth a second mini-batch per step? One row per regime, read from the committed studies' `table.json`.

    python benchmarks/worth_it.py        # writes benchmarks/runs/worth-it.md, the table README's verdict quotes

Each study (`itra reproduce PRESET`) has the rows CE, ITRA-c and the control, "ITRA-c λ=0 (control)": S2 drawn and
passed as ITRA-c's is, no matching loss. So ITRA-c's difference to CE splits in two: ITRA-c minus the control is the
matching loss's part, the control minus CE the second pass's (the batch-norm statistics S2 updates, the random draws
it takes: `--s2-state`). A difference counts as separated when the mean ± std intervals over seeds do not overlap
(`table.separated`; never with one seed), as in every study table; the verdict column says only what is separated.
A study with strength grids (`itra reproduce fashion-mnist-overfit`) has a row per method at the strength its
validation split picks (`reproduce.picked_rows`): the table lists them, and the verdict sets ITRA-c at its picked
strength against the best of CE and the other picked baselines, as a user who tunes every method would compare them
(`tuned_verdict`). A study that measured what the features are worth after training (`itra reproduce ood-fmnist`: OOD detection and
retrieval, `itra.experiments.ood`) adds those measures to its verdict (`ood_verdict`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from itra.experiments.labels import strength_text
from itra.experiments.table import apart, format_mean_std, markdown_table, separated
from itra.ood import SCORES

CE, ITRA, CONTROL, KEEP = "Baseline (CE)", "ITRA-c", "ITRA-c λ=0 (control)", "ITRA-c (S2 keeps state)"
HEADER = ("regime", "seeds", "acc (%): CE / ITRA-c", "Δ acc: matching loss (ITRA-c − control)",
          "Δ acc: second pass (control − CE)", "test CE: CE / ITRA-c", "after TS: CE / ITRA-c",
          "ECE after TS: CE / ITRA-c", "ITRA-c, S2 keeps state: acc", "step time / CE",
          "picked on validation: acc (test CE after TS)", "verdict")


def _delta(first: dict[str, Any], second: dict[str, Any], metric: str, digits: int) -> str:
    """`+0.29 (separated)`: first minus second in `metric`."""
    a, b = first[metric], second[metric]
    return f"{a[0] - b[0]:+.{digits}f}" + (" (separated)" if separated(first, second, metric) else "")


def _pair(first: dict[str, Any], second: dict[str, Any], metric: str, digits: int) -> str:
    return f"{format_mean_std(first.get(metric), digits)} / {format_mean_std(second.get(metric), digits)}"


def verdict(ce: dict[str, Any], itra: dict[str, Any], control: dict[str, Any]) -> str:
    """What is separated: ITRA-c's accuracy against CE (and whose it is), and its test CE before and after scaling."""
    if min(row["seeds"] for row in (ce, itra, control)) < 2:
        return "one seed so far: no difference can be called"
    parts = []
    if separated(itra, ce, "test_accuracy"):
        gain = itra["test_accuracy"][0] - ce["test_accuracy"][0]
        whose = [name for name, (a, b) in (("the matching loss", (itra, control)), ("the second pass", (control, ce)))
                 if separated(a, b, "test_accuracy")]
        parts.append(f"accuracy {gain:+.2f}" + (f", from {' and '.join(whose)}" if whose else
                                                 ", split between the matching loss and the second pass"))
    else:
        parts.append("no separated accuracy gain")
    for metric, name in (("test_cross_entropy", "test CE"), ("ts_test_cross_entropy", "test CE after TS")):
        pair = (itra.get(metric), ce.get(metric))
        if None not in pair:
            parts.append(f"{name} " + ("lower" if apart(*pair) and pair[0][0] < pair[1][0] else
                                       "higher" if apart(*pair) else "level with CE's"))
    return "; ".join(parts)


def _picked_name(row: dict[str, Any]) -> str:
    """`ITRA-c λ=1`: a picked row's method (its label before ", picked on validation") and strength; `Baseline (CE)`."""
    return " ".join(filter(None, (row["label"].split(", picked on validation")[0],
                                  strength_text(row.get("strength_field"), row.get("strength")))))


def picked_cell(picked: Sequence[dict[str, Any]]) -> str:
    """`ITRA-c λ=1: 89.76 ± 0.25 (0.317 ± 0.002); LSR ε=0.05: ...`: each picked row's accuracy and its test CE after
    temperature scaling; "–" for a study without strength grids."""
    return "; ".join(f"{_picked_name(row)}: {format_mean_std(row['test_accuracy'], 2)} "
                     f"({format_mean_std(row.get('ts_test_cross_entropy'), 3)})" for row in picked) or "–"


def tuned_verdict(ce: dict[str, Any], picked: Sequence[dict[str, Any]]) -> str:
    """`tuned, ITRA-c λ=1 against LSR ε=0.05 (the best of CE and the other picked baselines): accuracy +0.24; test CE
    after TS level`: ITRA-c's picked row against the one of highest mean accuracy among CE and the other picked rows,
    "(separated)" where the mean ± std intervals over seeds do not overlap; "" without a picked ITRA-c row."""
    itra = [row for row in picked if row.get("method") == "itra-c"]
    if not itra:
        return ""
    others = [ce] + [row for row in picked if row.get("method") != "itra-c"]
    best = max(others, key=lambda row: row["test_accuracy"][0])
    parts = [f"tuned, {_picked_name(itra[0])} against {_picked_name(best)} (the best of CE and the other picked "
             f"baselines): accuracy {_delta(itra[0], best, 'test_accuracy', 2)}"]
    metric = "ts_test_cross_entropy"
    if itra[0].get(metric) is not None and best.get(metric) is not None:
        lower = itra[0][metric][0] < best[metric][0]
        parts.append("test CE after TS " + (("lower" if lower else "higher") if separated(itra[0], best, metric)
                                            else "level"))
    return "; ".join(parts)


def _best_score(row: dict[str, Any], name: str) -> tuple[str, list[float]]:
    """The detection score of highest mean AUROC against OOD set `name`, and its [mean, std]."""
    measured = {score: row["detection"][name][score]["auroc"] for score in SCORES}
    return max(((score, auroc) for score, auroc in measured.items() if auroc is not None), key=lambda item: item[1][0])


def ood_verdict(ood: dict[str, Any]) -> str:
    """`OOD AUROC (%, each method's best score): held-out 76.9 (Mahalanobis) / 72.8 (Mahalanobis), ...; MAP@R (%) 77.9 /
    83.5 (separated)`: CE's / ITRA-c's, from an OOD study's `ood` section (`itra.experiments.ood.measure_groups`), each
    difference marked where the mean ± std intervals over seeds do not overlap (never with one seed)."""
    ce, itra = ood["rows"][CE], ood["rows"][ITRA]
    seeds = min(ce["seeds"], itra["seeds"])
    mark = lambda a, b: " (separated)" if seeds > 1 and apart(a, b) else ""  # noqa: E731
    sets = []
    for name in ood["sets"]:
        (ce_score, ce_auroc), (itra_score, itra_auroc) = _best_score(ce, name), _best_score(itra, name)
        sets.append(f"{name} {100 * ce_auroc[0]:.1f} ({SCORES[ce_score]}) / {100 * itra_auroc[0]:.1f} "
                    f"({SCORES[itra_score]}){mark(ce_auroc, itra_auroc)}")
    ce_map, itra_map = ce["retrieval"]["map_at_r"], itra["retrieval"]["map_at_r"]
    return (f"OOD AUROC (%, each one's best score), CE / ITRA-c: {', '.join(sets)}; retrieval MAP@R (%) "
            f"{100 * ce_map[0]:.1f} / {100 * itra_map[0]:.1f}{mark(ce_map, itra_map)}")


def worth_it_rows(studies: Sequence[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """One row per (regime, table.json content) that has CE, ITRA-c and the control (the others are left out)."""
    rows = []
    for regime, table in studies:
        by_label = {row["label"]: row for row in table["rows"] if row.get("test_accuracy") is not None}
        if not {CE, ITRA, CONTROL} <= set(by_label):
            continue
        ce, itra, control = by_label[CE], by_label[ITRA], by_label[CONTROL]
        keep = by_label.get(KEEP)
        picked = sorted((row for row in table["rows"] if row.get("picked_from")),
                        key=lambda row: row.get("method") != "itra-c")  # ITRA-c's first
        tuned = tuned_verdict(ce, picked) if min(row["seeds"] for row in (ce, itra, control)) > 1 else ""
        rows.append([
            regime, f"{min(row['seeds'] for row in (ce, itra, control))}", _pair(ce, itra, "test_accuracy", 2),
            _delta(itra, control, "test_accuracy", 2), _delta(control, ce, "test_accuracy", 2),
            _pair(ce, itra, "test_cross_entropy", 3), _pair(ce, itra, "ts_test_cross_entropy", 3),
            _pair(ce, itra, "ts_test_ece", 4), format_mean_std(keep["test_accuracy"], 2) if keep else "–",
            f"{itra['step_time_ratio']:.2f}", picked_cell(picked),
            "; ".join(filter(None, (verdict(ce, itra, control), tuned,
                                    ood_verdict(table["ood"]) if table.get("ood") else "")))])
    return rows


def worth_it_table(studies: Sequence[tuple[str, Path]]) -> str:
    """The markdown table of `worth_it_rows` from each (regime, path of a study's table.json) that exists."""
    loaded = [(regime, json.loads(path.read_text())) for regime, path in studies if path.exists()]
    return markdown_table(HEADER, worth_it_rows(loaded))
