"""The `--optimizer` choices, in one table: each one's factory and the config fields it reads.

A factory is called as `build(parameters, lr=..., weight_decay=..., **fields)`, with the fields its entry names
(`momentum` for SGD) by keyword; `train.build_optimizer` is the one place that takes them from a config, and steps
every run's optimizer once per step under a cosine schedule: the table says only what the optimizer is. A new one
is one `register_optimizer` call (see `tests/test_train.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from itra.errors import BadValue
from itra.registries import check_new, entry

Parameters = Iterable[torch.nn.Parameter]


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer: its factory, `build(parameters, lr=..., weight_decay=..., **{field: value for field in fields})`,
    and the config fields it reads beyond `lr` and `weight_decay`, passed to it by keyword (the others are off:
    `itra.resolve`)."""

    build: Callable[..., torch.optim.Optimizer]
    fields: tuple[str, ...] = ()


def sgd(parameters: Parameters, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum: `--optimizer sgd`, and `ITRAModule`'s default optimizer. At momentum 0, plain SGD:
    Nesterov's update is then the same (and torch refuses it)."""
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """The learning rate from its value to 0 along a half cosine over `steps` steps, stepped once per step: the
    schedule of every run (`train.build_optimizer`) and of `ITRAModule`'s default optimizer."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(sgd, ("momentum",)),  # with Nesterov momentum
    "adamw": OptimizerSpec(torch.optim.AdamW),  # the usual choice to fine-tune a text encoder
}
OPTIMIZER_FIELDS = ("momentum",)  # the fields some optimizer reads


def register_optimizer(name: str, spec: OptimizerSpec) -> None:
    """Add an `--optimizer` choice (its fields must be among `OPTIMIZER_FIELDS`, which resolve switches off)."""
    check_new(OPTIMIZERS, name, "An optimizer")
    unknown = [field for field in spec.fields if field not in OPTIMIZER_FIELDS]
    if unknown:
        raise BadValue(f"Optimizer {name!r} reads fields no optimizer has: {', '.join(unknown)}")
    OPTIMIZERS[name] = spec


def check_optimizer(name: str) -> OptimizerSpec:
    return entry(OPTIMIZERS, "optimizer", name)
