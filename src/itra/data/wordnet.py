"""WordNet 3.0 glosses labelled by lexicographer file (noun.animal, verb.motion, ...), from Debian's `wordnet-base`.

    apt-get install wordnet-base     # installs /usr/share/wordnet/data.noun and data.verb
    python -c "from itra.data.wordnet import load_wordnet; print(load_wordnet().num_classes)"

Every noun and verb synset is one sample: its gloss (definition and quoted examples) is the text, the
lexicographer file it was written in is the label. With the defaults: 41 classes (26 noun and 15 verb
files), 95,882 glosses split 76,705 train / 19,177 test; the classes range from noun.motive (42
glosses) to noun.artifact (11,587).

`wordnet-top10` (`largest_classes`, then `unseen_test`) keeps the 10 largest classes, all noun files (noun.act,
noun.animal, noun.artifact, noun.attribute, noun.communication, noun.location, noun.person, noun.plant, noun.state,
noun.substance; from 2,386 to 9,270 training glosses each), under the same split: 50,596 train / 12,477 test, after
dropping the 172 test glosses whose text is also a training gloss (WordNet repeats some glosses across synsets).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from itra.data.text import TextSplits
from itra.errors import BadValue, MissingFile

DEFAULT_DIR = Path("/usr/share/wordnet")
DATA_FILES = ("data.noun", "data.verb")
INSTALL_HINT = "install the Debian package: apt-get install wordnet-base, or pass --data-dir"
REPAIR_HINT = "reinstall it (apt-get install --reinstall wordnet-base) or pass --data-dir with an intact copy"
# lexnames(5WN): the lexicographer file of each file number, 00..44.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition", "verb.consumption",
    "verb.contact", "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession",
    "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_SS_TYPE_CATEGORY = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}  # wndb(5WN) ss_type


def _parse_line(line: str, category: str | None = None) -> tuple[str, int]:
    """(gloss, lex_filenum) of one synset line, of the part of speech `category` ("noun", ...; None: any);
    ValueError saying what is wrong."""
    if not line.endswith("\n"):  # every line of a data file ends with one: the file is cut short
        raise BadValue("cut short: the file ends inside this line")
    fields, bar, gloss = line.partition(" | ")
    gloss = gloss.strip()
    if not bar or not gloss:
        raise BadValue("no ' | gloss' at the end")
    head = fields.split()
    if len(head) < 4 or len(head[0]) != 8 or not head[0].isdigit():
        raise BadValue("expected 'synset_offset lex_filenum ss_type w_cnt ...' before the gloss")
    if len(head[1]) != 2 or not head[1].isdigit() or int(head[1]) >= len(LEXNAMES):
        raise BadValue(f"lex_filenum {head[1]!r} is not a two-digit file number 00..{len(LEXNAMES) - 1}")
    lexname = LEXNAMES[int(head[1])]
    if _SS_TYPE_CATEGORY.get(head[2]) != lexname.split(".")[0]:
        raise BadValue(f"ss_type {head[2]!r} does not match lexicographer file {head[1]} ({lexname})")
    if category is not None and not lexname.startswith(f"{category}."):
        raise BadValue(f"a synset of {lexname} in the file of the {category}s")
    return gloss, int(head[1])


def read_glosses(path: Path | str) -> list[tuple[str, int]]:
    """(gloss, lex_filenum) of every synset of a WordNet `data.*` file, in file order.

    A synset line is `synset_offset lex_filenum ss_type w_cnt word lex_id ... | gloss` (wndb(5WN));
    lines that start with two spaces are the licence header. In `data.noun`, `data.verb`, `data.adj` and
    `data.adv` every synset is of that part of speech. Raises `FileNotFoundError` (`MissingFile`) if `path` is
    missing, and `ValueError` (`BadValue`) naming the file, and the line where there is one, for a file that cannot
    be read or is not UTF-8 text, a malformed line, a synset of another part of speech, or a last line cut short.
    """
    path = Path(path)
    category = path.name.removeprefix("data.") if path.name in DATA_FILES + ("data.adj", "data.adv") else None
    glosses = []
    try:
        with path.open("rb") as lines:  # decoded line by line, so that a line that is not text is named
            for number, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:  # WordNet's files are ASCII: another file (compressed, binary)
                    raise BadValue(f"{path}, line {number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                                   f"{error.start + 1}), so not a WordNet data file; {REPAIR_HINT}") from None
                if line.startswith("  "):
                    continue
                try:
                    glosses.append(_parse_line(line, category))
                except ValueError as error:
                    raise BadValue(f"{path}, line {number}: {error}: {line.strip()[:80]!r}; {REPAIR_HINT}") from None
    except FileNotFoundError:
        raise MissingFile(f"{path}: no such file; {INSTALL_HINT}") from None
    except OSError as error:  # a folder, a file without read permission
        raise BadValue(f"{path}: cannot read it: {error.strerror or error}; {REPAIR_HINT}") from None
    return glosses


def _stratified_test_mask(labels: torch.Tensor, test_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(N,) bool: a random `test_fraction` of each class of `labels` (N,) in [0, K), rounded, but at least
    one sample on each side for a class of two or more (a class of one stays in train)."""
    counts = torch.bincount(labels)  # (K,)
    test_counts = (counts * test_fraction).round().long().clamp(min=1).minimum(counts - 1)  # (K,)
    order = torch.randperm(len(labels), generator=generator)
    order = order[torch.sort(labels[order], stable=True).indices]  # grouped by class, random within each
    class_start = torch.cumsum(counts, 0) - counts  # (K,)
    rank = torch.empty_like(labels)  # position of each sample within its class, in the random order
    rank[order] = torch.arange(len(labels)) - class_start[labels[order]]
    return rank < test_counts[labels]


