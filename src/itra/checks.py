"""Input checks of the public functions and of the batches a user's data gives itra's steps, each a ValueError
that names the bad value.

They read values back from the device (a sync per call), so the losses take `validate_args=False`
in the training loop's hot path, where the inputs are known to be well formed.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from itra.errors import BadValue

# A seed is given to torch (`torch.manual_seed`, `torch.Generator.manual_seed`: [-2**63, 2**64)) and to numpy
# (`np.random.SeedSequence`: [0, inf)): it must be in both.
SEED_RANGE = (0, 2**64)
# A count (epochs, batch size, subset size, steps) becomes a torch int64 (an index, a step counter): it must fit one.
COUNT_LIMIT = 2**63


def check_count(name: str, value: object, minimum: int = 1, hint: str = "") -> None:
    """An integer (not a bool) in [`minimum`, 2**63): what a size, a number of steps or epochs can be; `hint` says
    what to do instead (e.g. " (leave it unset for the whole set)")."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"Expected `{name}` to be an integer, but got {value!r}")
    if value < minimum:
        bound = "larger than 0" if minimum == 1 else f">= {minimum}"
        raise BadValue(f"Expected `{name}` to be an integer {bound}, but got {value}{hint}")
    if value >= COUNT_LIMIT:
        raise BadValue(f"Expected `{name}` to be an integer below 2**63 (a torch int64), but got {value}")


def check_choice(name: str, value: object, allowed: Iterable[str]) -> None:
    """`value` one of `allowed` (a tuple of choices, or a registry's names): "Expected `exits` in last, shared,
    separate, but got 'all'"."""
    if value not in allowed:
        raise BadValue(f"Expected `{name}` in {', '.join(allowed)}, but got {value!r}")


