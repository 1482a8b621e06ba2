"""In-memory batch fast paths and seeded generators: shuffled and ordered passes over a dataset (a
`TensorDataset` is sliced a batch at a time, any other map-style dataset, or any with a `collate_fn`,
goes through a `DataLoader` in the same order), fixed random subsets, and a generator per (seed,
epoch, stream) and, for distributed training, per rank."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from itra.errors import UserError

Batch = tuple[torch.Tensor, ...]  # (*inputs, labels)


def epoch_generator(seed: int, epoch: int, stream: int, rank: int = 0) -> torch.Generator:
    """A generator for one (seed, epoch, stream): any epoch's batches can be rebuilt, so a run resumes exactly.
    Rank r > 0 of a distributed run gets a stream of its own (rank 0's is the single process's)."""
    entropy = [seed, epoch, stream] + ([rank] if rank else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def shuffled_batches(
    dataset: Dataset, batch_size: int, generator: torch.Generator, drop_last: bool, num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None, pin_memory: bool = False, rank: int = 0, world_size: int = 1,
) -> Iterator[Any]:
    """One shuffled pass over `dataset` in batches: tuples `(*inputs, labels)`, or what `collate_fn` makes
    of a list of items.

    A `TensorDataset` without a `collate_fn` is indexed a batch at a time (no per-item collation); any
    other map-style dataset goes through a `DataLoader` whose sampler draws the same order from `generator`.
    With `world_size` > 1 the pass is in global batches of `world_size * batch_size` (the same for every
    rank, from the same generator) and this rank gets rows `[rank * batch_size, (rank + 1) * batch_size)`
    of each: it loads only its own samples (pass `drop_last`, so that every rank gets as many rows).
    """
    size = world_size * batch_size
    if isinstance(dataset, TensorDataset) and collate_fn is None:
        order = torch.randperm(len(dataset), generator=generator)
        stop = len(dataset) - size + 1 if drop_last else len(dataset)
        for start in range(0, stop, size):
            index = order[start + rank * batch_size : start + (rank + 1) * batch_size]  # this rank's rows
            yield tuple(tensor[index].pin_memory() if pin_memory else tensor[index] for tensor in dataset.tensors)
        return
    batches = BatchSampler(RandomSampler(dataset, generator=generator), size, drop_last)
    shards = batches if world_size == 1 else [batch[rank * batch_size : (rank + 1) * batch_size] for batch in batches]
    loader = iter(DataLoader(dataset, batch_sampler=shards, num_workers=num_workers, collate_fn=collate_fn,
                             pin_memory=pin_memory))
    try:
        yield from loader
        return
    except UserError as error:  # an item a worker process could not read (`image_folder.UnreadableImage`)
        kind, message = type(error), worker_message(error)
        error.__traceback__ = None  # its frames hold the loader, in a cycle that only a later gc would free
    del loader  # its worker processes end now, not at that gc (nor in the next worker forked, which inherits it)
    raise kind(message)


def worker_message(error: BaseException) -> str:
    """The message of an exception raised in a `DataLoader` worker process. The DataLoader raises it again in this
    process with the worker's traceback as its message, whose last line is `module.Type: message`; an exception
    raised in this process (`num_workers=0`) keeps its own.

    >>> worker_message(ValueError("Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback ...\\n"
    ...                           "ValueError: x.png: cannot read image\\n"))
    'x.png: cannot read image'
    """
    lines = str(error).rstrip("\n").splitlines()
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: ".removeprefix("builtins.")
    if len(lines) > 1 and lines[0].startswith("Caught ") and lines[-1].startswith(prefix):
        return lines[-1].removeprefix(prefix)
    return str(error)


def ordered_batches(dataset: Dataset, batch_size: int) -> Iterator[Batch]:
    """The dataset in order, in batches of tuples `(*inputs, labels)`."""
    if isinstance(dataset, TensorDataset):
        for start in range(0, len(dataset), batch_size):
            yield tuple(tensor[start : start + batch_size] for tensor in dataset.tensors)
        return
    yield from torch.utils.data.DataLoader(dataset, batch_size, shuffle=False)


def subset_by_index(dataset: Dataset, index: torch.Tensor) -> Dataset:
    """The items at `index` (N,) int64: a `TensorDataset` of the indexed tensors, any other dataset as a `Subset`."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[index] for tensor in dataset.tensors))
    return torch.utils.data.Subset(dataset, index.tolist())


def subset(dataset: Dataset, size: int | None, seed: int = 0) -> Dataset:
    """A fixed random subset (the same for every run seed, so all methods see the same data)."""
    if size is None or size >= len(dataset):  # type: ignore[arg-type]
        return dataset
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]  # type: ignore[arg-type]
    return subset_by_index(dataset, index)
