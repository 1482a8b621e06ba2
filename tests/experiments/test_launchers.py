"""`--jobs N` and `--launcher ray`: N runs at a time train what one at a time trains (every epoch's metrics, the table),
a failed run leaves the others going, Ctrl-C stops every worker and the same command resumes exactly, and bad launch
values are one line before any work."""
import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import time

import pytest

from itra.cli import add_launch_flags, main
from itra.experiments import launchers
from itra.experiments.launchers import Launch, WorkerPool, local, machine_slots
from itra.rundir import read_metrics, read_summary

from tests.helpers import resolved

# digits (offline, scikit-learn's 8x8 images): 4 runs of seconds, two of which diverge at once (lr 1e308)
STUDY = ["sweep", "--dataset", "digits", "--method", "ce,itra-c", "--lam", "0.5", "--lam-warmup", "0", "--batch-size",
         "64", "--train-subset", "256", "--test-subset", "100", "--seeds", "1", "--lr", "0.05,1e308", "--epochs", "3"]
TIMING = ("elapsed_s",)  # the fields of a run's files that time it


def trained(out):
    """Every run of `out`: its epochs' rows and its summary without their timing fields."""
    def untimed(row):
        return {key: value for key, value in row.items() if key not in TIMING}

    return {run.name: ([untimed(row) for row in read_metrics(run)], untimed(read_summary(run) or {}))
            for run in sorted(out.iterdir()) if run.is_dir()}


def table(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("|")]


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    """The study trained with --jobs 1 (in this process): its runs (`trained`) and its table."""
    out = tmp_path_factory.mktemp("jobs1")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert main([*STUDY, "--out", str(out), "--jobs", "1", "--quiet"]) == 1  # the diverged runs
    runs = trained(out)
    assert sorted(summary["status"] for _, summary in runs.values()) == ["failed", "failed", "finished", "finished"]
    return runs, table(printed.getvalue())


def test_jobs_2_trains_what_jobs_1_trains_and_a_failed_run_leaves_the_others_going(tmp_path, capsys, one_at_a_time):
    runs, rows = one_at_a_time
    assert main([*STUDY, "--out", str(tmp_path), "--jobs", "2"]) == 1
    two = capsys.readouterr()
    assert trained(tmp_path) == runs and table(two.out) == rows
    assert "2 run(s) failed" in two.err
    lines = two.out.splitlines()
    for name, (_, summary) in runs.items():  # a line as each run starts and ends, none from the workers' steps
        assert sum(line.endswith(f"] {name}: started") for line in lines) == 1
        assert sum(f"] {name}: {summary['status']} in " in line for line in lines) == 1
    assert "epoch 1/3" not in two.out + two.err


