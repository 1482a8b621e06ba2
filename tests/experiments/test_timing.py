"""Side-by-side timing: every step runs once per round, in turn, and the warm-up round is dropped."""
import torch

from itra.experiments.timing import time_side_by_side


def test_each_step_runs_in_turn_and_the_medians_come_back():
    calls = []
    seconds = time_side_by_side({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                                rounds=3, device=torch.device("cpu"))
    assert calls == [(name, i) for i in range(4) for name in ("a", "b")]
    assert set(seconds) == {"a", "b"} and all(value >= 0 for value in seconds.values())
