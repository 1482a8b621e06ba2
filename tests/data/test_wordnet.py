import gzip
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from itra.data.text import TextSplits
from itra.data.wordnet import (DATA_FILES, DEFAULT_DIR, LEXNAMES, largest_classes, load_wordnet,
                                  read_glosses, unseen_test)

LICENCE = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license.  By obtaining, using  \n"
    "  3   \n"
)
needs_real_data = pytest.mark.skipif(
    not all((DEFAULT_DIR / name).is_file() for name in DATA_FILES), reason="apt-get install wordnet-base"
)


def synset_line(offset: int, lex_filenum: int, gloss: str) -> str:
    """One line of a WordNet data file (wndb(5WN)): one word, one pointer and, for verbs, one frame."""
    ss_type = "v" if 29 <= lex_filenum <= 43 else "n"
    frames = " 01 + 02 00" if ss_type == "v" else ""
    return f"{offset:08d} {lex_filenum:02d} {ss_type} 01 word 0 001 @ 00001740 {ss_type} 0000{frames} | {gloss}  \n"


def write_data(root: Path, nouns: list[tuple[int, str]], verbs: list[tuple[int, str]]) -> Path:
    """data.noun and data.verb with the licence header and one synset per (lex_filenum, gloss)."""
    for name, synsets in (("data.noun", nouns), ("data.verb", verbs)):
        lines = [synset_line(1740 + i, lex, gloss) for i, (lex, gloss) in enumerate(synsets)]
        (root / name).write_text(LICENCE + "".join(lines), encoding="utf-8")
    return root


def test_read_glosses_real_format(tmp_path):
    noun = (
        "00002137 03 n 02 abstraction 0 abstract_entity 0 010 @ 00001740 n 0000 ~ 00023280 n 0000 | a concept "
        'formed by extracting common features; the sign | is an "or"; "a dog | cat"  \n'
    )
    verb = (
        "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 002 * 00005041 v 0000 + 03110323 a 0301 "
        '02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; "I can breathe better now"  \n'
    )
    (tmp_path / "data.noun").write_text(LICENCE + noun + synset_line(5, 18, "a human being"), encoding="utf-8")
    (tmp_path / "data.verb").write_text(LICENCE + verb, encoding="utf-8")
    assert read_glosses(tmp_path / "data.noun") == [
        ('a concept formed by extracting common features; the sign | is an "or"; "a dog | cat"', 3),
        ("a human being", 18),
    ]
    assert read_glosses(str(tmp_path / "data.verb")) == [
        ('draw air into, and expel out of, the lungs; "I can breathe better now"', 29)
    ]


def test_lexnames_are_numbered_as_in_wordnet():
    assert len(LEXNAMES) == 45 and len(set(LEXNAMES)) == 45
    assert (LEXNAMES[0], LEXNAMES[3], LEXNAMES[28], LEXNAMES[29], LEXNAMES[43], LEXNAMES[44]) == (
        "adj.all", "noun.Tops", "noun.time", "verb.body", "verb.weather", "adj.ppl",
    )
    assert all(name.startswith("noun.") for name in LEXNAMES[3:29])
    assert all(name.startswith("verb.") for name in LEXNAMES[29:44])


@pytest.mark.skipif(not Path("/usr/share/man/man5/lexnames.5WN.gz").is_file(), reason="apt-get install wordnet-base")
def test_lexnames_match_the_man_page():
    page = gzip.decompress(Path("/usr/share/man/man5/lexnames.5WN.gz").read_bytes()).decode()
    table = re.findall(r"^(\d\d)\t(\S+)", page, flags=re.MULTILINE)
    assert [int(number) for number, _ in table] == list(range(45))
    assert tuple(name for _, name in table) == LEXNAMES


def test_classes_are_the_files_that_occur_in_lexnames_order(tmp_path):
    nouns = [(18, "a human being"), (5, "a living organism"), (3, "the top"), (5, "a dog"), (18, "a child")]
    verbs = [(43, "fall as rain"), (29, "breathe in"), (43, "snow")]
    splits = load_wordnet(write_data(tmp_path, nouns, verbs), test_fraction=0.5)
    assert splits.name == "wordnet"
    assert splits.class_names == ("noun.Tops", "noun.animal", "noun.person", "verb.body", "verb.weather")
    assert splits.num_classes == 5
    expected = {gloss: LEXNAMES[lex] for lex, gloss in nouns + verbs}
    texts = splits.train_texts + splits.test_texts
    labels = torch.cat([splits.train_labels, splits.test_labels])
    assert sorted(texts) == sorted(expected) and labels.dtype == torch.int64
    assert {text: splits.class_names[label] for text, label in zip(texts, labels.tolist())} == expected


