"""Each Hub dataset is mimicked by a tiny `save_to_disk` copy with the real columns and feature types."""
from pathlib import Path

import pytest
import torch

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value  # noqa: E402

from itra.data.hf_text import HF_TEXT_DATASETS, STARS, load_hf_text_dataset  # noqa: E402

AG_NEWS = ("World", "Sports", "Business", "Sci/Tech")
YAHOO_TOPICS = (  # the topic ClassLabel of yahoo_answers_topics
    "Society & Culture", "Science & Mathematics", "Health", "Education & Reference", "Computers & Internet",
    "Sports", "Business & Finance", "Entertainment & Music", "Family & Relationships", "Politics & Government",
)
HUB_STARS = ["1 star", "2 star", "3 stars", "4 stars", "5 stars"]  # sic: the ClassLabel names of yelp_review_full


def fake_split(name: str, seed: int, size: int = 4) -> tuple[Dataset, list[str], list[int]]:
    """A split with the real columns and features, its expected texts, and its expected labels in [0, K)."""
    labels = [(seed + 3 * i) % (4 if name == "ag-news" else 10 if name == "yahoo" else 5) for i in range(size)]
    words = [f"s{seed}r{i}" for i in range(size)]
    if name == "ag-news":
        texts = [f"{w} Wall St. Bears Claw Back Into the Black (Reuters)" for w in words]
        features = Features({"text": Value("string"), "label": ClassLabel(names=list(AG_NEWS))})
        return Dataset.from_dict({"text": texts, "label": labels}, features=features), texts, labels
    if name == "yelp-full":
        texts = [f"{w} dr. goldberg offers everything i look for" for w in words]
        features = Features({"label": ClassLabel(names=HUB_STARS), "text": Value("string")})
        return Dataset.from_dict({"label": labels, "text": texts}, features=features), texts, labels
    if name == "amazon-full":  # a CSV on the Hub: plain integers 1..5; an empty title reads as None
        titles = [None if i == 1 else f"{w} title" for i, w in enumerate(words)]
        bodies = [f"{w} review body, with a comma" for w in words]
        columns = {"class_index": [k + 1 for k in labels], "review_title": titles, "review_text": bodies}
        features = Features({c: Value("int64" if c == "class_index" else "string") for c in columns})
        texts = [body if title is None else f"{title}\n{body}" for title, body in zip(titles, bodies)]
        return Dataset.from_dict(columns, features=features), texts, labels
    assert name == "yahoo"
    columns = {
        "id": list(range(size)),
        "topic": labels,
        "question_title": [f"{w} why doesn't an optical mouse work on glass?" for w in words],
        "question_content": ["" if i % 2 else f"{w} or even on some surfaces?" for i, w in enumerate(words)],
        "best_answer": [f"{w} the mouse uses an optical sensor" for w in words],
    }
    features = Features(
        {"id": Value("int32"), "topic": ClassLabel(names=list(YAHOO_TOPICS))}
        | {column: Value("string") for column in ("question_title", "question_content", "best_answer")}
    )
    parts = zip(columns["question_title"], columns["question_content"], columns["best_answer"])
    texts = ["\n".join(part for part in row if part) for row in parts]
    return Dataset.from_dict(columns, features=features), texts, labels


def save(path: Path, **splits: Dataset) -> Path:
    DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("name", sorted(HF_TEXT_DATASETS))
def test_loads_a_save_to_disk_copy(tmp_path, name):
    (train, train_texts, train_labels), (test, test_texts, test_labels) = fake_split(name, 0), fake_split(name, 1, 3)
    splits = load_hf_text_dataset(name, save(tmp_path, train=train, test=test))
    assert splits.name == name
    assert splits.train_texts == tuple(train_texts) and splits.test_texts == tuple(test_texts)
    assert splits.train_labels.dtype == splits.test_labels.dtype == torch.int64
    assert splits.train_labels.tolist() == train_labels and splits.test_labels.tolist() == test_labels
    expected_names = {
        "ag-news": AG_NEWS,
        "amazon-full": STARS,
        "yahoo": YAHOO_TOPICS,
        "yelp-full": ("1 star", "2 stars", "3 stars", "4 stars", "5 stars"),
    }
    assert splits.class_names == expected_names[name] and splits.num_classes == len(expected_names[name])


def test_the_four_datasets_and_their_hub_names():
    assert {name: spec.hub_name for name, spec in HF_TEXT_DATASETS.items()} == {
        "ag-news": "fancyzhx/ag_news",
        "amazon-full": "yassiracharki/Amazon_Reviews_for_Sentiment_Analysis_fine_grained_5_classes",
        "yahoo": "community-datasets/yahoo_answers_topics",
        "yelp-full": "fancyzhx/yelp_review_full",
    }


