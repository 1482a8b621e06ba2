"""What the training loop and its callbacks share: `TrainState`, and `Precision` (how the forward
passes run)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torch import nn

from itra.config import TrainConfig
from itra.device import check_precision
from itra.distributed import Dist
from itra.objective import Objective

AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """How the forward passes run: autocast to `dtype` (None: float32 throughout), with a gradient
    scaler for float16 (on CUDA; bfloat16 has float32's range and needs none)."""

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def of(cls, name: str, device: torch.device) -> "Precision":
        """`--precision` 32, bf16 or fp16 on `device`."""
        check_precision(name, device)
        dtype = AUTOCAST_DTYPES[name]
        return cls(dtype, torch.amp.GradScaler(device.type) if dtype == torch.float16 else None)

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (its scale and growth tracker), for the checkpoint; nothing without one."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None:
            self.scaler.load_state_dict(state)


@dataclass
class TrainState:
    """What the loop and its callbacks share; `epoch` counts finished epochs, `step` finished steps. `dist` is
    this process's place among the ranks; `step_module` is what a step calls: `DistributedDataParallel`
    around `objective` with several ranks (None: `objective` itself)."""

    config: TrainConfig
    objective: Objective
    optimizer: torch.optim.Optimizer
    schedule: Any
    augment: torch.Generator
    device: torch.device
    precision: Precision
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    train_size: int = 0
    test_size: int = 0
    dist: Dist = Dist()
    step_module: nn.Module | None = None
