"""The λ warm-up: λ rises linearly from 0 to its value over the first W optimizer steps of a run, then stays.

    λ_t = λ · min(1, t / W) at the t-th optimizer step (t = 1, 2, ...);  W = 0: λ from the first step (the paper).

W is a fixed number of steps when one is given, else a fraction of the run's T optimizer steps, ⌈ratio · T⌉
(as `warmup_ratio` in Hugging Face `TrainingArguments`), so that a run of any length reaches full λ early: with
the default ratio 0.1 a 100-step run at step 10, a 10,000-step run at step 1,000. `itra train` (`callbacks.LambdaWarmup`),
`ITRATrainer` (T = the Trainer's `max_steps`) and `ITRAModule` (T = Lightning's `estimated_stepping_batches`) all
compute their λ here.
"""
from __future__ import annotations

import math

from itra.checks import check_number
from itra.errors import BadValue

DEFAULT_RATIO = 0.1  # of the run's optimizer steps


def check_warmup(steps: object, ratio: object) -> None:
    """A warm-up given to a library entry point (`ITRATrainer`, `ITRAModule`): steps an integer >= 0 or None, the
    ratio a number in (0, 1]; `BadValue` naming the bad one."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise BadValue(f"Expected `lam_warmup` to be an integer >= 0 (steps), but got {steps!r}")
    check_number("lam_warmup_ratio", ratio, lambda v: 0 < v <= 1, "a number in (0, 1] (of the run's steps)")


def warmup_steps(steps: int | None, ratio: float | None, total_steps: float) -> int:
    """W, the steps of the ramp: `steps` when given (0: none), else ⌈`ratio` · `total_steps`⌉; 0 with neither.

    Args:
        steps: a fixed ramp, in optimizer steps, or None.
        ratio: the ramp as a fraction in (0, 1] of the run's optimizer steps, read when `steps` is None.
        total_steps: T, the run's optimizer steps (`math.inf` for a run without an end).

    Raises:
        BadValue: a ratio of a run without an end.

    Example:
        >>> warmup_steps(None, 0.1, 100), warmup_steps(None, 0.1, 10_000), warmup_steps(300, None, 100)
        (10, 1000, 300)
    """
    if steps is not None or ratio is None:
        return steps or 0
    if not math.isfinite(total_steps):
        raise BadValue(f"A λ warm-up of {ratio:g} of the run needs a run of known length (max_steps or max_epochs), "
                       "but this one has none: give the warm-up in steps (lam_warmup)")
    return math.ceil(ratio * total_steps)


def lam_at(step: int, lam: float, warmup: int) -> float:
    """λ_t = λ · min(1, t / W) at the t-th optimizer step (`step`, 1, 2, ...), W = `warmup` (0: λ throughout).

    Example:
        >>> [lam_at(t, 0.6, 4) for t in (1, 2, 4, 5)], lam_at(1, 0.6, 0)
        ([0.15, 0.3, 0.6, 0.6], 0.6)
    """
    return lam if warmup == 0 else lam * min(1.0, step / warmup)