def check_number(name: str, value: object, within: Callable[[float], bool], expected: str) -> None:
    """A real number (an int or float, not a bool) for which `within` holds, else one line: "Expected `name` to be
    `expected`, but got value" (`expected`: e.g. "a finite number > 0"; NaN fails any comparison `within` makes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not within(value):
        raise BadValue(f"Expected `{name}` to be {expected}, but got {value!r}")


def check_map_dataset(name: str, dataset: object, user: str) -> None:
    """A map-style dataset with a length, which `user` (e.g. "PairedLoader") draws S1 and S2 from by index; an
    iterable-style dataset, or anything without `__getitem__` and `__len__`, is refused naming `name`."""
    if isinstance(dataset, torch.utils.data.IterableDataset) or not (
            hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise BadValue(f"{user} draws S1 and S2 by index: it needs a map-style {name} with a length, but got "
                       f"{type(dataset).__name__}")


def check_flag(name: str, value: object) -> None:
    """A bool: anything else (the string "no", None, 0) is refused, not read as true or false by its truth value."""
    if not isinstance(value, bool):
        raise BadValue(f"Expected `{name}` to be True or False, but got {value!r}")


def check_seed(name: str, value: object) -> None:
    """An integer (not a bool) in `SEED_RANGE`, which both torch and numpy accept."""
    low, high = SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise BadValue(f"Expected `{name}` to be an integer in [0, 2**64) (what torch and numpy take as a seed), "
                       f"but got {value!r}")


def check_values_readable(name: str, t: torch.Tensor) -> None:
    """A dense tensor whose values exist: not sparse or another layout (itra's operations take strided tensors), not on
    the meta device (a shape without values, which no check or loss can read)."""
    if t.layout != torch.strided:
        raise BadValue(f"Expected `{name}` to be a dense tensor, but got layout {t.layout}: pass `{name}.to_dense()`")
    if t.is_meta:
        raise BadValue(f"Expected `{name}` to hold values, but it is on the meta device (a shape only): pass a tensor "
                       "on the CPU or a GPU")


def check_features(name: str, h: torch.Tensor) -> None:
    """A finite, floating-point (N, D) dense tensor with N, D >= 1 (`check_values_readable`)."""
    if not isinstance(h, torch.Tensor):
        raise BadValue(f"Expected `{name}` to be a torch.Tensor, but got {type(h).__name__}")
    check_values_readable(name, h)
    if h.ndim != 2:
        raise BadValue(f"Expected `{name}` to be 2-D (num_samples, feature_dim), but got shape {tuple(h.shape)}")
    if h.numel() == 0:
        raise BadValue(f"Expected `{name}` to hold at least one sample of at least one feature, but got shape "
                       f"{tuple(h.shape)}")
    if not h.is_floating_point():
        raise BadValue(f"Expected `{name}` to be a floating-point tensor, but got dtype {h.dtype}")
    if not torch.isfinite(h).all():
        raise BadValue(f"Expected `{name}` to be finite, but it holds NaN or inf values")


def check_pair(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str]) -> None:
    """Two feature batches (n, D) and (m, D) of one dtype and device."""
    check_features(names[0], x)
    check_features(names[1], y)
    if x.shape[1] != y.shape[1]:
        raise BadValue(
            f"Expected `{names[0]}` and `{names[1]}` to have the same feature dim, but got "
            f"{x.shape[1]} and {y.shape[1]}"
        )
    if x.dtype != y.dtype or x.device != y.device:
        raise BadValue(
            f"Expected `{names[0]}` and `{names[1]}` on the same dtype and device, but got "
            f"{x.dtype}/{x.device} and {y.dtype}/{y.device}"
        )


def check_labels(name: str, y: torch.Tensor, features: torch.Tensor, num_classes: int, read_values: bool = True
                 ) -> None:
    """Integer class indices (N,) in [0, num_classes), one per row of `features` (any tensor of N rows); a bool tensor
    (a mask) is not. The range is a read back from the device, made only with `read_values`."""
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        shape = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise BadValue(f"Expected `{name}` to be a 1-D integer tensor of class indices, but got {shape}")
    check_values_readable(name, y)
    if y.shape[0] != features.shape[0]:
        raise BadValue(
            f"Expected one label per feature row, but `{name}` has {y.shape[0]} labels for {features.shape[0]} rows"
        )
    if not read_values or y.numel() == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise BadValue(f"Expected `{name}` in [0, {num_classes}), but got the label {bad}")


def check_batch(name: str, batch: object, num_classes: int, read_values: bool) -> None:
    """A batch as itra's steps take it from a user's data (Lightning's, Hugging Face's): a tuple or list
    `(*inputs, labels)` of one or more tensor inputs of N rows each and then their labels, N class indices
    (`check_labels`; their range only with `read_values`, a read back from the device: `reads_labels`)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        shape = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
        raise BadValue(f"Expected {name} to be a batch (*inputs, labels), e.g. (x, y) from a dataset of (x, y) items, "
                       f"but got {shape}: give the dataset such items, or a collate_fn that makes such batches")
    *inputs, labels = batch
    for index, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise BadValue(f"Expected the inputs of {name} (*inputs, labels) to be tensors, but input {index} is a "
                           f"{type(x).__name__}")
        if x.ndim == 0 or x.shape[0] != inputs[0].shape[0]:
            raise BadValue(f"Expected the inputs of {name} to be tensors of one row per sample, but got shapes "
                           f"{', '.join(str(tuple(x.shape)) for x in inputs)}")
    check_labels(f"{name}'s labels", labels, inputs[0], num_classes, read_values)


def reads_labels(step: int, device: torch.device) -> bool:
    """Whether a step checks its labels' range: on the CPU, where a read is free, every step; elsewhere the first of
    a run or pass only (`step` 0), since each read is a sync."""
    return step == 0 or device.type == "cpu"


def check_bandwidth(bandwidth: object, modes: tuple[str, ...]) -> None:
    """A bandwidth is one of `modes` (`itra.mmd.BANDWIDTH_MODES`) or a number > 0; anything else,
    None included, is a ValueError naming it."""
    if isinstance(bandwidth, str) and bandwidth in modes:
        return
    if isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and 0 < bandwidth < math.inf:
        return
    names = ", ".join(f'"{mode}"' for mode in modes)
    raise BadValue(f"Expected `bandwidth` to be {names} or a finite float > 0, but got {bandwidth!r}")
