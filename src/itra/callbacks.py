"""What happens around the training steps: callbacks of `train.fit`, in the order it calls them.

`DivergenceGuard` and `CollapseGuard` end a run that cannot recover (with status "failed" or
"collapsed" and a reason saying what to try), `LambdaWarmup` ramps λ, `CompactnessProbe` logs the
paper's compactness, `TensorBoard` writes each epoch's row as event files (`--tensorboard`),
`Progress` draws the bar; `train.Recorder` writes the run directory, last.

A step's loss terms stay on the device (`on_step` gets tensors: reading one is a device-to-host sync);
the loop reads them once per logging interval (`LOG_EVERY` steps, and at the epoch's end) and hands
their values to `on_log`. A callback that keeps state across epochs says so with `state_dict` and
`load_state_dict`; the checkpoint keeps it (`CallbackStates`), so a resumed run goes on as if it had not
stopped.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from itra.collapse import COLLAPSE_THRESHOLD, feature_spread
from itra.data.batches import Batch
from itra.evaluate import probe_compactness
from itra.methods import METHODS, remedies
from itra.state import TrainState
from itra.warmup import lam_at
from itra.errors import MissingPackage


class RunFailed(Exception):
    """Raised by a callback to end a run; the message says what happened and what to try, `status`
    is what the run directory records ("failed": diverged; "collapsed": features collapsed)."""

    def __init__(self, reason: str, status: str = "failed") -> None:
        super().__init__(reason)
        self.status = status


LOG_EVERY = 20  # steps between two reads of the loss terms from the device (`Callback.on_log`)


class Callback:
    """Hooks of the loop; raise `RunFailed` from any of them to end the run."""

    def on_epoch_start(self, state: TrainState) -> None: ...

    def on_step(self, state: TrainState, terms: dict[str, torch.Tensor]) -> None:
        """After each step; `terms` are 0-d tensors on the device (reading one waits for the device)."""

    def on_log(self, state: TrainState, steps: list[dict[str, float]]) -> None:
        """Every `LOG_EVERY` steps and at the epoch's end: the loss terms of each step since the last call,
        oldest first (the last one is step `state.step`)."""

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None: ...

    def on_run_end(self, state: TrainState) -> None:
        """After the last epoch, or when the run stopped (failed, collapsed, interrupted): release what is held."""

    def state_dict(self) -> dict[str, Any]:
        """What this callback keeps across epochs, for the checkpoint (nothing by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CallbackStates:
    """The state of every callback that keeps one, by class name (`Name#1` for a second of one class): the
    checkpoint's "callbacks" part."""

    def __init__(self, hooks: Sequence[Callback]) -> None:
        seen: Counter[str] = Counter()
        self.hooks: dict[str, Callback] = {}
        for hook in hooks:
            name = type(hook).__qualname__
            self.hooks[name + (f"#{seen[name]}" if seen[name] else "")] = hook
            seen[name] += 1

    def state_dict(self) -> dict[str, Any]:
        return {name: state for name, hook in self.hooks.items() if (state := hook.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, hook in self.hooks.items():
            if name in state:
                hook.load_state_dict(state[name])


class DivergenceGuard(Callback):
    """Fails the run at the first non-finite loss term (seen at the next read, `on_log`) or test metric."""

    def on_log(self, state: TrainState, steps: list[dict[str, float]]) -> None:
        for step, terms in enumerate(steps, state.step - len(steps) + 1):
            if not all(math.isfinite(value) for value in terms.values()):
                shown = ", ".join(f"{name} {value:.4g}" for name, value in terms.items())
                raise RunFailed(f"diverged at step {step} (epoch {state.epoch + 1}): {shown}; "
                                f"{remedies(state.config.method, state.config.match, 'diverged')}")

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        bad = [name for name, value in row.items() if isinstance(value, float) and not math.isfinite(value)]
        if bad:
            raise RunFailed(f"diverged in epoch {state.epoch + 1}: {', '.join(bad)} not finite; "
                            f"{remedies(state.config.method, state.config.match, 'diverged')}")


class CompactnessProbe(Callback):
    """Every `every` steps (0: never), `metrics.compactness` of two fixed training batches; a row's
    `compactness` holds the epoch's [step, value] pairs."""

    def __init__(self, probe: tuple[Batch, Batch], every: int) -> None:
        self.probe, self.every = probe, every
        self.log: list[list[float]] = []

    def on_step(self, state: TrainState, terms: dict[str, torch.Tensor]) -> None:
        if self.every and state.step % self.every == 0:
            self.log.append([state.step, probe_compactness(state.objective, self.probe, state.device)])

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        row["compactness"], self.log = self.log, []


class Progress(Callback):
    """A progress bar per epoch with the running mean of each term, and one line per finished epoch."""

    def on_epoch_start(self, state: TrainState) -> None:
        config = state.config
        self.sums: dict[str, float] = {}
        self.bar = tqdm(total=state.steps_per_epoch, desc=f"{config.name} epoch {state.epoch + 1}/{config.epochs}",
                        leave=False, dynamic_ncols=True)

    def on_log(self, state: TrainState, steps: list[dict[str, float]]) -> None:
        for terms in steps:
            for name, value in terms.items():
                self.sums[name] = self.sums.get(name, 0.0) + value
        self.bar.update(len(steps))
        self.bar.set_postfix({name: f"{value / self.bar.n:.4f}" for name, value in self.sums.items()})

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        self.bar.close()
        tqdm.write(f"{state.config.name} epoch {row['epoch']}/{state.config.epochs}: train CE {row['train_ce']:.4f} | "
                   f"test acc {row['test_accuracy']:.2f}% CE {row['test_cross_entropy']:.4f} ECE {row['test_ece']:.4f} | "
                   f"{row['elapsed_s']:.0f}s")


class TensorBoard(Callback):
    """Each epoch's metrics row as TensorBoard scalars in `log_dir`, under the names of `metrics.jsonl`
    and at step = the epoch (1, 2, ...): the loss terms (`train_loss`, `train_ce`, `train_match` or
    `train_center`), `test_accuracy`, `test_cross_entropy`, `test_ece`, `lr` and `elapsed_s`.
    `tensorboard --logdir runs/` then shows every run under its name. The per-step compactness stays
    in `metrics.jsonl`.

    Raises `ModuleNotFoundError` (one line: what to install) when `tensorboard` is not installed, so a
    run that asks for it fails before it trains.
    """

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ModuleNotFoundError:
            raise MissingPackage("--tensorboard writes through torch.utils.tensorboard, which needs the "
                                      "tensorboard package: pip install tensorboard") from None
        self.log_dir = Path(log_dir)
        self.make_writer = SummaryWriter
        self.writer: Any = None  # opened at the first row: a run that stops before it trains leaves no event file

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self.make_writer(str(self.log_dir))
        for name, value in row.items():
            if name != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(name, value, row["epoch"])
        self.writer.flush()

    def on_run_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class CollapseGuard(Callback):
    """Ends the run as "collapsed" when the features of a fixed training batch (eval mode, every
    `every` steps) have lost their spread (`collapse.feature_spread` below `threshold`) at `patience`
    checks in a row: every sample has (nearly) the same feature vector, and it does not come back. The end of
    the last epoch is checked too, once, whatever the strikes: a run too short for `patience` checks (fewer than
    `every * patience` steps) that ends with collapsed features is collapsed, not finished at chance accuracy."""

    def __init__(self, probe: Batch, every: int = 10, patience: int = 3, threshold: float = COLLAPSE_THRESHOLD,
                 size: int = 64) -> None:
        self.probe = tuple(tensor[:size] for tensor in probe)  # a small batch: the check costs ~2 % of a step
        self.every, self.patience, self.threshold = every, patience, threshold
        self.strikes = 0

    def on_step(self, state: TrainState, terms: dict[str, torch.Tensor]) -> None:
        if state.step % self.every:
            return
        spread = self._spread(state)
        self.strikes = self.strikes + 1 if spread < self.threshold else 0
        if self.strikes >= self.patience:
            self._fail(state, spread)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        if state.epoch + 1 < state.config.epochs:
            return
        spread = self._spread(state)
        if spread < self.threshold:
            self._fail(state, spread)

    def _spread(self, state: TrainState) -> float:
        """`feature_spread` of the probe's features, the model in eval mode (and back in training mode after)."""
        *inputs, _ = self.probe
        state.objective.eval()
        with torch.no_grad():
            features, _ = state.objective.embed(*(x.to(state.device) for x in inputs))
        state.objective.train()
        return float(feature_spread(features))

    def _fail(self, state: TrainState, spread: float) -> None:
        config = state.config
        spec = METHODS[config.method]
        setting = ", ".join(f"{name} {getattr(config, name)}" for name in spec.fields if name != "second_batch_size")
        raise RunFailed(
            f"features collapsed at step {state.step} (epoch {state.epoch + 1}): every sample has the same "
            f"feature vector (spread {spread:.1e}); {config.method} with {setting or 'its defaults'}; "
            f"{remedies(config.method, config.match, 'collapsed')}", status="collapsed")

    def state_dict(self) -> dict[str, Any]:
        return {"strikes": self.strikes}  # a collapse that began before a resume counts on after it

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strikes = state["strikes"]


class LambdaWarmup(Callback):
    """λ rises linearly from 0 to the config's value over the first `steps` steps, then stays (`itra.warmup.lam_at`)."""

    def __init__(self, lam: float, steps: int) -> None:
        self.lam, self.steps = lam, steps

    def _set(self, state: TrainState) -> None:  # the λ of step state.step + 1
        state.objective.lam = lam_at(state.step + 1, self.lam, self.steps)

    def on_epoch_start(self, state: TrainState) -> None:
        self._set(state)

    def on_step(self, state: TrainState, terms: dict[str, torch.Tensor]) -> None:
        self._set(state)