def test_ctrl_c_stops_every_worker_and_the_same_command_resumes_exactly(tmp_path, one_at_a_time):
    # Ctrl-C in a terminal: SIGINT to the command's whole process group, workers included, once a run has saved an epoch
    # SIGINT at its default in the command, as in a terminal: a test runner's worker (pytest-xdist) may ignore it, and
    # a Python started with SIGINT ignored never turns it into KeyboardInterrupt (the study then ran to its end)
    command = subprocess.Popen([sys.executable, "-m", "itra", *STUDY, "--out", str(tmp_path), "--jobs", "2", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while not list(tmp_path.glob("*/checkpoint.pt")) and command.poll() is None:
        time.sleep(0.05)
    os.killpg(command.pid, signal.SIGINT)
    _, err = command.communicate(timeout=120)
    assert command.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("interrupted: finished runs are kept; run the same command again to "
                                            "continue") and "Traceback" not in err
    assert sum(read_summary(run) is not None for run in tmp_path.iterdir()) < 4  # it was stopped part way
    # the same command again (with --jobs 1, which trains what --jobs 2 trains, and starts no workers)
    assert main([*STUDY, "--out", str(tmp_path), "--jobs", "1", "--quiet"]) == 1
    assert trained(tmp_path) == one_at_a_time[0]


def test_ray_tasks_train_what_one_process_trains(tmp_path, capsys, one_at_a_time):
    ray = pytest.importorskip("ray", reason="pip install 'itra[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        assert main([*STUDY, "--out", str(tmp_path), "--launcher", "ray", "--quiet"]) == 1
    finally:
        ray.shutdown()
    assert trained(tmp_path) == one_at_a_time[0] and table(capsys.readouterr().out) == one_at_a_time[1]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", [STUDY, ["reproduce", "digits", "--smoke"]])
@pytest.mark.parametrize("flags, says", [
    (["--jobs", "0"], "argument --jobs: expected an integer >= 1, but got 0"),
    (["--jobs", "-1"], "argument --jobs: expected an integer >= 1, but got -1"),
    (["--jobs", "two"], "argument --jobs: expected an integer >= 1, but got 'two'"),
    (["--threads-per-run", "0"], "argument --threads-per-run: expected an integer >= 1, but got 0"),
    (["--launcher", "mpi"], "argument --launcher: invalid choice: 'mpi'"),
])
def test_bad_counts_and_launchers_are_argparse_lines(tmp_path, capsys, command, flags, says):
    with pytest.raises(SystemExit) as exit_:
        main([*command, *flags, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [STUDY, ["reproduce", "digits", "--smoke"]])
@pytest.mark.parametrize("flags, says", [
    (["--address", "127.0.0.1:6379"], "is the address of a Ray cluster: add --launcher ray"),
    (["--launcher", "ray", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster answers there"),
    (["--launcher", "ray", "--address", "head-node"], "expected auto or the host:port of a Ray cluster's head"),
])
def test_bad_launch_values_are_one_line_before_any_work(tmp_path, capsys, command, flags, says):
    pytest.importorskip("ray", reason="pip install 'itra[ray]'")
    assert main([*command, *flags, "--out", str(tmp_path / "out")]) == 2
    assert says in one_line(capsys) and not list(tmp_path.glob("out/*"))


RAY_FAILURES = {  # how starting Ray fails on a machine: for real, or as Ray raises it
    "socket path too long": lambda monkeypatch, ray: monkeypatch.setenv("RAY_TMPDIR", "/tmp/" + "x" * 120),
    "a multi-line RuntimeError": lambda monkeypatch, ray: monkeypatch.setattr(
        ray, "init", lambda **_: (_ for _ in ()).throw(RuntimeError("Failed to start the GCS server.\nLog: ..."))),
    "a timeout": lambda monkeypatch, ray: monkeypatch.setattr(
        ray, "init", lambda **_: (_ for _ in ()).throw(TimeoutError())),
}


# --address auto joins a running instance, so it starts none with a too long socket path
RAY_START_CASES = [(failure, address) for failure in RAY_FAILURES for address in ([], ["--address", "auto"])
                   if not (address and failure == "socket path too long")]


@pytest.mark.parametrize("failure, address", RAY_START_CASES)
def test_ray_failing_to_start_is_one_line_saying_what_to_do(tmp_path, capsys, monkeypatch, failure, address):
    ray = pytest.importorskip("ray", reason="pip install 'itra[ray]'")
    RAY_FAILURES[failure](monkeypatch, ray)
    assert main([*STUDY, "--launcher", "ray", *address, "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # Ray may log a line of its own before
    assert last.startswith("itra sweep: error: --launcher ray: ") and "or train with --launcher local" in last, last
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


TORCHRUN_RANK_0 = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_ray_not_installed_and_jobs_under_torchrun_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where it is not installed
    assert main([*STUDY, "--launcher", "ray", "--out", str(tmp_path)]) == 2
    assert "--launcher ray needs Ray: pip install 'itra[ray]'" in one_line(capsys)
    for name, value in TORCHRUN_RANK_0.items():  # what torchrun sets in the first of 2 processes
        monkeypatch.setenv(name, value)
    assert main([*STUDY, "--jobs", "2", "--out", str(tmp_path)]) == 2
    assert "under torchrun every process trains each run with the others: leave --jobs" in one_line(capsys)
    assert not any(tmp_path.iterdir())


def test_threads_per_run_come_from_the_machine_alone(monkeypatch):
    parser = argparse.ArgumentParser()
    add_launch_flags(parser)
    assert "CPU threads of each run, whatever --jobs" in " ".join(parser.format_help().split())
    for cores, gpus, threads, slots in [(2, 0, 1, 2), (16, 0, 1, 16), (16, 4, 4, 4), (3, 4, 1, 4)]:
        monkeypatch.setattr(launchers, "cores", lambda: cores)
        monkeypatch.setattr(launchers, "gpus", lambda: gpus)
        assert launchers.machine_threads() == threads and machine_slots(threads) == slots
        assert {Launch(jobs=jobs).threads for jobs in (None, 1, 2, 8)} == {threads}


def test_more_jobs_than_runs_start_one_worker_per_run_and_one_job_or_torchrun_trains_in_this_process(monkeypatch):
    configs = [resolved(dataset="digits", method="ce", seed=seed) for seed in range(3)]
    monkeypatch.setattr(launchers, "machine_slots", machine_slots)  # the tests' own default is 1 (conftest.py)
    monkeypatch.setattr(launchers, "cores", lambda: 8)
    for launch, jobs in [(Launch(jobs=8), 3), (Launch(jobs=None), 3), (Launch(jobs=2), 2),
                         (Launch(jobs=None, threads_per_run=4), 2)]:
        executor, started = local(launch, configs)
        assert started == jobs and isinstance(executor, WorkerPool)
        executor.shutdown()
    assert isinstance(local(Launch(jobs=1), configs)[0], launchers.InProcess)
    assert isinstance(local(Launch(jobs=4), configs[:1])[0], launchers.InProcess)
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun, each process of the job trains every run with the others
    assert isinstance(local(Launch(jobs=None), configs)[0], launchers.InProcess)