def load_wordnet(data_dir: Path | str = DEFAULT_DIR, test_fraction: float = 0.2, seed: int = 0) -> TextSplits:
    """Noun and verb glosses of `data_dir`/data.noun and data.verb, split into train / test by `seed`.

    Classes are the lexicographer files that occur, in lexnames order, numbered 0..K-1; `class_names`
    are their names ("noun.Tops", ...). The split is stratified: each class puts `test_fraction` of
    its glosses (rounded, at least one per side for a class of two or more) in test; the same `seed`
    gives the same split. Texts keep file order; labels are int64 (N,).
    """
    if not 0.0 < test_fraction < 1.0:
        raise BadValue(f"Expected `test_fraction` in (0, 1), but got {test_fraction}")
    data_dir = Path(data_dir)
    per_file = {name: read_glosses(data_dir / name) for name in DATA_FILES}
    empty = [name for name, glosses in per_file.items() if not glosses]
    if empty:  # an empty file would leave out the classes of its part of speech unsaid
        raise BadValue(f"{data_dir}: no synsets in {' or '.join(empty)}; {REPAIR_HINT}")
    samples = [sample for glosses in per_file.values() for sample in glosses]
    texts = tuple(gloss for gloss, _ in samples)
    lex_filenums = torch.tensor([number for _, number in samples])  # (N,)
    files = torch.unique(lex_filenums)  # (K,) sorted, i.e. in lexnames order
    labels = torch.searchsorted(files, lex_filenums)  # (N,) in [0, K)
    is_test = _stratified_test_mask(labels, test_fraction, torch.Generator().manual_seed(seed))
    (train_texts, train_labels), (test_texts, test_labels) = (
        _take(texts, labels, part.nonzero().squeeze(1)) for part in (~is_test, is_test))
    return TextSplits("wordnet", train_texts, train_labels, test_texts, test_labels,
                      tuple(LEXNAMES[number] for number in files.tolist()))


def _take(texts: tuple[str, ...], labels: torch.Tensor, index: torch.Tensor) -> tuple[tuple[str, ...], torch.Tensor]:
    """The texts and labels (N,) at `index` (M,) int64, in its order."""
    return tuple(texts[i] for i in index.tolist()), labels[index]


def largest_classes(splits: TextSplits, count: int) -> TextSplits:
    """`splits` restricted to its `count` largest classes (by glosses in train and test together; a tie goes to the
    lower label): the same texts in the same order, relabelled 0..count-1 in their old order, names kept, named
    `<name>-top<count>`.

    >>> top = largest_classes(TextSplits("toy", ("a", "b", "c", "d"), torch.tensor([0, 1, 1, 2]), ("e", "f"),
    ...                                  torch.tensor([2, 2]), ("x", "y", "z")), 2)
    >>> top.name, top.class_names, top.train_texts, top.train_labels.tolist(), top.test_labels.tolist()
    ('toy-top2', ('y', 'z'), ('b', 'c', 'd'), [0, 0, 1], [1, 1])
    """
    if not 1 <= count <= splits.num_classes:
        raise BadValue(f"Expected `count` in 1..{splits.num_classes} (the classes of {splits.name}), but got {count}")
    counts = torch.bincount(torch.cat([splits.train_labels, splits.test_labels]), minlength=splits.num_classes)  # (K,)
    kept = torch.argsort(counts, descending=True, stable=True)[:count].sort().values  # (count,) old labels, in order
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.int64)
    relabel[kept] = torch.arange(count)

    def keep(texts: tuple[str, ...], labels: torch.Tensor) -> tuple[tuple[str, ...], torch.Tensor]:
        texts, labels = _take(texts, labels, (relabel[labels] >= 0).nonzero().squeeze(1))
        return texts, relabel[labels]

    (train_texts, train_labels), (test_texts, test_labels) = (
        keep(splits.train_texts, splits.train_labels), keep(splits.test_texts, splits.test_labels))
    return TextSplits(f"{splits.name}-top{count}", train_texts, train_labels, test_texts, test_labels,
                      tuple(splits.class_names[k] for k in kept.tolist()))


def unseen_test(splits: TextSplits) -> TextSplits:
    """`splits` without the test texts that are also training texts: WordNet gives some synsets the same gloss
    ("tapeworms", "a genus of Fringillidae"), and a random split puts some of those on both sides.

    >>> unseen_test(TextSplits("toy", ("a", "b"), torch.tensor([0, 1]), ("b", "c"), torch.tensor([1, 0]),
    ...                        ("x", "y"))).test_texts
    ('c',)
    """
    trained = set(splits.train_texts)
    index = torch.tensor([i for i, text in enumerate(splits.test_texts) if text not in trained], dtype=torch.int64)
    test_texts, test_labels = _take(splits.test_texts, splits.test_labels, index)
    return dataclasses.replace(splits, test_texts=test_texts, test_labels=test_labels)
