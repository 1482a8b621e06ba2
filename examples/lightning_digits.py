"""The small CNN trained on scikit-learn's digits with ITRA-c through PyTorch Lightning, offline, on the CPU.

    pip install -e '.[lightning,data]'
    python examples/lightning_digits.py              # 15 epochs of 1,437 images: about 15 s on 2 busy CPU cores
    python examples/lightning_digits.py --lam 0      # the CE baseline: the same S1 batches, λ = 0
    python examples/lightning_digits.py --smoke      # 1 epoch on 256 images: seconds

`ITRAModule` wraps itra's small CNN (`build_image_model("cnn")`) and matches its penultimate features between
S1 and an independent S2 (class-conditional MMD, ITRA-c); `PairedDataModule` draws the pairs from the digits'
training split (`itra.data.digits.load_digits`, the split of `itra train --dataset digits`). The optimiser is
`itra train`'s default (SGD with Nesterov momentum, cosine schedule). Prints the test accuracy, cross-entropy
and ECE.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields

# OpenMP threads that spin-wait for a busy core make a small model 10x slower on a shared CPU: wait passively.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from lightning.pytorch import Trainer  # noqa: E402

from itra.data.batches import subset  # noqa: E402
from itra.data.digits import load_digits  # noqa: E402
from itra.integrations.lightning import ITRAModule, PairedDataModule  # noqa: E402
from itra.models.registry import build_image_model  # noqa: E402


@dataclass
class ExampleConfig:
    epochs: int = 15
    batch_size: int = 64  # the CE batch S1; each step also draws an S2 of the same size
    lam: float = 0.5
    lam_warmup: int = 100  # optimizer steps; an epoch is 23
    train_size: int = 0  # a fixed random subset of the 1,437 training images; 0: all of them
    seed: int = 0


SMOKE = dict(epochs=1, train_size=256, lam_warmup=2)


def main(config: ExampleConfig) -> dict[str, float]:
    splits = load_digits(seed=config.seed)
    train_set = subset(splits.train, config.train_size or None)
    torch.manual_seed(config.seed)  # the model's initial weights
    model = build_image_model("cnn", splits.num_classes, in_channels=1)
    module = ITRAModule(model, lam=config.lam, lam_warmup=config.lam_warmup)
    data = PairedDataModule(train_set, config.batch_size, seed=config.seed, test_set=splits.test)
    trainer = Trainer(max_epochs=config.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    (metrics,) = trainer.test(module, data, verbose=False)
    print(f"test accuracy {metrics['test_accuracy']:.2f} %, test CE {metrics['test_cross_entropy']:.4f}, "
          f"test ECE {metrics['test_ece']:.4f} ({len(train_set)} training images, {trainer.global_step} steps, "
          f"λ {config.lam:g})")
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