def test_yahoo_joins_title_content_and_answer(tmp_path):
    features = fake_split("yahoo", 0)[0].features
    row = {"id": [0, 1], "topic": [2, 9], "question_title": ["Why?", "How?"], "best_answer": ["Because.", "So."]}
    train = Dataset.from_dict({**row, "question_content": ["Really, why?", ""]}, features=features)
    test = Dataset.from_dict({**row, "question_content": [None, "Tell me."]}, features=features)
    splits = load_hf_text_dataset("yahoo", save(tmp_path, train=train, test=test))
    assert splits.train_texts == ("Why?\nReally, why?\nBecause.", "How?\nSo.")
    assert splits.test_texts == ("Why?\nBecause.", "How?\nTell me.\nSo.")
    assert splits.train_labels.tolist() == [2, 9]
    assert [splits.class_names[k] for k in splits.test_labels] == ["Health", "Politics & Government"]


def test_missing_column_is_a_clear_error(tmp_path):
    train, _, _ = fake_split("yelp-full", 0)
    test, _, _ = fake_split("yelp-full", 1)
    message = r"yelp-full: split 'test' needs columns \['text', 'label'\]; columns found: \['label', 'review'\]"
    with pytest.raises(ValueError, match=message):
        load_hf_text_dataset("yelp-full", save(tmp_path, train=train, test=test.rename_column("text", "review")))


def test_missing_split_is_a_clear_error(tmp_path):
    train, _, _ = fake_split("ag-news", 0)
    with pytest.raises(ValueError, match=r"ag-news: no 'test' split; splits found: \['train', 'validation'\]"):
        load_hf_text_dataset("ag-news", save(tmp_path, train=train, validation=train))


@pytest.mark.parametrize("class_index, values", [([1, 6, 3], "1..6"), ([0, 5, 2], "0..5")])
def test_amazon_class_index_must_be_1_to_5(tmp_path, class_index, values):
    train, _, _ = fake_split("amazon-full", 0, size=3)
    test = train.remove_columns("class_index").add_column("class_index", class_index)
    message = rf"amazon-full: split 'test' column 'class_index' has values {values}, outside 1\.\.5"
    with pytest.raises(ValueError, match=message):
        load_hf_text_dataset("amazon-full", save(tmp_path, train=train, test=test))


def test_labels_out_of_range(tmp_path):
    train, _, _ = fake_split("ag-news", 0)
    plain = Features({"text": Value("string"), "label": Value("int64")})
    test = Dataset.from_dict({"text": ["a", "b"], "label": [3, 4]}, features=plain)
    with pytest.raises(ValueError, match="ag-news: split 'test' column 'label' has values 3..4, outside 0..3"):
        load_hf_text_dataset("ag-news", save(tmp_path / "plain", train=train, test=test))
    unlabelled = Dataset.from_dict({"text": ["a"], "label": [-1]}, features=train.features)  # ClassLabel's "no label"
    with pytest.raises(ValueError, match="ag-news: split 'train' column 'label' has values -1..-1, outside 0..3"):
        load_hf_text_dataset("ag-news", save(tmp_path / "minus", train=unlabelled, test=train))


def test_class_label_of_another_dataset_is_a_clear_error(tmp_path):
    ag_news, _, _ = fake_split("ag-news", 0)
    yelp, _, _ = fake_split("yelp-full", 0)
    message = r"yelp-full: split 'train' column 'label' has 4 classes \['World', .*\]; expected 5: \['1 star', "
    with pytest.raises(ValueError, match=message):
        load_hf_text_dataset("yelp-full", save(tmp_path, train=ag_news, test=yelp))


def test_unknown_name():
    with pytest.raises(ValueError, match="Unknown Hugging Face text dataset 'imdb'; expected one of: ag-news, "):
        load_hf_text_dataset("imdb")


def test_downloads_from_the_hub_into_data_dir(tmp_path, monkeypatch):
    calls = []
    train, texts, _ = fake_split("yahoo", 0)
    test, _, _ = fake_split("yahoo", 1)

    def fake_load_dataset(path, cache_dir=None):
        calls.append((path, cache_dir))
        return DatasetDict(train=train, test=test)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_hf_text_dataset("yahoo", tmp_path)  # no dataset_dict.json: a cache folder
    assert calls == [("community-datasets/yahoo_answers_topics", str(tmp_path))]
    assert splits.train_texts == tuple(texts)


def test_no_network_is_one_clear_line(monkeypatch):
    def offline(path, cache_dir=None):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match="ag-news: downloading fancyzhx/ag_news needs the network") as error:
        load_hf_text_dataset("ag-news")
    assert "--data-dir" in str(error.value) and "save_to_disk" in str(error.value) and "\n" not in str(error.value)
