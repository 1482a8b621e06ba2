"""`itra.checkpoint`: every random stream of a rank comes back, parts load their own state, and a
checkpoint of the layout before version 2 still resumes exactly."""
import random

import numpy as np
import pytest
import torch

from itra import checkpoint, rundir
from itra.checkpoint import NoState, SavedOnCPU, PartMismatch, RandomStreams
from itra.experiments.runs import resume, run
from itra.pairing import PreviousBatch

from tests.helpers import fit_first_epoch_then_interrupt, needs_fmnist, resolved, small


def draws(augment: torch.Generator) -> list:
    """One number from every stream the CPU has."""
    return [torch.rand(3).tolist(), torch.rand(3, generator=augment).tolist(), random.random(), random.gauss(0, 1),
            np.random.rand(3).tolist()]


def test_every_random_stream_of_a_rank_comes_back():
    augment = torch.Generator().manual_seed(3)
    streams = RandomStreams(augment, torch.device("cpu"))
    random.gauss(0, 1)  # python keeps a cached Gaussian: part of its state
    saved = streams.state_dict()
    expected = draws(augment)
    draws(augment)  # move every stream on
    streams.load_state_dict(saved)
    assert draws(augment) == expected
    assert set(saved) == {"torch", "augment", "python", "numpy"}  # "cuda" too on a CUDA device


def test_the_parts_state_survives_torch_save_with_weights_only(tmp_path):
    previous = PreviousBatch()
    previous.swap(torch.randn(4, 2), torch.arange(4))
    shared = {"regularizer": NoState()}
    own = {"random": RandomStreams(torch.Generator(), torch.device("cpu")),
           "previous_batch": SavedOnCPU(previous, torch.device("cpu"))}
    rundir.write_config(tmp_path, resolved(dataset="digits"))  # what the checkpoint is checked against
    rundir.save_checkpoint(tmp_path, checkpoint.assemble({"epoch": 0, "elapsed_s": 0.0, "model": {}}, shared,
                                                         [checkpoint.rank_state(own)]))
    saved = rundir.load_checkpoint(tmp_path)  # weights_only=True
    restored = PreviousBatch()
    checkpoint.restore(saved, shared, {"previous_batch": SavedOnCPU(restored, torch.device("cpu"))}, rank=0)
    assert saved["version"] == 2 and torch.equal(restored.batch[0], previous.batch[0])


def test_a_state_that_does_not_fit_its_part_names_the_part():
    with pytest.raises(PartMismatch, match="the model state does not fit") as error:
        checkpoint.restore({"version": 2, "model": {"weight": torch.zeros(3)}, "ranks": [{}]},
                           {"model": torch.nn.Linear(2, 2)}, {}, rank=0)
    assert error.value.part == "model"


def test_an_optimizer_or_callback_state_that_does_not_fit_names_its_part():
    """An optimizer's load_state_dict raises ValueError for other parameter groups, a part that reads a key
    raises KeyError: both are a mismatch of that part, not a traceback."""
    saved_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).state_dict()
    two_groups = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]},
                                  {"params": [torch.zeros(1, requires_grad=True)]}], lr=0.1)
    with pytest.raises(PartMismatch, match="the optimizer state does not fit") as error:
        checkpoint.restore({"version": 2, "optimizer": saved_optimizer, "ranks": [{}]}, {"optimizer": two_groups}, {}, 0)
    assert error.value.part == "optimizer"

    class Counter:
        def load_state_dict(self, state):
            self.count = state["count"]

    with pytest.raises(PartMismatch, match="the callbacks state does not fit"):
        checkpoint.restore({"version": 2, "callbacks": {"other": 1}, "ranks": [{}]}, {"callbacks": Counter()}, {}, 0)


def test_a_newer_checkpoint_is_refused_in_one_line():
    with pytest.raises(ValueError, match="checkpoint version 3 is newer than this itra's 2"):
        checkpoint.upgrade({"version": 3})


def downgrade(saved: dict) -> dict:
    """The layout itra wrote before version 2: rank 0's random states and kept batch at the top."""
    (own,) = saved.pop("ranks")
    old = {name: value for name, value in saved.items() if name not in ("version", "callbacks")}
    return {**old, "rng": own["random"]["torch"], "augment_rng": own["random"]["augment"],
            "previous_batch": own["previous_batch"]}


@needs_fmnist
def test_a_checkpoint_of_the_old_layout_resumes_exactly(tmp_path, splits):
    config = small(pairing="previous", epochs=2)  # a kept batch and an augmentation-free run: every old key
    _, uninterrupted = run(config, tmp_path / "a", splits, progress=False)
    run_dir = tmp_path / "b" / config.name
    fit_first_epoch_then_interrupt(config, splits, run_dir)
    rundir.save_checkpoint(run_dir, downgrade(rundir.load_checkpoint(run_dir)))
    _, resumed = resume(run_dir, progress=False)
    for key in ("test_accuracy", "test_cross_entropy", "train_ce", "train_match", "train_loss"):
        assert resumed[key] == uninterrupted[key], key
