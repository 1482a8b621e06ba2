import os

# On a shared CPU, OpenMP threads that spin-wait for a busy core make small models 10-50x slower;
# passive waiting keeps the suite fast whatever else the machine runs. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """One test worker per core (pytest-xdist's `-n auto --dist loadgroup`) unless the command line says how to
    distribute: most tests train a small model on one core, so on 2 cores the suite takes about half the time. The
    tests of one `xdist_group` share a worker (a module fixture that trains is then trained once). `-n 0` or
    `-p no:xdist` runs the suite in this process; without pytest-xdist it runs here too."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    if hasattr(config, "workerinput"):  # a worker, which parses the command line alone: it groups as its controller
        config.option.loadgroup = config.option.loadgroup or os.environ.get("ITRA_TESTS_LOADGROUP") == "1"
    elif config.option.numprocesses is None and config.option.dist == "no":
        config.option.numprocesses = "auto"
        config.option.dist = "loadgroup"
        os.environ["ITRA_TESTS_LOADGROUP"] = "1"  # the workers' environment


@pytest.fixture(scope="session")
def splits():
    """Real Fashion-MNIST, loaded once for the whole session (tests that use it are marked `needs_fmnist`)."""
    from itra.data.registry import load_dataset

    return load_dataset("fashion-mnist")


@pytest.fixture(autouse=True)
def studies_in_the_test_process(monkeypatch):
    """`itra sweep` and `itra reproduce` train their runs in the test's own process unless a test asks for `--jobs`:
    monkeypatched code and registered methods reach the runs, and no test pays for starting workers (their default
    number, one per core, is `tests/experiments/test_launchers.py`'s)."""
    monkeypatch.setattr("itra.experiments.launchers.machine_slots", lambda threads: 1)
