"""The machine a run trains on: its device, and what a run asks of it, checked before any data loads.

`resolve_device` turns `--device` into a `torch.device`; `check_machine` says in one line what this machine
lacks for a run's device, precision and --compile (a GPU, fp16's CUDA, bf16 on an older GPU, --compile's compiler);
`deterministic` is `--deterministic`: the settings under which a CUDA run is the same every time.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

import torch
from itra.errors import BadValue, MissingFile, MissingPackage

# cuBLAS's deterministic workspace setting, which torch.use_deterministic_algorithms asks for on CUDA >= 10.2.
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when there is a GPU, else the CPU; a CUDA device without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BadValue(f"Expected `device` to be auto, cpu, cuda or cuda:N, but got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise BadValue(f"--device {name}: itra trains on cpu or cuda (got {device.type}); use --device cpu, cuda or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadValue(f"--device {name}: this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                         "use --device cpu or auto")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs CUDA (its loss scaling); bf16 needs the CPU or a GPU with bfloat16 (compute capability 8.0+)."""
    if precision == "fp16" and device.type != "cuda":
        raise BadValue(f"--precision fp16 needs a CUDA GPU (device {device}); use --precision bf16 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise BadValue(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 arithmetic; "
                         "use --precision fp16 (with loss scaling) or 32")


def check_compile(device: torch.device) -> None:
    """`torch.compile`'s default backend builds C++ on the CPU, and Triton kernels on CUDA, whose launchers
    Triton builds with a C compiler: a clear error when the machine lacks what it needs, before any work."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise MissingPackage("--compile on CUDA needs Triton: pip install triton, or leave --compile off")
        compiler = os.environ.get("CC")
        if not (shutil.which(compiler) if compiler else any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))):
            raise MissingFile(f"--compile on CUDA needs a C compiler for Triton's launchers "
                                    f"({'$CC=' + compiler if compiler else 'cc, gcc or clang'} not found): "
                                    "apt-get install gcc, or leave --compile off")
        return
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        get_cpp_compiler()
    except InvalidCxxCompiler:
        raise MissingFile("--compile on the CPU needs a C++ compiler (g++, or the one $CXX names): "
                                "apt-get install g++, or leave --compile off") from None


def check_machine(device: str, precision: str, compile: bool) -> None:
    """What a run's `--device` (auto, cpu, cuda, cuda:N), `--precision` (32, bf16, fp16) and `--compile` ask of this
    machine, before any data is loaded: the device, the precision's arithmetic, the compilers."""
    found = resolve_device(device)
    check_precision(precision, found)
    if compile:
        check_compile(found)


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """With `enabled`, run the body with deterministic kernels: cuDNN deterministic without autotuning,
    `torch.use_deterministic_algorithms(True)` (an op without a deterministic kernel raises instead of
    running), and cuBLAS's workspace setting (`CUBLAS_WORKSPACE_CONFIG`, kept if already set: it must be
    set before the process first uses cuBLAS). The previous settings come back afterwards."""
    if not enabled:
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


class HostReads:
    """Counts the reads of a tensor's value back to the host inside a `with` block: every `.item()`, `float(t)`,
    `int(t)` and `bool(t)` goes through `aten._local_scalar_dense`, which on CUDA waits for the device (a sync).
    On the CPU it counts what would be a sync on a GPU. `reads` lists each read's op, in order.

        with HostReads() as counter:
            train_step(objective, optimizer, first, second)
        assert counter.reads == []
    """

    def __enter__(self) -> "HostReads":
        from torch.utils._python_dispatch import TorchDispatchMode

        reads = self.reads = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func is torch.ops.aten._local_scalar_dense.default:
                    reads.append(str(func))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *error: object) -> None:
        self.mode.__exit__(*error)
