"""Many processes under PyTorch's own engine: torchrun's process group, and what ranks share.

    torchrun --standalone --nproc-per-node 4 -m itra train --method itra-c ...   # 4 ranks, global batch 4 x --batch-size

`setup()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and starts the
default process group once: gloo for CPU tensors and, on a machine with CUDA, NCCL for CUDA tensors
(`"cpu:gloo,cuda:nccl"`: object collectives and the CPU-side reductions below go through gloo). Without
torchrun it returns `Dist()`: one process, no group, and every helper here is the identity, so the
training loop has one code path.

What crosses ranks, and how:
- S2 features for the global form of ITRA's match: `all_gather_with_grad` (the functional collectives'
  autograd all-gather; its
  backward sums every rank's gradient into the local slice, so with DDP's gradient mean the update is
  the gradient of the mean over ranks of each rank's loss, see README "Training on many GPUs");
  labels through `all_gather` (no gradient).
- Center-loss statistics: `sum_over_ranks` (every rank takes the same centre step).
- Loss terms (`Dist.mean`), the test set's metric sums (`sum_over_ranks`), a failure on any rank
  (`Dist.first`), what rank 0 read from the run directory (`Dist.on_main`), per-rank checkpoint parts
  (`Dist.gather_to_main`), and batch-norm buffers before evaluation (`Dist.sync_buffers`).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn
from itra.errors import BadValue

T = TypeVar("T")
MATCH_RANKS = ("local", "global")  # what each rank's S1 is matched against: its own S2, or every rank's


# torchrun's integers, each with its value without torchrun; and what env:// rendezvous reads besides
LAUNCH_INTEGERS = {"WORLD_SIZE": 1, "RANK": 0, "LOCAL_RANK": 0}
RENDEZVOUS = ("RANK", "MASTER_ADDR", "MASTER_PORT")


def launch_integer(name: str) -> int:
    """torchrun's `name` (`LAUNCH_INTEGERS`) from the environment, its default when unset; anything but an integer
    >= the default (a stale or mistyped variable) is one line naming it."""
    text, default = os.environ.get(name), LAUNCH_INTEGERS[name]
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < default:
        raise BadValue(f"Expected the environment variable {name} to be an integer >= {default} (torchrun sets it), "
                       f"but it is {text!r}: unset it, or launch with torchrun")
    return value


def launched_world_size() -> int:
    """How many processes this job was launched with: torchrun's WORLD_SIZE, 1 without torchrun."""
    return launch_integer("WORLD_SIZE")


def check_launch() -> tuple[int, int]:
    """This process's (rank, world size) from torchrun's environment, checked whole before any work: the integers
    (`launch_integer`), and with WORLD_SIZE > 1 what the process group's rendezvous needs (`RENDEZVOUS` set, RANK
    below WORLD_SIZE), so a half-set environment is one line, not an error from inside torch.distributed."""
    world_size, rank = launched_world_size(), launch_integer("RANK")
    launch_integer("LOCAL_RANK")
    if world_size > 1:
        missing = [name for name in RENDEZVOUS if not os.environ.get(name)]
        if missing:
            raise BadValue(f"WORLD_SIZE={world_size} says this is one of {world_size} processes of a torchrun job, but "
                           f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: launch with torchrun "
                           f"--nproc-per-node {world_size} -m itra ..., or unset WORLD_SIZE")
        if rank >= world_size:
            raise BadValue(f"Expected the environment variable RANK below WORLD_SIZE={world_size}, but it is {rank}: "
                           "launch with torchrun, or unset them")
    return rank, world_size


