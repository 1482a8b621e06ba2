"""What several test modules share: the Fashion-MNIST skip mark and a small real-data config."""
import pytest

from itra.config import TrainConfig
from itra.data.fashion_mnist import DEFAULT_DIR

needs_fmnist = pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")


def small(method="itra-c", **kwargs) -> TrainConfig:
    """2 epochs of 20 steps on 1,280 real images: seconds, and far above chance for every method."""
    values = dict(method=method, lam=0.1 if method == "center" else 0.6, epochs=2, batch_size=64, train_subset=1280,
                  test_subset=300, device="cpu", seed=0, compactness_every=10, lam_warmup=10)  # ITRA at full λ by step 10
    values.update(kwargs)
    return TrainConfig(**values)
