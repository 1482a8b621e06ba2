"""`itra.device`: the machine checks, one line each, and `deterministic`'s settings."""
from __future__ import annotations

import os

import pytest
import torch

from itra.config import LOCATION_FIELDS, TrainConfig
from itra.device import check_compile, check_machine, check_precision, deterministic, resolve_device


def test_the_new_flags_are_location_fields_kept_out_of_the_run_name():
    for name in ("deterministic", "workers"):
        assert name in LOCATION_FIELDS
    plain = TrainConfig(dataset="digits")
    assert TrainConfig(dataset="digits", deterministic=True, workers=2).name == plain.name
    assert plain.same_run(TrainConfig(dataset="digits", deterministic=True, workers=2))


def test_a_device_this_machine_lacks_is_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="Expected `device` to be auto, cpu, cuda or cuda:N, but got 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="this machine has no CUDA GPU"):
            resolve_device("cuda")


def test_fp16_on_the_cpu_and_bf16_on_a_gpu_without_it_are_one_line(monkeypatch):
    with pytest.raises(ValueError, match="--precision fp16 needs a CUDA GPU"):
        check_precision("fp16", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ValueError, match="--precision bf16: Tesla T4 has no bfloat16 arithmetic") as error:
        check_precision("bf16", torch.device("cuda"))
    assert "\n" not in str(error.value)


def test_compile_on_cuda_without_a_c_compiler_is_one_line(monkeypatch):
    import shutil

    from torch.utils import _triton

    monkeypatch.setattr(_triton, "has_triton", lambda: True)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="--compile on CUDA needs a C compiler for Triton's launchers") as error:
        check_compile(torch.device("cuda"))
    assert "\n" not in str(error.value)
    monkeypatch.setattr(_triton, "has_triton", lambda: False)
    with pytest.raises(ModuleNotFoundError, match="--compile on CUDA needs Triton"):
        check_compile(torch.device("cuda"))


def test_a_negative_worker_count_is_one_line():
    with pytest.raises(ValueError, match="Expected `workers` to be an integer >= 0, but got -1"):
        config = TrainConfig(dataset="digits", device="cpu", workers=-1)
        check_machine(config.device, config.precision, config.compile)


def test_deterministic_sets_the_kernels_and_puts_them_back(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    with deterministic(False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_compile_without_a_cpp_compiler_is_one_line(monkeypatch):
    import torch
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    from itra.device import check_compile

    check_compile(torch.device("cpu"))  # this machine has one

    def no_compiler():
        raise InvalidCxxCompiler()

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(FileNotFoundError, match="--compile on the CPU needs a C\\+\\+ compiler") as error:
        check_compile(torch.device("cpu"))
    assert "\n" not in str(error.value)

