"""The λ warm-up (`itra.warmup`): W fixed or a fraction of the run, λ_t = λ · min(1, t / W), one formula for
`itra train`, `ITRATrainer` and `ITRAModule` (their tests check that each calls it with its run's steps; the last test
here, that each reaches full λ at a tenth of a 100- and a 10,000-step run by default)."""
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


# ---------------------------------------------------------------- the three entry points, at 100 and 10,000 steps
LAM = 0.7


class _Resolved(Exception):
    """Raised by the spy below once `itra train` has resolved its warm-up, so a 10,000-step run does not train."""


def _itra_train(total: int, tmp_path, monkeypatch) -> int:
    """The warm-up `itra train` resolves for a run of `total` optimizer steps (digits: 128 images, 4 steps an
    epoch), read where it hands it to `LambdaWarmup`."""
    import itra.train
    from itra.experiments.runs import run
    from tests.helpers import resolved

    def spy(lam, steps):
        assert lam == LAM
        raise _Resolved(steps)

    monkeypatch.setattr(itra.train, "LambdaWarmup", spy)
    config = resolved(dataset="digits", epochs=total // 4, batch_size=32, train_subset=128, test_subset=32,
                      device="cpu", lam=LAM)
    with pytest.raises(_Resolved) as resolved_warmup:
        run(config, tmp_path, progress=False)
    return resolved_warmup.value.args[0]


def _itra_trainer(total: int, tmp_path, monkeypatch) -> int:
    """The warm-up `ITRATrainer` uses in a run of `total` optimizer steps (HF's `state.max_steps`), read off its λ."""
    pytest.importorskip("transformers")
    from tests.integrations.test_transformers import itra_trainer, tiny_bert

    trainer = itra_trainer(tiny_bert(), tmp_path, steps=total, lam=LAM, lam_warmup=None)
    trainer.state.max_steps = total  # what `Trainer.train` sets from `max_steps` before the first step
    return _full_from(trainer.lam_at, total)


def _itra_module(total: int, tmp_path, monkeypatch) -> int:
    """The warm-up `ITRAModule` uses in a fit of `total` optimizer steps (Lightning's `estimated_stepping_batches`)."""
    pytest.importorskip("lightning")
    from types import SimpleNamespace

    from itra.integrations.lightning import ITRAModule
    from tests.integrations.test_lightning import sgd, tiny_cnn

    module = ITRAModule(tiny_cnn(), lam=LAM, optimizer=sgd)
    monkeypatch.setattr(type(module), "trainer", SimpleNamespace(estimated_stepping_batches=total))
    module.on_train_start()
    return _full_from(module.lam_at, total)


def _full_from(schedule, total: int) -> int:
    """The warm-up W of a λ schedule over steps 1..total: λ_t = λ t / W up to W, then λ (checked at every step)."""
    values = [schedule(step) for step in range(1, total + 1)]
    full_at = values.index(LAM) + 1
    assert values == [lam_at(step, LAM, full_at) for step in range(1, total + 1)]
    return full_at


@pytest.mark.parametrize("entry", [_itra_train, _itra_trainer, _itra_module], ids=["itra-train", "ITRATrainer",
                                                                                    "ITRAModule"])
@pytest.mark.parametrize("total", [100, 10_000])
def test_each_entry_point_reaches_full_lambda_at_a_tenth_of_its_run_by_default(total, entry, tmp_path, monkeypatch):
    assert entry(total, tmp_path, monkeypatch) == warmup_steps(None, DEFAULT_RATIO, total) == total // 10
