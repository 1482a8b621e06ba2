"""The training loop: `train_step` (one update) and `fit` (epochs, schedule, callbacks).

    itra train --dataset fashion-mnist --model cnn --method itra-c --lam 0.6 --epochs 15 --seed 0 --out runs/

`fit` trains one resolved config (`itra.resolve`) into a run directory. What happens around the steps is a short list
of callbacks (`itra.callbacks`): `DivergenceGuard` (a non-finite loss or metric fails the run),
`CollapseGuard` (collapsed features end it), `LambdaWarmup`, `CompactnessProbe`, `TensorBoard` (with
`config.tensorboard`), `Progress`, and `Recorder` (metrics, checkpoint and summary, always last).
Everything random comes from `config.seed`: a run is the same, bit for bit on the CPU, every time it
is run, and a resumed run ends exactly where an uninterrupted one does.

Under torchrun (`config.world_size` ranks, `itra.distributed`) the same loop runs on every rank: the
objective inside `DistributedDataParallel`, each rank on its slice of every global batch, the loss terms
averaged over ranks before the callbacks see them, a `RunFailed` on any rank raised on all, the test set
evaluated in shards and gathered, and only rank 0 printing and writing the run directory.
"""
from __future__ import annotations

import contextlib

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

from itra import rundir
from itra import checkpoint
from itra.callbacks import (LOG_EVERY, Callback, CallbackStates, CollapseGuard, CompactnessProbe, DivergenceGuard,
                            LambdaWarmup, Progress, RunFailed, TensorBoard)
from itra.checkpoint import NoState, SavedOnCPU, RandomStreams, Stateful
from itra.config import TrainConfig
from itra.resolve import ResolvedConfig, check_second_batch, check_world_size
from itra.device import check_machine, deterministic, resolve_device
from itra.data import PairedLoader, Splits
from itra.distributed import Dist, setup
from itra.data.batches import Batch, epoch_generator
from itra.data.splits import BatchTransform, run_splits
from itra.evaluate import compactness_probe, evaluate_splits
from itra.methods import remedies
from itra.objective import Objective, build_objective
from itra.models import Classifier
from itra.models.layers import exact_pools
from itra.optimizers import OPTIMIZERS, cosine_schedule
from itra.pairing import S2_STATES, samples_per_step
from itra.state import Precision, TrainState
from itra.warmup import warmup_steps
from itra.notes import note
from itra.errors import BadValue

