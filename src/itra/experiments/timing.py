"""Step times measured side by side in one process: the one timing helper of `itra reproduce`,
`itra report` and `benchmarks/bench_models.py`.

Machines are shared and noisy, so methods are never timed one after the other: every round runs one
step of each, in turn, and a busy machine slows them alike; their ratios stay meaningful.
"""
from __future__ import annotations

import itertools
import time
from typing import Callable, Sequence

import torch

from itra.config import TrainConfig, resolve_device
from itra.data import PairedLoader, Splits
from itra.data.splits import run_splits
from itra.methods import build_objective
from itra.models import Classifier
from itra.train import build_optimizer, train_step


def time_side_by_side(steps: dict[str, Callable[[int], object]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each `steps[name](round)` over `rounds` rounds after one warm-up round, the
    steps running in turn within each round (CUDA is synchronised around each step)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds + 1):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            step(index)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index:  # round 0 warms up
                times[name].append(time.perf_counter() - started)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def time_steps(configs: Sequence[TrainConfig], splits: Splits, model_factory: Callable[[TrainConfig], Classifier],
               steps: int = 20) -> dict[str, float]:
    """Median seconds per training step of each config, all on the same S1 (and S2) batches of the
    first config's data, side by side (`time_side_by_side`). Returns {config.name: seconds}."""
    first = configs[0]
    device = resolve_device(first.device)
    train_set = run_splits(splits, first.train_subset, None, 0.0, first.seed).train
    loader = PairedLoader(train_set, first.batch_size, first.second_batch_size, first.seed)
    pairs: list = []
    for epoch in itertools.count():  # a small training set may take several epochs of batches
        if len(pairs) > steps:
            break
        loader.set_epoch(epoch)
        pairs += [tuple(tuple(t.to(device) for t in batch) for batch in pair)
                  for pair in itertools.islice(loader, steps + 1 - len(pairs))]
    runners = {}
    for config in configs:
        objective = build_objective(config, model_factory(config), splits.num_classes).to(device).train()
        optimizer, _ = build_optimizer(config, objective.parameters(), len(train_set))  # type: ignore[arg-type]
        runners[config.name] = (lambda i, o=objective, opt=optimizer: train_step(o, opt, *pairs[i]))
    return time_side_by_side(runners, steps, device)