def _grouped() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: `rank` of `world_size` processes, `local_rank` on its node.
    `Dist()` is a single process, with no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes the run directory."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: `cuda:LOCAL_RANK` for CUDA under torchrun (made the current device), else `device`."""
        if self.world_size == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise BadValue(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda "
                             "or auto (CUDA_VISIBLE_DEVICES picks the GPUs)")
        device = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(device)
        return device

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` inside `DistributedDataParallel` (its parameters and buffers broadcast from rank 0); itself alone."""
        if self.world_size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, size: int) -> torch.Tensor:
        """This rank's contiguous share of `range(size)` (N,) int64: shares differ by at most one, in rank order."""
        return torch.arange(size).tensor_split(self.world_size)[self.rank]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """`values` (on the CPU; every rank the same shape) averaged over ranks, elementwise."""
        if self.world_size == 1:
            return values
        total = values.clone()
        torch_dist.all_reduce(total)
        return total / self.world_size

    def first(self, value: T | None) -> T | None:
        """The value of the lowest rank whose value is not None, on every rank (None when no rank has one):
        how a failure on any rank becomes the same failure everywhere. One all-reduce; a broadcast only then."""
        if self.world_size == 1:
            return value
        source = torch.tensor([self.rank if value is not None else self.world_size])
        torch_dist.all_reduce(source, op=torch_dist.ReduceOp.MIN)
        if int(source) == self.world_size:
            return None
        box = [value]
        torch_dist.broadcast_object_list(box, src=int(source))
        return box[0]

    def on_main(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` computed on rank 0 and handed to every rank (its exception raised on every rank):
        only rank 0 reads the run directory, which need not be on a file system the other nodes see."""
        if self.world_size == 1:
            return function(*args)
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = (True, function(*args))
            except Exception as error:  # noqa: BLE001 -- re-raised on every rank below
                box[0] = (False, error)
        torch_dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def gather_to_main(self, value: T) -> list[T] | None:
        """Every rank's `value` (picklable, on the CPU), in rank order, on rank 0; None on the others."""
        if self.world_size == 1:
            return [value]
        parts: list[Any] = [None] * self.world_size if self.is_main else None  # type: ignore[assignment]
        torch_dist.gather_object(value, parts, dst=0)
        return parts

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) on every rank, so all ranks hold rank 0's model."""
        if self.world_size == 1:
            return
        for buffer in module.buffers():
            torch_dist.broadcast(buffer, src=0)


def setup() -> Dist:
    """This process's `Dist`: under torchrun (WORLD_SIZE > 1), the default process group is started on the
    first call (the same group afterwards, or the one the caller started); else `Dist()`."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        if check_launch()[1] == 1:
            return Dist()
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and torch_dist.is_nccl_available() else "gloo"
        torch_dist.init_process_group(backend)
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), launch_integer("LOCAL_RANK"))


def shutdown() -> None:
    """End the process group, if one was started (at the end of a torchrun job). What the runs left in reference
    cycles (models wrapped in DDP, which hold the group) is collected first, while the interpreter is whole: left to
    its finalisation, gloo aborted the process after the job had finished (SIGABRT, "terminate called without an
    active exception"), in about half of the 2-process test jobs."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()
        torch_dist.destroy_process_group()


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor` (n, ...) concatenated in rank order, (world_size * n, ...), with autograd: the
    backward sums the gradients that all ranks' losses send to this rank's slice (not the SimCLR gather
    layer's local slice alone, which under-scales by the world size). The identity without a group."""
    if not _grouped():
        return tensor
    from torch.distributed import _functional_collectives as collectives

    gather = getattr(collectives, "all_gather_single_autograd", None)  # torch >= 2.13
    if gather is None:  # older torch: the autograd gather of torch.distributed.nn (deprecated since)
        from torch.distributed.nn.functional import all_gather as gather_list

        return torch.cat(gather_list(tensor))
    return gather(tensor.contiguous(), 0, torch_dist.group.WORLD)


def gather_others_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The `tensor` (n, ...) of every other rank, concatenated in rank order, ((world_size - 1) n, ...), with autograd
    (`all_gather_with_grad`, this rank's slice left out): the `ranks` pairing's S2. Every rank passes the same n."""
    return _others(all_gather_with_grad, tensor)


def gather_others(tensor: torch.Tensor) -> torch.Tensor:
    """The `tensor` (n, ...) of every other rank, concatenated in rank order, without gradient (labels)."""
    return _others(all_gather, tensor)


def _others(gather: Callable[[torch.Tensor], torch.Tensor], tensor: torch.Tensor) -> torch.Tensor:
    if not _grouped():
        raise BadValue("The 'ranks' pairing matches against the other processes' batches: run under torchrun with "
                         "2 or more processes, or choose another --pairing")
    gathered, rank, size = gather(tensor), torch_dist.get_rank(), len(tensor)
    return torch.cat((gathered[: rank * size], gathered[(rank + 1) * size:]))


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor` (n, ...) concatenated in rank order, without gradient (labels)."""
    if not _grouped():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(torch_dist.get_world_size())]
    torch_dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def with_every_rank_s2(pairs: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
    """`--match-ranks global`: each `(h1, y1, h2, y2)` with this rank's S1 and the S2 of every rank, features
    all-gathered with gradient (`all_gather_with_grad`), labels without. The pairs as they are without a group."""
    return [(h1, y1, all_gather_with_grad(h2), all_gather(y2)) for h1, y1, h2, y2 in pairs]


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over all ranks, in place, and returned (no gradient); itself without a group."""
    if _grouped():
        torch_dist.all_reduce(tensor)
    return tensor
