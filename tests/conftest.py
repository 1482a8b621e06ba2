import os

# On a shared CPU, OpenMP threads that spin-wait for a busy core make small models 10-50x slower;
# passive waiting keeps the suite fast whatever else the machine runs. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def splits():
    """Real Fashion-MNIST, loaded once for the whole session (tests that use it are marked `needs_fmnist`)."""
    from itra.data.registry import load_dataset

    return load_dataset("fashion-mnist")