def train_step(objective: Objective | torch.nn.Module, optimizer: torch.optim.Optimizer, first: Batch,
               second: Batch | None, precision: Precision = Precision()) -> dict[str, torch.Tensor]:
    """One update on S1 (and S2 when the objective matches two batches); returns the loss terms, 0-d tensors
    on the device, detached: the step reads nothing back to the host (the loop reads the terms once per
    logging interval). Under mixed precision the forward passes are autocast; the matching loss computes in
    float32. `objective` may be `DistributedDataParallel` around one: one forward per step, as its hooks expect."""
    with torch.autocast(first[0].device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
        terms = objective(first, second)
    optimizer.zero_grad(set_to_none=True)
    if precision.scaler is None:
        terms["loss"].backward()
        optimizer.step()
    else:
        precision.scaler.scale(terms["loss"]).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
    return {name: value.detach() for name, value in terms.items()}


def step_loader(train_set: Dataset, objective: Objective, samples: int, second_batch_size: int | None, seed: int,
                workers: int, dist: Dist = Dist(), device: torch.device = torch.device("cpu")) -> PairedLoader:
    """The batches of each step: S1 of `samples` samples (`pairing.samples_per_step`: 2m with the "split" pairing), and
    S2 (of `second_batch_size`, None: as many) where the objective draws one, in the order `seed` draws; with several
    ranks, this rank's slice of each global batch. `workers` processes load them (the same batches as none), into
    pinned memory when they go to a CUDA `device`."""
    return PairedLoader(train_set, samples, second_batch_size, seed, paired=objective.draws_second_batch,
                        num_workers=workers, pin_memory=device.type == "cuda", rank=dist.rank,
                        world_size=dist.world_size)


def build_optimizer(config: TrainConfig, parameters: Iterable[torch.nn.Parameter], steps: int):
    """The config's optimizer (`itra.optimizers.OPTIMIZERS`: SGD with Nesterov momentum, AdamW, ...) given the
    fields it reads, and a cosine schedule stepped once per optimizer step over the run's `steps` (`fit`: the
    epochs times the step loader's length, `PairedLoader.__len__`)."""
    spec = OPTIMIZERS[config.optimizer]
    optimizer = spec.build(parameters, lr=config.lr, weight_decay=config.weight_decay,
                           **{name: getattr(config, name) for name in spec.fields})
    return optimizer, cosine_schedule(optimizer, steps)


def to_device(batch: Batch, device: torch.device, transform: BatchTransform | None, generator: torch.Generator) -> Batch:
    """The batch on `device`, its inputs augmented by `transform` (images only) with `generator`."""
    inputs, *rest = (tensor.to(device, non_blocking=True) for tensor in batch)
    return (inputs if transform is None else transform(inputs, generator), *rest)


@dataclass
class Recorder(Callback):
    """The run directory: config, a metrics row and a checkpoint after every epoch, the summary at the end.
    The checkpoint is assembled from the parts that own state (`itra.checkpoint`, `checkpoint_parts`): `shared`
    ones, the same on every rank (rank 0's is kept), and each rank's `own`. Rank 0 alone reads and writes the
    directory; the other ranks receive what it read and send it their own parts."""

    run_dir: Path
    shared: dict[str, Stateful]
    own: dict[str, Stateful]
    history: list[dict[str, Any]] = field(default_factory=list)

    def start(self, state: TrainState, resume: bool) -> None:
        """Write the config into the run directory (made by `rundir.writing`, which holds it); with `resume`, restore
        the state of the last checkpoint and keep its epochs' rows."""
        dist = state.dist
        if resume:  # the checkpoint is checked to be this run's and in step with its rows (`rundir.load_checkpoint`)
            saved, rows = dist.on_main(lambda: (rundir.load_checkpoint(self.run_dir, state.config),
                                                rundir.read_metrics(self.run_dir)))
            rundir.restore(self.run_dir, saved, state.config, self.shared, self.own, dist.rank)
            state.epoch, state.elapsed_s = saved["epoch"], saved["elapsed_s"]
            state.step = state.epoch * state.steps_per_epoch
            self.history = rows[:state.epoch]  # a row after the checkpoint's epoch is trained again
        if dist.is_main:
            rundir.write_config(self.run_dir, state.config)
            rundir.rewrite_metrics(self.run_dir, self.history)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        self.history.append(row)
        ranks = state.dist.gather_to_main(checkpoint.rank_state(self.own))  # every rank takes part; rank 0 writes
        if ranks is None:
            return
        rundir.append_metrics(self.run_dir, row)
        progress = {"epoch": row["epoch"], "elapsed_s": state.elapsed_s,
                    "identity": rundir.identity(state.config, self.history)}
        rundir.save_checkpoint(self.run_dir, checkpoint.assemble(progress, self.shared, ranks))

    def end(self, state: TrainState, failure: RunFailed | None = None) -> dict[str, Any]:
        """Write (on rank 0) and return the summary: the last epoch's row, or the failure and the last good row."""
        last = self.history[-1] if self.history else {"epoch": 0}
        status = {"status": "finished"} if failure is None else {"status": failure.status, "reason": str(failure)}
        summary = {"name": state.config.name, **status, **last, **early_stopping(self.history),
                   "train_size": state.train_size, "test_size": state.test_size, "device": str(state.device),
                   "world_size": state.dist.world_size, "identity": rundir.identity(state.config, self.history)}
        if state.dist.is_main:
            rundir.write_summary(self.run_dir, summary)
        return summary


# What an early-stopped run reports: the metrics of its epoch of lowest validation CE (`early_stopping`).
EARLY_STOPPING_FIELDS = ("epoch", "val_cross_entropy", "test_accuracy", "test_cross_entropy", "test_ece", "temperature",
                         "ts_test_accuracy", "ts_test_cross_entropy", "ts_test_ece")


def checkpoint_parts(state: TrainState, hooks: Sequence[Callback]) -> tuple[dict[str, Stateful], dict[str, Stateful]]:
    """What a checkpoint is assembled from: the parts shared by every rank (the model, the regulariser's state
    such as Center loss's centres, optimiser, schedule, loss scaler, the callbacks that keep state), and this
    rank's own (its random streams, `previous`'s kept batch)."""
    objective = state.objective
    shared: dict[str, Stateful] = {
        "model": objective.model, "regularizer": NoState() if objective.regularizer is None else objective.regularizer,
        "optimizer": state.optimizer, "schedule": state.schedule, "scaler": state.precision,
        "callbacks": CallbackStates(hooks)}
    own = {"random": RandomStreams(state.augment, state.device),
           "previous_batch": SavedOnCPU(objective.previous, state.device)}
    return shared, own


def early_stopping(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`{"early_stopping": {...}}`: early stopping on the validation CE as a baseline that costs no training, read
    from the epochs' rows: the first epoch with the lowest `val_cross_entropy` and its test metrics, before and
    after temperature scaling (`EARLY_STOPPING_FIELDS`). Empty without a validation split."""
    rows = [row for row in history if "val_cross_entropy" in row]
    if not rows:
        return {}
    best = min(rows, key=lambda row: row["val_cross_entropy"])  # min keeps the first of equal values
    return {"early_stopping": {name: best[name] for name in EARLY_STOPPING_FIELDS}}


def fit(config: ResolvedConfig, splits: Splits, model: Classifier, run_dir: Path, resume: bool = False,
        progress: bool = True, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train `model` under `config` into `run_dir` (from its checkpoint with `resume`); returns the summary,
    whose `"status"` is "finished" or, when a callback ended the run, "failed" or "collapsed" with the
    `"reason"`. With `config.tensorboard` and no `tensorboard` package installed, it fails before writing anything.
    Under torchrun, every rank calls it (with the same arguments) and gets the same summary. With
    `config.deterministic`, it trains with deterministic kernels (`itra.device.deterministic`) and the adaptive
    pools replaced by their exact fixed-window form (`models.layers.exact_pools`). `config` is a `ResolvedConfig`
    (`itra.resolve.resolve(config)`: the config in effect, its rules checked); any other is refused in one line."""
    if not isinstance(config, ResolvedConfig):
        raise BadValue(f"fit trains the config in effect, but got an unresolved {type(config).__name__}: pass "
                       "itra.resolve.resolve(config)")
    with deterministic(config.deterministic):
        return _fit(config, splits, exact_pools(model) if config.deterministic else model, Path(run_dir), resume,
                    progress, callbacks)


def _fit(config: ResolvedConfig, splits: Splits, model: Classifier, run_dir: Path, resume: bool, progress: bool,
         callbacks: Sequence[Callback]) -> dict[str, Any]:
    dist = setup()
    check_world_size(config, dist)
    # what `runs.run` checks before it loads data, for a caller of `fit` itself
    check_machine(config.device, config.precision, config.compile)
    logger = [TensorBoard(run_dir)] if config.tensorboard else []  # on every rank: the check that it is installed
    device = dist.device(resolve_device(config.device))
    precision = Precision.of(config.precision, device)
    # The global stream (dropout) starts from the seed too; each further rank has its own.
    torch.manual_seed(config.seed if dist.is_main else epoch_generator(config.seed, 0, 0, dist.rank).initial_seed())
    data = run_splits(splits, config.train_subset, config.test_subset, config.label_noise, config.seed, config.val_split)
    check_second_batch(config, len(data.train))  # type: ignore[arg-type]
    objective = build_objective(config, model, splits.num_classes).to(device)
    if config.compile:
        objective.compile_extractor()
    loader = step_loader(data.train, objective, samples_per_step(config.pairing, config.batch_size),
                         config.second_batch_size, config.seed, config.workers, dist, device)
    total_steps = len(loader) * config.epochs
    optimizer, schedule = build_optimizer(config, objective.parameters(), total_steps)
    state = TrainState(config, objective, optimizer, schedule, epoch_generator(config.seed, 0, 3, dist.rank), device,
                       precision, len(loader), train_size=len(data.train), test_size=len(data.test),  # type: ignore[arg-type]
                       dist=dist, step_module=dist.wrap(objective, device))
    probe = compactness_probe(data.train, epoch_generator(config.seed, 0, stream=5))  # two fixed training batches
    warmup = warmup_steps(config.lam_warmup, config.lam_warmup_ratio, total_steps)
    progress = progress and dist.is_main
    hooks = [DivergenceGuard(), CollapseGuard(probe[0]), CompactnessProbe(probe, config.compactness_every),
             *([LambdaWarmup(config.lam, warmup)] if warmup else []), *callbacks, *(logger if dist.is_main else []),
             *([Progress()] if progress else [])]
    recorder = Recorder(run_dir, *checkpoint_parts(state, hooks))
    held = contextlib.ExitStack()  # the run directory, held by its one writer, rank 0; a refusal there is raised on
    dist.on_main(lambda: held.enter_context(rundir.writing(run_dir, resume)))  # every rank, not left to hang the rest
    with held:
        recorder.start(state, resume)
        if dist.is_main and warmup > total_steps and config.lam:  # a warning: printed with --quiet too
            note(f"--lam-warmup {warmup} is longer than this run's {total_steps} steps, so λ ends at "
                 f"{config.lam * total_steps / warmup:.3g} instead of {config.lam:g}")
        if dist.is_main and config.workers and isinstance(data.train, TensorDataset):
            note(f"--workers {config.workers}: {splits.name} is held in memory and sliced a batch at a time; no "
                 "worker process is started")
        try:
            while state.epoch < config.epochs:
                run_epoch(state, loader, data, hooks, recorder)
        except RunFailed as failure:
            return recorder.end(state, failure)
        except RuntimeError as error:  # torch gave up (e.g. an lr that overflows float32): the run failed, a sweep goes on
            reason = (f"{type(error).__name__} in epoch {state.epoch + 1}: {error}; "
                      f"{remedies(config.method, config.match, 'diverged')}")
            return recorder.end(state, RunFailed(reason))
        finally:
            for hook in hooks:
                hook.on_run_end(state)
        return recorder.end(state)


def call_hooks(state: TrainState, hooks: Sequence[Callback], event: str, *args: Any) -> None:
    """`hook.<event>(state, *args)` for each hook in turn; a `RunFailed` from any of them, on any rank, is raised
    on every rank (the lowest failing rank's), so that all ranks end the run together."""
    failure = None
    try:
        for hook in hooks:
            getattr(hook, event)(state, *args)
    except RunFailed as error:
        failure = (str(error), error.status)
    failure = state.dist.first(failure)
    if failure is not None:
        raise RunFailed(*failure)


def read_terms(pending: Sequence[dict[str, torch.Tensor]], dist: Dist = Dist()) -> list[dict[str, float]]:
    """The loss terms of the `pending` steps as numbers, each averaged over ranks: one copy from the device
    (and one all-reduce), however many steps."""
    names = list(pending[0])
    values = torch.stack([torch.stack([terms[name].float() for name in names]) for terms in pending])  # (steps, terms)
    return [dict(zip(names, row)) for row in dist.mean(values.to("cpu", torch.float64)).tolist()]


def run_epoch(state: TrainState, loader: PairedLoader, data: Splits, hooks: Sequence[Callback],
              recorder: Recorder) -> None:
    """One pass over the training set, then the test metrics; every hook sees each step and the row, which
    the recorder writes last."""
    started = time.perf_counter()
    state.objective.train()
    loader.set_epoch(state.epoch)
    call_hooks(state, hooks, "on_epoch_start")
    step_module = state.objective if state.step_module is None else state.step_module
    sums: dict[str, float] = {}
    pending: list[dict[str, torch.Tensor]] = []  # the terms of the steps since the last read, on the device

    def log() -> None:
        steps = read_terms(pending, state.dist)
        pending.clear()
        for terms in steps:
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
        call_hooks(state, hooks, "on_log", steps)

    for pair in loader:
        first, second = pair if loader.paired else (pair, None)
        first = to_device(first, state.device, data.train_transform, state.augment)
        if second is not None:  # augmented after S1, with the generator S2's state gives it (`itra.pairing.S2_STATES`)
            augment = S2_STATES[state.objective.s2_state].augment(state.augment)
            second = to_device(second, state.device, data.train_transform, augment)
        terms = train_step(step_module, state.optimizer, first, second, state.precision)
        state.schedule.step()
        state.step += 1
        pending.append(terms)
        call_hooks(state, hooks, "on_step", terms)
        if len(pending) == LOG_EVERY:
            log()
    if pending:
        log()
    state.dist.sync_buffers(state.objective)  # rank 0's batch-norm statistics everywhere: one model is evaluated
    test = evaluate_splits(state.objective, data, state.device, state.dist)
    state.elapsed_s += time.perf_counter() - started
    row = {"epoch": state.epoch + 1, **{f"train_{name}": total / len(loader) for name, total in sums.items()}, **test,
           "lr": state.schedule.get_last_lr()[0], "elapsed_s": state.elapsed_s}
    call_hooks(state, hooks, "on_epoch_end", row)
    recorder.on_epoch_end(state, row)
    state.epoch += 1
