"""Paired mini-batches: S1 for the cross-entropy, and an independent S2 to match its features against."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import Dataset

from itra.data.batches import epoch_generator, shuffled_batches
from itra.checks import check_count, check_flag, check_map_dataset, check_seed
from itra.errors import BadValue


class PairedLoader:
    """Yields `(S1, S2)` pairs of batches, each a tuple `(*inputs, labels)`, e.g. `((x1, y1), (x2, y2))`.

    S1 is one shuffled pass over the dataset (the epoch). S2 is drawn from a stream with its own
    generator, so it is independent of S1: a fresh shuffled pass, chained into the next when it runs
    out, always `second_batch_size` samples. Both are fixed by `(seed, epoch)`. Each new iteration is
    the next epoch (0, 1, 2, ...); `set_epoch(e)` makes the next iteration epoch `e`, as with
    `DistributedSampler`, so a resumed loop can rebuild any epoch's batches. With `paired=False` it
    yields S1 alone, the same S1 batches as with pairing, so methods that do not need S2 see the same
    data in the same order.

    Distributed (`rank` of `world_size` processes, e.g. under `DistributedDataParallel`): every step
    has a global S1 of `world_size * batch_size` samples and a global S2 of `world_size *
    second_batch_size`, drawn from the same (seed, epoch) streams as one process with those batch sizes
    would draw them, and this rank takes its slice of each (rows `[rank * batch_size, (rank + 1) *
    batch_size)`). So each rank's S1 and S2 are fixed by (seed, epoch, rank), the S2 of different ranks
    are disjoint, and the ranks' slices together are exactly one process's global batches. The last,
    incomplete global batch of an epoch is dropped, so every rank takes as many equal steps.

    Any map-style dataset works. A `TensorDataset` is sliced a batch at a time; any other dataset (e.g.
    `(PIL.Image, int)` items with a transform, the torchvision convention), or any dataset given a
    `collate_fn`, goes through a `DataLoader` with the same order, `collate_fn` (a batch is then what
    it returns), `num_workers` and `pin_memory`.

    Args:
        dataset: a map-style dataset of N items (`(*inputs, label)`).
        batch_size: S1's size, per process; the last batch of an epoch may be smaller unless `drop_last`.
        second_batch_size: S2's size, per process (default: `batch_size`); S2 is always full.
        seed: fixes both streams with the epoch (and the rank).
        drop_last: drop S1's last, incomplete batch (always, with several processes).
        paired: yield `(S1, S2)`; False: S1 alone, the same batches.
        num_workers, collate_fn, pin_memory: as `DataLoader` takes them (a dataset that is not a `TensorDataset`).
        rank, world_size: this process's share of the global batches (above).

    Yields:
        `(S1, S2)`, each what the dataset's items collate to: for a `TensorDataset` of inputs (N, ...) and labels
        (N,), `((x1 (B, ...), y1 (B,)), (x2 (B2, ...), y2 (B2,)))`; S1 alone with `paired=False`. `len(loader)` is
        the number of steps of an epoch.

    Raises:
        BadValue: a dataset without a length; `seed` not an int in [0, 2**64) (what torch and numpy both take:
            `checks.check_seed`); a batch size, `num_workers`, `rank` or `world_size` not a count in range, a
            batch larger than the dataset, `drop_last`, `paired` or `pin_memory` not a bool, or
            `collate_fn` not callable.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from itra import PairedLoader
        >>> train_set = TensorDataset(torch.randn(10, 3), torch.arange(10) % 2)
        >>> loader = PairedLoader(train_set, batch_size=4, seed=0)
        >>> len(loader)  # steps per epoch: 4 + 4 + 2 samples
        3
        >>> for (x1, y1), (x2, y2) in loader:  # epoch 0; the next `for` is epoch 1, in a new order
        ...     print(tuple(x1.shape), tuple(y1.shape), tuple(x2.shape))
        (4, 3) (4,) (4, 3)
        (4, 3) (4,) (4, 3)
        (2, 3) (2,) (4, 3)
        >>> loader.epoch
        1
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        second_batch_size: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        paired: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_map_dataset("dataset", dataset, "PairedLoader")
        size = len(dataset)  # type: ignore[arg-type]
        second_batch_size = batch_size if second_batch_size is None else second_batch_size
        check_seed("seed", seed)
        for name, value in (("drop_last", drop_last), ("paired", paired), ("pin_memory", pin_memory)):
            check_flag(name, value)
        if collate_fn is not None and not callable(collate_fn):
            raise BadValue(f"Expected `collate_fn` to be a function of a list of items, or None, but got {collate_fn!r}")
        check_count("num_workers", num_workers, minimum=0)
        check_count("world_size", world_size)
        check_count("rank", rank, minimum=0)
        if rank >= world_size:
            raise BadValue(f"Expected `rank` in [0, world_size={world_size}), but got {rank!r}")
        for name, value in (("batch_size", batch_size), ("second_batch_size", second_batch_size)):
            check_count(name, value)
            if value * world_size > size:
                what, shown = (f"`{name}` x world_size", f"{value} x {world_size}") if world_size > 1 else (f"`{name}`", value)
                raise BadValue(f"Expected {what} <= the dataset size {size}, but got {shown}")
        if pin_memory and not torch.cuda.is_available():  # what DataLoader does too
            warnings.warn("PairedLoader: pin_memory=True, but there is no CUDA GPU to copy batches to; "
                          "they are not pinned")
            pin_memory = False
        self.dataset = dataset
        self.batch_size = batch_size
        self.second_batch_size = second_batch_size
        self.seed = seed
        self.drop_last = drop_last or world_size > 1  # equal steps on every rank
        self.paired = paired
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.rank, self.world_size = rank, world_size
        self.epoch = 0  # of the next iteration

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (later ones follow from it)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise BadValue(f"Expected `epoch` to be an integer >= 0, but got {epoch!r}")
        self.epoch = epoch

    def __len__(self) -> int:
        size, step = len(self.dataset), self.batch_size * self.world_size  # type: ignore[arg-type]
        return size // step if self.drop_last else -(-size // step)

    def _pass(self, batch_size: int, generator: torch.Generator, drop_last: bool) -> Iterator[Any]:
        return shuffled_batches(self.dataset, batch_size, generator, drop_last, self.num_workers, self.collate_fn,
                                self.pin_memory, self.rank, self.world_size)

    def _second_stream(self, epoch: int) -> Iterator[Any]:
        generator = epoch_generator(self.seed, epoch, stream=2)
        while True:
            yield from self._pass(self.second_batch_size, generator, drop_last=True)

    def __iter__(self) -> Iterator[tuple[Any, Any]] | Iterator[Any]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        first = self._pass(self.batch_size, epoch_generator(self.seed, epoch, stream=1), self.drop_last)
        if not self.paired:
            return first
        return zip(first, self._second_stream(epoch))
