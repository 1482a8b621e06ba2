"""Callbacks of the loop: the collapse guard stops a run made to collapse, λ warm-up, the probe."""
import json
from types import SimpleNamespace

import pytest
import torch

from itra.callbacks import CollapseGuard, LambdaWarmup, RunFailed
from itra.cli import main
from itra.config import TrainConfig
from itra.methods import build_objective
from itra.models.registry import build_image_model
from tests.helpers import needs_fmnist



def state_with(objective, config, step=0):
    return SimpleNamespace(objective=objective, config=config, step=step, epoch=0, device=torch.device("cpu"))


def test_the_guard_waits_for_patience_then_names_step_lambda_and_variant():
    config = TrainConfig(method="itra-c", lam=3.0, bandwidth="class")
    model = build_image_model("cnn", 10, 1)
    objective = build_objective(config, model, 10)
    torch.nn.init.zeros_(model.extractor[-2].weight)  # the last linear layer: every feature 0 after its ReLU
    torch.nn.init.zeros_(model.extractor[-2].bias)
    guard = CollapseGuard((torch.randn(32, 1, 28, 28), torch.zeros(32, dtype=torch.long)), every=2, patience=3)
    for step in range(1, 6):  # checks at steps 2 and 4: two strikes, not yet three
        guard.on_step(state_with(objective, config, step), {})
    assert objective.training
    with pytest.raises(RunFailed) as failure:
        guard.on_step(state_with(objective, config, 6), {})
    message = str(failure.value)
    assert failure.value.status == "collapsed" and "collapsed at step 6" in message
    assert "lam 3.0" in message and "bandwidth class" in message and "try a lower --lam" in message


def test_a_healthy_model_is_never_stopped():
    config = TrainConfig(method="itra-c")
    objective = build_objective(config, build_image_model("cnn", 10, 1), 10)
    guard = CollapseGuard((torch.randn(64, 1, 28, 28), torch.zeros(64, dtype=torch.long)), every=1, patience=1)
    for step in range(1, 4):
        guard.on_step(state_with(objective, config, step), {})


def test_lambda_warms_up_linearly_and_resumes_where_it_was():
    objective = SimpleNamespace(lam=0.6)
    warmup = LambdaWarmup(0.6, steps=4)
    seen = []
    warmup.on_epoch_start(state_with(objective, None, 0))
    for step in range(1, 7):
        seen.append(objective.lam)  # the λ step `step` trains with
        warmup.on_step(state_with(objective, None, step), {})
    assert seen == pytest.approx([0.15, 0.3, 0.45, 0.6, 0.6, 0.6])
    warmup.on_epoch_start(state_with(objective, None, 2))  # a resumed run after 2 steps
    assert objective.lam == pytest.approx(0.45)


@needs_fmnist
def test_a_run_made_to_collapse_stops_with_its_status_and_one_line(tmp_path, capsys):
    flags = ["train", "--method", "itra-c", "--lam", "20", "--batch-size", "32", "--train-subset", "1024",
             "--test-subset", "200", "--epochs", "2", "--out", str(tmp_path), "--quiet", "--lam-warmup", "0"]
    assert main(flags) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "collapsed: features collapsed at step" in err and "lam 20.0" in err
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "collapsed" and "try a lower --lam" in summary["reason"]
    sweep = ["sweep", "--method", "itra-c", "--lam", "0.5,20", *flags[5:], "--seeds", "1"]
    assert main(sweep) == 1  # the collapsed run is counted apart, the other one averaged
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fashion-mnist")]
    assert any("| 0 (+1 collapsed) | – |" in row for row in rows) and any("| 1 |" in row for row in rows)
