"""The λ warm-up (`itra.warmup`): W fixed or a fraction of the run, λ_t = λ · min(1, t / W), one formula for
`itra train`, `ITRATrainer` and `ITRAModule` (their tests check that each calls it with its run's steps)."""
import math
import re

import pytest

from itra.warmup import DEFAULT_RATIO, check_warmup, lam_at, warmup_steps


@pytest.mark.parametrize("total, full_at", [(100, 10), (10_000, 1_000), (188, 19), (5, 1)])
def test_the_default_ratio_reaches_full_lambda_at_a_tenth_of_any_run(total, full_at):
    warmup = warmup_steps(None, DEFAULT_RATIO, total)
    assert warmup == full_at
    schedule = [lam_at(step, 0.6, warmup) for step in range(1, total + 1)]
    assert schedule[full_at - 1] == 0.6 and all(lam < 0.6 for lam in schedule[:full_at - 1])
    assert schedule[full_at - 1:] == [0.6] * (total - full_at + 1)
    assert schedule[:full_at] == pytest.approx([0.6 * step / full_at for step in range(1, full_at + 1)])  # linear from 0


def test_fixed_steps_win_over_the_ratio_and_zero_is_no_ramp():
    assert warmup_steps(300, DEFAULT_RATIO, 100) == 300  # a ramp longer than the run: λ ends at 0.6 * 100 / 300
    assert lam_at(100, 0.6, 300) == pytest.approx(0.2)
    assert warmup_steps(0, DEFAULT_RATIO, 100) == 0 and lam_at(1, 0.6, 0) == 0.6
    assert warmup_steps(None, None, 100) == 0  # nothing to ramp (a method without a warm-up)
    assert warmup_steps(40, None, math.inf) == 40
    with pytest.raises(ValueError, match="needs a run of known length"):
        warmup_steps(None, 0.1, math.inf)


@pytest.mark.parametrize("steps, ratio, message", [
    (2.5, 0.1, "Expected `lam_warmup` to be an integer >= 0 (steps), but got 2.5"),
    (-1, 0.1, "Expected `lam_warmup` to be an integer >= 0 (steps), but got -1"),
    (True, 0.1, "Expected `lam_warmup` to be an integer >= 0 (steps), but got True"),
    (None, 0, "Expected `lam_warmup_ratio` to be a number in (0, 1] (of the run's steps), but got 0"),
    (None, 1.5, "Expected `lam_warmup_ratio` to be a number in (0, 1] (of the run's steps), but got 1.5"),
    (None, "0.1", "Expected `lam_warmup_ratio` to be a number in (0, 1] (of the run's steps), but got '0.1'"),
])
def test_bad_warmups_name_themselves(steps, ratio, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_warmup(steps, ratio)
    check_warmup(None, 1.0)
    check_warmup(0, 0.5)
