"""WordNet 3.0 glosses labelled by lexicographer file (noun.animal, verb.motion, ...), from Debian's `wordnet-base`.

    apt-get install wordnet-base     # installs /usr/share/wordnet/data.noun and data.verb
    python -c "from itra.data.wordnet import load_wordnet; print(load_wordnet().num_classes)"

Every noun and verb synset is one sample: its gloss (definition and quoted examples) is the text, the
lexicographer file it was written in is the label. With the defaults: 41 classes (26 noun and 15 verb
files), 95,882 glosses split 76,705 train / 19,177 test; the classes range from noun.motive (42
glosses) to noun.artifact (11,587).
"""
from __future__ import annotations

from pathlib import Path

import torch

from itra.data.text import TextSplits
from itra.errors import BadValue, MissingFile

DEFAULT_DIR = Path("/usr/share/wordnet")
DATA_FILES = ("data.noun", "data.verb")
INSTALL_HINT = "install the Debian package: apt-get install wordnet-base, or pass --data-dir"
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


def _parse_line(line: str) -> tuple[str, int]:
    """(gloss, lex_filenum) of one synset line; ValueError saying what is wrong."""
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
    return gloss, int(head[1])


def read_glosses(path: Path | str) -> list[tuple[str, int]]:
    """(gloss, lex_filenum) of every synset of a WordNet `data.*` file, in file order.

    A synset line is `synset_offset lex_filenum ss_type w_cnt word lex_id ... | gloss` (wndb(5WN));
    lines that start with two spaces are the licence header. Raises `FileNotFoundError` if `path` is
    missing and `ValueError` naming the file and line for a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{path}: no such file; {INSTALL_HINT}")
    glosses = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.startswith("  "):
                continue
            try:
                glosses.append(_parse_line(line))
            except ValueError as error:
                raise BadValue(f"{path}, line {number}: {error}: {line.strip()[:80]!r}") from None
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
    samples = [sample for name in DATA_FILES for sample in read_glosses(data_dir / name)]
    if not samples:
        raise BadValue(f"{data_dir}: no synsets in {' or '.join(DATA_FILES)}")
    texts = [gloss for gloss, _ in samples]
    lex_filenums = torch.tensor([number for _, number in samples])  # (N,)
    files = torch.unique(lex_filenums)  # (K,) sorted, i.e. in lexnames order
    labels = torch.searchsorted(files, lex_filenums)  # (N,) in [0, K)
    is_test = _stratified_test_mask(labels, test_fraction, torch.Generator().manual_seed(seed))
    train, test = (~is_test).nonzero().squeeze(1), is_test.nonzero().squeeze(1)
    return TextSplits(
        name="wordnet",
        train_texts=tuple(texts[i] for i in train.tolist()),
        train_labels=labels[train],
        test_texts=tuple(texts[i] for i in test.tolist()),
        test_labels=labels[test],
        class_names=tuple(LEXNAMES[number] for number in files.tolist()),
    )
