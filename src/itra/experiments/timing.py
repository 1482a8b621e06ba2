"""Step times measured side by side in one process: the one timing helper of `itra reproduce`,
`itra report` and `benchmarks/bench_models.py`.

Machines are shared and noisy, so methods are never timed one after the other: every round runs one
step of each, in turn, and a busy machine slows them alike; their ratios stay meaningful.
"""
from __future__ import annotations

import itertools
import platform
import time
from typing import Callable, Sequence

import torch

from itra.config import TrainConfig
from itra.device import resolve_device
from itra.distributed import setup
from itra.data import PairedLoader, Splits
from itra.data.batches import Batch
from itra.data.splits import run_splits
from itra.objective import build_objective
from itra.models import Classifier
from itra.pairing import samples_per_step
from itra.state import Precision
from itra.train import build_optimizer, step_loader, train_step


def machine_info(device: torch.device) -> dict[str, object]:
    """What a benchmark's numbers were measured on, for its JSON file."""
    return {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


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
    """Median seconds per training step of each config, side by side (`time_side_by_side`), all on the
    batches the first config's seed draws from its training subset, each config's own shape of them (S2
    or not, 2m with the "split" pairing), compiled with `compile`, in its `precision`, on this rank's own device
    (`cuda:LOCAL_RANK` under torchrun). Returns {config.name: seconds}."""
    first = configs[0]
    device = setup().device(resolve_device(first.device))
    train_set = run_splits(splits, first.train_subset, None, 0.0, first.seed).train
    runners = {}
    for config in configs:
        objective = build_objective(config, model_factory(config), splits.num_classes).to(device).train()
        if config.compile:
            objective.compile_extractor()
        loader = step_loader(train_set, objective, samples_per_step(config.pairing, config.batch_size),
                             config.second_batch_size, first.seed, config.workers)
        optimizer, _ = build_optimizer(config, objective.parameters(), len(loader) * config.epochs)
        pairs = _step_batches(loader, steps + 1, device)
        precision = Precision.of(config.precision, device)
        runners[config.name] = (lambda i, o=objective, opt=optimizer, p=pairs, pr=precision: train_step(o, opt, *p[i], pr))
    return time_side_by_side(runners, steps, device)


def _step_batches(loader: PairedLoader, count: int, device: torch.device) -> list[tuple[Batch, Batch | None]]:
    """The loader's first `count` steps as (S1, S2 or None) on `device`, over as many epochs as that takes."""
    steps: list[tuple[Batch, Batch | None]] = []
    while len(steps) < count:  # a small training set may take several epochs: each new iteration is the next
        for item in itertools.islice(loader, count - len(steps)):
            pair = item if loader.paired else (item, None)
            steps.append(tuple(None if batch is None else tuple(t.to(device) for t in batch) for batch in pair))
    return steps
