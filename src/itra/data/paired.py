"""Paired mini-batches: S1 for the cross-entropy, and an independent S2 to match its features against."""
from __future__ import annotations

from typing import Iterator

from torch.utils.data import Dataset

from itra.data.batches import Batch, epoch_generator, shuffled_batches


class PairedLoader:
    """Yields `(S1, S2)` pairs of batches, each a tuple `(*inputs, labels)`, e.g. `((x1, y1), (x2, y2))`.

    S1 is one shuffled pass over the dataset (the epoch). S2 is drawn from a stream with its own
    generator, so it is independent of S1: a fresh shuffled pass, chained into the next when it runs
    out, always `second_batch_size` samples. Both are fixed by `(seed, epoch)`; call `set_epoch`
    before each epoch (as with `DistributedSampler`). With `paired=False` it yields S1 alone, the same
    S1 batches as with pairing, so methods that do not need S2 see the same data in the same order.

    Example:
        for (x1, y1), (x2, y2) in PairedLoader(train_set, batch_size=128):
            ...
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
    ) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        second_batch_size = batch_size if second_batch_size is None else second_batch_size
        for name, value in (("batch_size", batch_size), ("second_batch_size", second_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected `{name}` to be an integer larger than 0, but got {value!r}")
            if value > size:
                raise ValueError(f"Expected `{name}` <= the dataset size {size}, but got {value}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.second_batch_size = second_batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.paired = paired
        self.num_workers = num_workers
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        size = len(self.dataset)  # type: ignore[arg-type]
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def _second_stream(self) -> Iterator[Batch]:
        generator = epoch_generator(self.seed, self.epoch, stream=2)
        while True:
            yield from shuffled_batches(self.dataset, self.second_batch_size, generator, True, self.num_workers)

    def __iter__(self) -> Iterator[tuple[Batch, Batch]] | Iterator[Batch]:
        first = shuffled_batches(
            self.dataset, self.batch_size, epoch_generator(self.seed, self.epoch, stream=1), self.drop_last, self.num_workers
        )
        if not self.paired:
            return first
        return zip(first, self._second_stream())
