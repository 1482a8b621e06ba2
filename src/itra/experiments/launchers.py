"""How a study's independent runs are trained: one after another in this process, N at a time in worker processes on
this machine, or as Ray tasks across machines.

    itra sweep --method ce,itra-c --lam 0.2,0.6 --seeds 3 --jobs 2          # 2 worker processes of 1 thread each
    itra sweep ... --launcher ray --address auto                              # tasks of a running Ray cluster

`LAUNCHERS` maps `--launcher` to a factory: given the study's `Launch` and its configs, it returns a
`concurrent.futures.Executor` (whose `submit(task, *args)` gives a future of the task's result) and how many runs to
keep in flight. `runs.run_all` hands every run to it and reads the results back in the order of the configs, so a
study's tables do not depend on the launcher or on N; the experiment code does not know which one runs it. A Slurm
launcher (submitit) would be one more entry.

A run's numbers depend on the thread count of its CPU kernels, so each run trains with `Launch.threads_per_run`
threads whatever N (`machine_threads`: 1 on a machine without GPUs; with GPUs, its cores shared out between them):
`--jobs 1` and `--jobs 2` train the same runs, bit for bit. `rundir.writing` keeps any run to one writer whatever the
launcher.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import socket
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import torch

from itra.config import TrainConfig
from itra.distributed import launched_world_size
from itra.errors import BadValue, CannotStart, MissingPackage, first_line

RAY_CONNECT_SECONDS = 5.0  # how long an --address may take to answer before it is called unreachable


def cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's or `taskset`'s share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def machine_threads() -> int:
    """Threads per run by default, from the machine alone (never from N, so N does not change a run's numbers): 1 on a
    machine without GPUs (the small models of a study use one core well and a second one poorly: one run per core
    trains the most runs per hour); with GPUs, the cores shared out between them (a run per GPU)."""
    return max(1, cores() // gpus()) if gpus() else 1


def machine_slots(threads: int) -> int:
    """Runs at once by default on this machine: one per GPU, else one per `threads` cores."""
    return gpus() or max(1, cores() // threads)


@dataclasses.dataclass(frozen=True)
class Launch:
    """How a study's runs are trained: `launcher` (a key of `LAUNCHERS`), `jobs` runs at a time (None: as many as the
    machine or the cluster has room for, at most one per run), each with `threads_per_run` threads (None:
    `machine_threads()`), on the Ray cluster at `address` (None: a local Ray instance). Raises `BadValue` on a value
    out of range."""

    launcher: str = "local"
    jobs: int | None = 1
    threads_per_run: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise BadValue(f"--launcher {self.launcher}: expected one of {', '.join(LAUNCHERS)}")
        for flag, value in (("--jobs", self.jobs), ("--threads-per-run", self.threads_per_run)):
            if value is not None and value < 1:
                raise BadValue(f"{flag}: expected an integer >= 1, but got {value}")
        if self.address is not None and self.launcher != "ray":
            raise BadValue(f"--address {self.address} is the address of a Ray cluster: add --launcher ray, or leave "
                           "--address out")
        if (self.launcher != "local" or (self.jobs or 1) > 1) and launched_world_size() > 1:  # no read for the default
            raise BadValue("under torchrun every process trains each run with the others: leave --jobs and "
                           "--launcher out")

    @property
    def threads(self) -> int:
        return self.threads_per_run or machine_threads()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """The body runs with `count` intra-op threads (the thread count a run's numbers depend on); then as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class InProcess(Executor):
    """Each task runs at once in this process (`--jobs 1`, and every rank under torchrun): its progress bars show, its
    errors and Ctrl-C are raised from `submit`, and the caller's loaded data serves every run."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class WorkerPool(ProcessPoolExecutor):
    """`jobs` worker processes started afresh ('spawn': forking a process whose torch has started threads is unsafe);
    on a machine with GPUs each worker sees one (`CUDA_VISIBLE_DEVICES`, in turn). Workers ignore Ctrl-C: the parent
    stops them (`shutdown(cancel_futures=True)` ends the running runs too; their finished epochs are saved)."""

    def __init__(self, jobs: int) -> None:
        context = multiprocessing.get_context("spawn")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(index) for index in range(gpus())]
        queue = context.Queue()
        for worker in range(jobs):
            queue.put(devices[worker % len(devices)] if devices else None)
        super().__init__(jobs, mp_context=context, initializer=_start_worker, initargs=(queue,))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for process in list((self._processes or {}).values()):  # ProcessPoolExecutor stops no running task
                process.terminate()
        super().shutdown(wait, cancel_futures=cancel_futures)


def _start_worker(devices: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    device = devices.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device


def local(launch: Launch, configs: Sequence[TrainConfig]) -> tuple[Executor, int]:
    """`launch.jobs` runs at a time on this machine (None: `machine_slots`), at most one per run; one runs in this
    process, as does every run under torchrun (each process of the job trains it)."""
    jobs = 1 if launched_world_size() > 1 else min(launch.jobs or machine_slots(launch.threads), len(configs))
    return (InProcess(), 1) if jobs <= 1 else (WorkerPool(jobs), jobs)


class RayTasks(Executor):
    """Each task a Ray task that asks for `threads` CPUs and, with `wants_gpu` on a cluster with GPUs, one GPU (Ray
    gives it `CUDA_VISIBLE_DEVICES`), on the cluster at `address` ("auto": the one `ray start` started on this
    machine), or on a local Ray instance (or the one this process has started: `ray.init`)."""

    def __init__(self, address: str | None, threads: int, wants_gpu: bool) -> None:
        try:
            import ray
        except ModuleNotFoundError:
            raise MissingPackage("--launcher ray needs Ray: pip install 'itra[ray]'") from None
        self.ray, self.tasks, self.remote = ray, [], {}
        self.started = not ray.is_initialized()
        if self.started:
            if address not in (None, "auto") and "://" not in address:  # host:port; ray:// (Ray Client) as Ray says
                check_reachable(address)
            try:
                ray.init(address=address, logging_level="WARNING")
            except ConnectionError as error:
                raise BadValue(f"--address {address}: {first_line(error)} (start one with ray start --head, or "
                               "give its host:port)") from None
            except Exception as error:  # Ray's own failure to start or join (a socket path, a version): one line
                ray.shutdown()
                where = "" if address is None else f" at --address {address}"
                raise CannotStart(f"--launcher ray: Ray did not start{where} ({type(error).__name__}: "
                                  f"{first_line(error)}); start one with ray start --head and give --address auto, "
                                  "or train with --launcher local") from None
        self.resources = dict(num_cpus=threads, num_gpus=int(wants_gpu and ray.cluster_resources().get("GPU", 0) >= 1))

    def slots(self) -> int:
        """Tasks the cluster runs at once: its GPUs, or its CPUs over the threads of a task."""
        total = self.ray.cluster_resources()
        wanted = "GPU" if self.resources["num_gpus"] else "CPU"
        return max(1, int(total.get(wanted, 0) // (self.resources["num_gpus"] or self.resources["num_cpus"])))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if fn not in self.remote:  # Ray exports a remote function once
            self.remote[fn] = self.ray.remote(**self.resources)(fn)
        task = self.remote[fn].remote(*args, **kwargs)
        self.tasks.append(task)
        result: Future = Future()

        def settle(done: Future) -> None:  # a task's error comes back as itself, not wrapped in Ray's traceback
            error = done.exception()
            if error is None:
                result.set_result(done.result())
            else:
                result.set_exception(getattr(error, "cause", None) or error)

        task.future().add_done_callback(settle)
        return result

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for task in self.tasks:
                self.ray.cancel(task, force=True)
        if self.started:
            self.ray.shutdown()


def check_reachable(address: str) -> None:
    """A Ray cluster's `host:port` answers within `RAY_CONNECT_SECONDS`; else one line (Ray itself waits a minute)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_SECONDS).close()
    except ValueError:
        raise BadValue(f"--address {address}: expected auto or the host:port of a Ray cluster's head "
                       "(ray start --head prints it; 6379 by default)") from None
    except OSError as error:
        raise BadValue(f"--address {address}: no Ray cluster answers there ({error.strerror or error}); start one with "
                       "ray start --head, or check the address") from None


def ray(launch: Launch, configs: Sequence[TrainConfig]) -> tuple[Executor, int]:
    """Every run a Ray task with `launch.threads` CPUs and, when the cluster has GPUs and the run may use one, a GPU;
    `launch.jobs` in flight (None: as many as the cluster has room for), at most one per run."""
    cluster = RayTasks(launch.address, launch.threads, wants_gpu=any(config.device != "cpu" for config in configs))
    return cluster, min(launch.jobs or cluster.slots(), len(configs))


LAUNCHERS: dict[str, Callable[[Launch, Sequence[TrainConfig]], tuple[Executor, int]]] = {"local": local, "ray": ray}
