"""The one shape every dataset loader returns."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset, TensorDataset

from itra.data.batches import epoch_generator, subset, subset_by_index
from itra.data.label_noise import with_label_noise
from itra.errors import BadValue

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Splits:
    """A classification dataset ready for `itra.train`.

    Items of `train` and `test` are tuples `(*inputs, label)`: `(image, label)` for images
    (float, normalised), `(input_ids, attention_mask, label)` for text. The model is called as
    `model(*inputs)`. `train_transform`, when set, augments a whole training batch of images
    `(B, C, H, W)` with an explicit generator (random crop, flip, ...); test data is never augmented.
    `val`, when set (`run_splits` with a validation split), holds training samples never trained on.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    class_names: tuple[str, ...]
    train_transform: BatchTransform | None = None
    val: Dataset | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image, what an image model is built for (the first training sample's; every loader
        gives images of one shape)."""
        return tuple(self.train[0][0].shape)  # type: ignore[index]


# The validation set is stratified by class and fits a temperature and picks the early-stopping epoch: with under
# 2 samples per class some classes are absent or seen once, and it fits noise (--val-split 5 of Fashion-MNIST's 10
# classes: validation accuracy 100 %, T at its 0.01 bound, test CE 3.74 after scaling against 1.62 before).
MIN_VAL_PER_CLASS = 2


def run_splits(splits: Splits, train_subset: int | None, test_subset: int | None, label_noise: float, seed: int,
               val_split: int = 0) -> Splits:
    """The data one run trains, validates and tests on. With `val_split` N > 0, N training samples are held out
    first as `val`, chosen by `seed` and stratified by label (`holdout`); the rest is the training set. Then
    fixed random subsets of the given sizes (a size larger than the set is an error) (the same for every seed, so every method and seed sees the
    same data; with a validation split, drawn from what remains), and `label_noise` of the training labels
    flipped, chosen by `seed`. Validation and test labels are never changed."""
    train, val = splits.train, None
    if val_split:
        if val_split < MIN_VAL_PER_CLASS * splits.num_classes:
            raise BadValue(f"--val-split {val_split} is too small for the {splits.num_classes} classes of {splits.name}: "
                           f"use at least {MIN_VAL_PER_CLASS * splits.num_classes} ({MIN_VAL_PER_CLASS} per class), or 0 "
                           "for no validation set")
        if val_split >= len(train):  # type: ignore[arg-type]
            raise BadValue(f"--val-split {val_split} holds out the whole training set of {splits.name} "
                             f"({len(train)} samples): choose a smaller one")  # type: ignore[arg-type]
        kept, held = holdout(dataset_labels(train), len(train), val_split, epoch_generator(seed, 0, stream=6))  # type: ignore[arg-type]
        train, val = subset_by_index(train, kept), subset_by_index(train, held)
    for flag, size, part, whole in (("--train-subset", train_subset, "training set", train),
                                    ("--test-subset", test_subset, "test set", splits.test)):
        if size is not None and size > len(whole):  # type: ignore[arg-type]
            rest = " left after --val-split" if val_split and whole is train else ""
            raise BadValue(f"{flag} {size} is larger than the {part} of {splits.name} ({len(whole)} samples{rest}): "  # type: ignore[arg-type]
                             f"use at most {len(whole)}, or leave it unset for the whole set")  # type: ignore[arg-type]
    train = with_label_noise(subset(train, train_subset), splits.num_classes, label_noise,
                             epoch_generator(seed, 0, stream=4))
    return dataclasses.replace(splits, train=train, test=subset(splits.test, test_subset), val=val)


def dataset_labels(dataset: Dataset) -> torch.Tensor | None:
    """The labels (N,) of a dataset that holds them apart from its inputs (a `TensorDataset`'s last tensor, a
    dataset's `labels`), else None."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[-1]
    labels = getattr(dataset, "labels", None)
    return None if labels is None else torch.as_tensor(labels)


def holdout(labels: torch.Tensor | None, length: int, size: int, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held), each ascending, of a random split of `length` samples with `size` held out; with
    `labels` (length,), stratified: class k gets its share size * n_k / length of the held-out samples, rounded
    by largest remainder (ties to the lower class) so that they add up to `size`, its samples drawn at random."""
    order = torch.randperm(length, generator=generator)
    if labels is None:
        held = order[:size]
    else:
        labels = labels.long()
        counts = torch.bincount(labels)
        quota, remainder = (size * counts) // length, (size * counts) % length
        quota[torch.argsort(-remainder, stable=True)[: size - int(quota.sum())]] += 1
        shuffled = labels[order]  # (length,)
        by_class = torch.argsort(shuffled, stable=True)  # positions in `order`, class by class, in shuffled order
        starts = counts.cumsum(0) - counts
        rank = torch.empty_like(order)
        rank[by_class] = torch.arange(length) - starts[shuffled[by_class]]  # rank of each position within its class
        held = order[rank < quota[shuffled]]
    held = held.sort().values
    kept = torch.ones(length, dtype=torch.bool)
    kept[held] = False
    return kept.nonzero().squeeze(1), held
