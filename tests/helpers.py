"""What several test modules share: the Fashion-MNIST skip mark, a small real-data config, and a run killed
after its first epoch."""
from pathlib import Path

import pytest

from itra.config import TrainConfig
from itra.data.fashion_mnist import DEFAULT_DIR

needs_fmnist = pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")


def resolved(**fields) -> TrainConfig:
    """`TrainConfig(**fields)` in effect, as every entry point hands it on (`itra.resolve`)."""
    from itra.resolve import resolve

    return resolve(TrainConfig(**fields))


def small(method="itra-c", **kwargs) -> TrainConfig:
    """2 epochs of 20 steps on 1,280 real images: seconds, and far above chance for every method."""
    values = dict(method=method, lam=0.1 if method == "center" else 0.6, epochs=2, batch_size=64, train_subset=1280,
                  test_subset=300, device="cpu", seed=0, compactness_every=10, lam_warmup=10)  # ITRA at full λ by step 10
    values.update(kwargs)
    return resolved(**values)


def fit_first_epoch_then_interrupt(config: TrainConfig, splits, run_dir: Path) -> None:
    """Train `config` (with a `train_subset`) into `run_dir` and interrupt it at the first step of epoch 2, as a
    kill would: the run directory holds epoch 1's row and checkpoint."""
    from itra.data.paired import PairedLoader
    from itra.experiments.runs import build_model
    from itra.objective import Objective
    from itra.pairing import samples_per_step
    from itra.train import fit

    steps_per_epoch = len(PairedLoader(list(range(config.train_subset)),
                                       samples_per_step(config.pairing, config.batch_size), seed=0))
    calls = {"n": 0}
    original = Objective.forward

    def interrupt_after_first_epoch(self, *args):
        calls["n"] += 1
        if calls["n"] > steps_per_epoch:
            raise KeyboardInterrupt
        return original(self, *args)

    Objective.forward = interrupt_after_first_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(config, splits, build_model(config, splits), run_dir, progress=False)
    finally:
        Objective.forward = original