def many_synsets(counts: dict[int, int]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """`count` glosses for each lex_filenum, interleaved; nouns and verbs apart."""
    rounds = range(max(counts.values()))
    synsets = [(lex, f"gloss {k} of file {lex}") for k in rounds for lex, count in counts.items() if k < count]
    return [s for s in synsets if s[0] < 29], [s for s in synsets if s[0] >= 29]


@pytest.mark.parametrize("test_fraction", [0.1, 0.2, 0.5, 0.75])
def test_split_is_stratified(tmp_path, test_fraction):
    counts = {3: 1, 5: 2, 6: 3, 14: 10, 18: 37, 30: 7, 38: 100}
    splits = load_wordnet(write_data(tmp_path, *many_synsets(counts)), test_fraction=test_fraction)
    train = torch.bincount(splits.train_labels, minlength=len(counts)).tolist()
    test = torch.bincount(splits.test_labels, minlength=len(counts)).tolist()
    for k, n in enumerate(counts.values()):
        expected_test = 0 if n == 1 else min(max(round(test_fraction * n), 1), n - 1)
        assert (train[k], test[k]) == (n - expected_test, expected_test)
    assert len(set(splits.train_texts) & set(splits.test_texts)) == 0
    assert len(splits.train_texts) == len(splits.train_labels) and len(splits.test_texts) == len(splits.test_labels)


def test_split_is_fixed_by_the_seed(tmp_path):
    data_dir = write_data(tmp_path, *many_synsets({4: 50, 9: 40, 31: 30}))
    first, again, other = load_wordnet(data_dir, seed=3), load_wordnet(data_dir, seed=3), load_wordnet(data_dir, seed=4)
    assert first.train_texts == again.train_texts and first.test_texts == again.test_texts
    assert torch.equal(first.train_labels, again.train_labels) and torch.equal(first.test_labels, again.test_labels)
    assert set(first.test_texts) != set(other.test_texts)
    assert Counter(first.test_labels.tolist()) == Counter(other.test_labels.tolist())
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    load_wordnet(data_dir, seed=5)
    assert torch.equal(torch.rand(1), before)  # the global generator is left alone


def test_texts_keep_file_order(tmp_path):
    nouns, verbs = many_synsets({10: 20, 35: 20})
    splits = load_wordnet(write_data(tmp_path, nouns, verbs))
    position = {gloss: i for i, (_, gloss) in enumerate(nouns + verbs)}
    for texts in (splits.train_texts, splits.test_texts):
        assert [position[t] for t in texts] == sorted(position[t] for t in texts)


@pytest.mark.parametrize(
    "line, message",
    [
        ("00001740 03 n 01 entity 0 000\n", "no ' | gloss'"),
        ("00001740 03 n 01 entity 0 000 |   \n", "no ' | gloss'"),
        ("1740 03 n 01 entity 0 000 | a thing\n", "synset_offset lex_filenum ss_type w_cnt"),
        ("00001740 03 n | a thing\n", "synset_offset lex_filenum ss_type w_cnt"),
        ("00001740 3 n 01 entity 0 000 | a thing\n", "lex_filenum '3' is not a two-digit file number 00..44"),
        ("00001740 45 n 01 entity 0 000 | a thing\n", "lex_filenum '45'"),
        (
            "00001740 29 n 01 entity 0 000 | a thing\n",
            r"ss_type 'n' does not match lexicographer file 29 \(verb\.body\)",
        ),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "data.noun"
    path.write_text(LICENCE + synset_line(1, 3, "fine") + line, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        read_glosses(path)
    assert f"{path}, line 5: " in str(error.value) and "\n" not in str(error.value)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base") as error:
        read_glosses(tmp_path / "data.noun")
    assert str(tmp_path / "data.noun") in str(error.value)
    write_data(tmp_path, [(5, "a dog")], [(29, "breathe")])
    (tmp_path / "data.verb").unlink()
    with pytest.raises(FileNotFoundError, match=r"data\.verb: no such file; .*apt-get install wordnet-base"):
        load_wordnet(tmp_path)


def test_no_synsets(tmp_path):
    with pytest.raises(ValueError, match="no synsets in data.noun or data.verb"):
        load_wordnet(write_data(tmp_path, [], []))


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.2, 1.5])
def test_test_fraction_must_be_in_the_open_unit_interval(tmp_path, test_fraction):
    with pytest.raises(ValueError, match=rf"Expected `test_fraction` in \(0, 1\), but got {test_fraction}"):
        load_wordnet(write_data(tmp_path, [(5, "a dog")], []), test_fraction=test_fraction)


@needs_real_data
def test_real_data():
    synset_lines = sum(
        not line.startswith("  ") for name in DATA_FILES for line in (DEFAULT_DIR / name).open(encoding="utf-8")
    )
    splits = load_wordnet()
    assert splits.num_classes == 41  # every noun (03..28) and verb (29..43) file occurs
    assert splits.class_names == LEXNAMES[3:44]
    assert len(splits.train_texts) + len(splits.test_texts) == synset_lines == 95_882
    assert (len(splits.train_texts), len(splits.test_texts)) == (76_705, 19_177)  # the module docstring's figures
    assert all(text.strip() == text and text for text in splits.train_texts + splits.test_texts)
    counts = torch.bincount(torch.cat([splits.train_labels, splits.test_labels]))
    assert splits.class_names[int(counts.argmin())] == "noun.motive" and int(counts.min()) == 42
    assert splits.class_names[int(counts.argmax())] == "noun.artifact" and int(counts.max()) == 11_587
    ratio = torch.bincount(splits.test_labels, minlength=41) / counts
    assert ratio.sub(0.2).abs().max() < 0.02


def test_largest_classes_keeps_the_largest_relabelled_in_their_order(tmp_path):
    counts = {3: 4, 5: 9, 6: 6, 18: 6, 30: 2, 38: 7}  # noun.animal, verb.motion, then a tie: noun.artifact, noun.person
    splits = load_wordnet(write_data(tmp_path, *many_synsets(counts)), test_fraction=0.25)
    top = largest_classes(splits, 3)
    assert top.name == "wordnet-top3"
    assert top.class_names == ("noun.animal", "noun.artifact", "verb.motion")  # the tie goes to the lower label
    for part in ("train", "test"):
        texts, labels = getattr(top, f"{part}_texts"), getattr(top, f"{part}_labels")
        kept = [(text, splits.class_names[k]) for text, k in zip(getattr(splits, f"{part}_texts"),
                                                                   getattr(splits, f"{part}_labels").tolist())
                if splits.class_names[k] in top.class_names]
        assert list(texts) == [text for text, _ in kept]  # the same texts in the same order
        assert [top.class_names[k] for k in labels.tolist()] == [name for _, name in kept]  # names kept
        assert labels.dtype == torch.int64
    assert largest_classes(splits, splits.num_classes).class_names == splits.class_names


@pytest.mark.parametrize("count", [0, -1, 7])
def test_largest_classes_count_must_be_a_number_of_classes(tmp_path, count):
    splits = load_wordnet(write_data(tmp_path, *many_synsets({3: 4, 5: 9, 6: 6, 18: 6, 30: 2, 38: 7})))
    with pytest.raises(ValueError, match=rf"Expected `count` in 1..6 \(the classes of wordnet\), but got {count}"):
        largest_classes(splits, count)


def test_unseen_test_drops_only_the_test_texts_seen_in_training():
    splits = TextSplits("toy", ("a", "b", "a"), torch.tensor([0, 1, 0]), ("b", "c", "a", "d", "c"),
                        torch.tensor([0, 1, 0, 1, 0]), ("x", "y"))
    unseen = unseen_test(splits)
    assert unseen.test_texts == ("c", "d", "c") and unseen.test_labels.tolist() == [1, 1, 0]
    assert (unseen.train_texts, unseen.class_names, unseen.name) == (splits.train_texts, ("x", "y"), "toy")


@needs_real_data
def test_real_wordnet_top10_holds_the_10_largest_classes_and_no_trained_gloss():
    from itra.data.registry import load_dataset

    full, top = load_wordnet(), load_dataset("wordnet-top10")
    counts = torch.bincount(torch.cat([full.train_labels, full.test_labels]))  # (41,)
    largest = {full.class_names[k] for k in counts.topk(10).indices.tolist()}
    assert counts.sort(descending=True).values[9] > counts.sort(descending=True).values[10]  # no tie at the cut
    assert top.name == "wordnet-top10" and set(top.class_names) == largest and len(top.class_names) == 10
    assert top.class_names == tuple(name for name in full.class_names if name in largest)  # lexnames order
    assert (len(top.train_texts), len(top.test_texts)) == (50_596, 12_477)  # the module docstring's figures
    assert set(full.train_texts) & set(full.test_texts)  # WordNet repeats glosses: the split alone lets some through
    assert not set(top.train_texts) & set(top.test_texts)
    assert top.train_texts == tuple(t for t, k in zip(full.train_texts, full.train_labels.tolist())
                                    if full.class_names[k] in largest)  # the training set is the full one's, filtered
