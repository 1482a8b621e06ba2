"""Side-by-side timing: every step runs once per round, in turn, and the warm-up round is dropped."""
import torch

from itra.experiments.timing import time_side_by_side
from tests.helpers import resolved


def test_each_step_runs_in_turn_and_the_medians_come_back():
    calls = []
    seconds = time_side_by_side({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                                rounds=3, device=torch.device("cpu"))
    assert calls == [(name, i) for i in range(4) for name in ("a", "b")]
    assert set(seconds) == {"a", "b"} and all(value >= 0 for value in seconds.values())


def test_each_config_is_timed_on_its_own_shape_of_batches(monkeypatch):
    import itra.experiments.timing as timing
    from itra.data import Splits
    from itra.models.registry import build_image_model
    from itra.pairing import ONE_PROCESS

    data = torch.utils.data.TensorDataset(torch.randn(40, 1, 8, 8), torch.arange(40) % 3)
    splits = Splits("toy", data, data, 3, ("a", "b", "c"))
    seen = {}
    monkeypatch.setattr(timing, "train_step", lambda objective, optimizer, first, second, precision: seen.setdefault(
        (objective.regularizer is not None, objective.pairing), (len(first[-1]), None if second is None else len(second[-1]))))
    configs = [resolved(method="ce", batch_size=8, device="cpu"),
               *(resolved(pairing=pairing, batch_size=8, device="cpu") for pairing in ONE_PROCESS)]
    seconds = timing.time_steps(configs, splits, lambda config: build_image_model("cnn", 3, 1), steps=2)
    assert set(seconds) == {config.name for config in configs}
    assert seen == {(False, "independent"): (8, None), (True, "independent"): (8, 8), (True, "detached"): (8, 8),
                    (True, "previous"): (8, None), (True, "split"): (16, None)}  # S2 drawn only where it is used
