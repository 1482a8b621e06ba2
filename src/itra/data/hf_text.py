"""AG News, Amazon Reviews (full, 5 stars), Yahoo! Answers (10 topics) and Yelp Reviews (full, 5 stars)
(Zhang et al. 2015) from the Hugging Face Hub, as raw-text `TextSplits`.

    pip install datasets
    python -c "from itra.data.hf_text import load_hf_text_dataset; print(load_hf_text_dataset('ag-news').num_classes)"

For an offline machine, save a copy where the Hub is reachable and pass its folder as `data_dir`:

    python -c "import datasets; datasets.load_dataset('fancyzhx/ag_news').save_to_disk('ag-news')"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from itra.data.hub import SPLITS, check_column_type, load_hub_dataset_dict
from itra.data.text import TextSplits
from itra.errors import BadValue

STARS = ("1 star", "2 stars", "3 stars", "4 stars", "5 stars")


@dataclass(frozen=True)
class HubTextDataset:
    """Where a text dataset lives on the Hub, the columns its text is made of, and its classes."""

    hub_name: str
    text_columns: tuple[str, ...]  # joined with newlines, empty or missing (None) fields left out
    label_column: str
    class_names: tuple[str, ...]
    label_offset: int = 0  # the stored label of class 0: 1 where the Hub keeps the 1-based class index of the CSVs


HF_TEXT_DATASETS = {
    "ag-news": HubTextDataset("fancyzhx/ag_news", ("text",), "label", ("World", "Sports", "Business", "Sci/Tech")),
    # Zhang et al.'s amazon_review_full CSVs (3,000,000 train / 650,000 test) as uploaded by a user, not by the
    # authors: there is no canonical copy on the Hub; columns class_index (int, 1..5), review_title, review_text.
    "amazon-full": HubTextDataset(
        "yassiracharki/Amazon_Reviews_for_Sentiment_Analysis_fine_grained_5_classes",
        ("review_title", "review_text"),
        "class_index",
        STARS,
        label_offset=1,
    ),
    # The canonical `yahoo_answers_topics` moved here (MTEB loads it from here), not to fancyzhx with AG News and
    # Yelp. Columns: id, topic (ClassLabel), question_title, question_content, best_answer.
    "yahoo": HubTextDataset(
        "community-datasets/yahoo_answers_topics",
        ("question_title", "question_content", "best_answer"),
        "topic",
        (
            "Society & Culture", "Science & Mathematics", "Health", "Education & Reference", "Computers & Internet",
            "Sports", "Business & Finance", "Entertainment & Music", "Family & Relationships", "Politics & Government",
        ),
    ),
    "yelp-full": HubTextDataset("fancyzhx/yelp_review_full", ("text",), "label", STARS),  # the Hub's names: "2 star"
}


def load_hf_text_dataset(name: str, data_dir: Path | str | None = None) -> TextSplits:
    """The official train / test split of `name` (a key of `HF_TEXT_DATASETS`) as raw texts and int64 labels (N,).

    If `data_dir` holds a `DatasetDict.save_to_disk` copy (a `dataset_dict.json`), it is read from
    there, offline; otherwise `datasets.load_dataset` downloads it, caching under `data_dir` (None:
    the Hugging Face default cache). A text is its dataset's text columns joined with newlines.
    """
    if name not in HF_TEXT_DATASETS:
        raise BadValue(f"Unknown Hugging Face text dataset {name!r}; expected one of: {', '.join(HF_TEXT_DATASETS)}")
    spec = HF_TEXT_DATASETS[name]
    dataset_dict = load_hub_dataset_dict(name, spec.hub_name, None if data_dir is None else Path(data_dir))
    (train_texts, train_labels), (test_texts, test_labels) = (
        _texts_and_labels(name, spec, dataset_dict[split], split) for split in SPLITS
    )
    return TextSplits(name, train_texts, train_labels, test_texts, test_labels, spec.class_names)


def _texts_and_labels(name: str, spec: HubTextDataset, split_data, split: str) -> tuple[tuple[str, ...], torch.Tensor]:
    """The joined texts of one split and its labels (N,) int64 in [0, K), checked against the spec."""
    columns = split_data.column_names
    needed = (*spec.text_columns, spec.label_column)
    if any(column not in columns for column in needed):
        raise BadValue(f"{name}: split {split!r} needs columns {list(needed)}; columns found: {columns}")
    for column in spec.text_columns:
        check_column_type(name, split, split_data, column, "texts", spec.hub_name)
    check_column_type(name, split, split_data, spec.label_column, "labels", spec.hub_name)
    num_classes = len(spec.class_names)
    feature = split_data.features[spec.label_column]
    if hasattr(feature, "names") and len(feature.names) != num_classes:
        raise BadValue(
            f"{name}: split {split!r} column {spec.label_column!r} has {len(feature.names)} classes "
            f"{feature.names}; expected {num_classes}: {list(spec.class_names)}"
        )
    # whole columns through Arrow: indexing a `Column` (datasets >= 4) converts row by row, ~10 s a million
    stored = split_data.select_columns([spec.label_column]).with_format("numpy")[:][spec.label_column]
    stored = stored.astype(np.int64)
    low, high = spec.label_offset, spec.label_offset + num_classes - 1
    if len(stored) and (stored.min() < low or stored.max() > high):
        raise BadValue(
            f"{name}: split {split!r} column {spec.label_column!r} has values {stored.min()}..{stored.max()}, "
            f"outside {low}..{high}"
        )
    fields = split_data.select_columns(list(spec.text_columns))[:]  # column -> list of str (None where empty)
    texts = tuple("\n".join(part for part in parts if part) for parts in zip(*(fields[c] for c in spec.text_columns)))
    return texts, torch.from_numpy(stored - spec.label_offset)
