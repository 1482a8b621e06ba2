"""Run directories: one per `TrainConfig`, reused when finished, resumed when interrupted."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from itra.data import Splits
from itra.data.registry import is_text_dataset, load_dataset
from itra.data.text import TextSplits
from itra.models import Classifier
from itra.models.registry import IMAGE_MODELS, build_image_model
from itra.train import TrainConfig, train


def load_splits(config: TrainConfig) -> Splits:
    """The config's dataset, ready to train: a text dataset is tokenised by its model's own tokenizer,
    truncated at `config.max_length`."""
    data = load_dataset(config.dataset, config.data_dir)
    if not isinstance(data, TextSplits):
        return data
    check_text_model(config)
    from itra.models.text import load_tokenizer, tokenize

    tokenizer = load_tokenizer(config.model)

    def encode(texts: tuple[str, ...], labels: torch.Tensor) -> TensorDataset:
        return TensorDataset(*tokenize(texts, tokenizer, config.max_length), labels)

    return Splits(data.name, encode(data.train_texts, data.train_labels), encode(data.test_texts, data.test_labels),
                  data.num_classes, data.class_names)


def check_text_model(config: TrainConfig) -> None:
    if config.model in IMAGE_MODELS:
        raise ValueError(f"{config.dataset} is a text dataset, but --model {config.model} is an image model; use "
                         "--model minilm (offline) or a Hugging Face encoder name or directory")


def build_model(config: TrainConfig, splits: Splits) -> Classifier:
    """The config's model for `splits` (from `load_splits`); a text model starts from its pretrained weights."""
    if is_text_dataset(config.dataset):
        check_text_model(config)
        from itra.models.text import load_text_classifier

        return load_text_classifier(config.model, splits.num_classes)
    in_channels = splits.train[0][0].shape[0]
    stem = "imagenet" if config.dataset == "imagenet" else "cifar"  # the paper's small-image datasets use the CIFAR stem
    return build_image_model(config.model, splits.num_classes, in_channels, stem)


def read_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a run directory (no config.json)")
    return TrainConfig.from_dict(json.loads(path.read_text()))


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def run(config: TrainConfig, out: Path, splits: Splits | None = None, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train `config` into `out/config.name`, or reuse it: a finished run is read back, an interrupted
    one resumed from its checkpoint. A directory that holds another config is an error, never overwritten."""
    run_dir = Path(out) / config.name
    if (run_dir / "config.json").exists():
        existing = read_config(run_dir)
        if dataclasses.asdict(existing) != dataclasses.asdict(config):
            raise ValueError(f"{run_dir} holds a run with another config; choose another --out or remove it")
        summary = read_summary(run_dir)
        if summary is not None:
            return run_dir, summary
    splits = splits if splits is not None else load_splits(config)
    resume = (run_dir / "checkpoint.pt").exists()
    summary = train(config, splits, build_model(config, splits), run_dir, resume=resume, progress=progress)
    return run_dir, summary


def resume(run_dir: Path, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Continue the run in `run_dir` (`itra train --resume`)."""
    config = read_config(run_dir)
    splits = load_splits(config)
    return Path(run_dir), train(config, splits, build_model(config, splits), Path(run_dir), resume=True, progress=progress)
