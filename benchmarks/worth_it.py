"""README's "Is ITRA worth it?" table: one row per regime, from the committed studies (`itra.experiments.worth_it`).

    python benchmarks/worth_it.py          # prints the table, writes benchmarks/runs/worth-it.md and README's copy
"""
from __future__ import annotations

from pathlib import Path

from itra.experiments.worth_it import worth_it_table

RUNS = Path(__file__).resolve().parent / "runs"
# (regime, the study's table.json): every committed study with the control row
STUDIES = [
    ("image, overfit (10,000 images, 40 epochs)",
     RUNS / "fashion-mnist-overfit/reproduce-fashion-mnist-overfit-cnn/table.json"),
    *((f"image, few labels ({size:,} images)",
       RUNS / f"fashion-mnist-few/reproduce-fashion-mnist-few{size}-cnn/table.json") for size in (500, 1000, 2000)),
    ("text, MiniLM fine-tuned (WordNet, 10 classes)", RUNS / "wordnet-top10/reproduce-wordnet-top10-minilm/table.json"),
    ("image, 6 of 10 classes: OOD detection and retrieval (6,000 images, 40 epochs)",
     RUNS / "ood-fmnist/reproduce-ood-fmnist-cnn/table.json"),
]
OUT = RUNS / "worth-it.md"
README = RUNS.parents[1] / "README.md"
MARKERS = ("<!-- worth-it table: benchmarks/worth_it.py -->\n", "<!-- end of the worth-it table -->\n")


def with_table(readme: str, table: str) -> str:
    """`readme` with `table` between the two `MARKERS` of its "Is ITRA worth it?" section."""
    before, rest = readme.split(MARKERS[0], 1)
    _, after = rest.split(MARKERS[1], 1)
    return before + MARKERS[0] + table + MARKERS[1] + after


if __name__ == "__main__":
    table = worth_it_table(STUDIES)
    OUT.write_text(table)
    README.write_text(with_table(README.read_text(), table))
    print(table)
