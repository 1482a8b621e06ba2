"""Training on some of a dataset's classes: the open-set split of out-of-distribution detection (`itra ood`).

    itra train --dataset fashion-mnist-first6 ...    # Fashion-MNIST's first 6 classes; the other 4 are held out

`keep_classes` restricts a dataset's training and test sets to the classes it is given, relabelled 0..k-1 in the
order given; `held_out` is the test samples of every other class: inputs of the same domain that no class of the
model covers (near out-of-distribution). No sample of a held-out class is in the training set, so none is in what is
drawn from it later (a validation split, a training subset): those pick samples, and label noise moves a label to
another of the k kept classes (tests/data/test_classes.py checks this over generated class lists).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

from itra.data.batches import subset_by_index
from itra.data.splits import Splits, dataset_labels
from itra.errors import BadValue


def check_classes(classes: Sequence[int], num_classes: int, dataset: str) -> tuple[int, ...]:
    """`classes` as a tuple of class indices of `dataset` (which has `num_classes`): integers in [0, num_classes),
    no duplicates, at least 2 (a classifier needs two) and at least one class left out (the held-out set).

    Raises:
        BadValue: a one-line message naming the bad entry.

    >>> check_classes([0, 1, 2], 10, "fashion-mnist")
    (0, 1, 2)
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise BadValue(f"Expected `classes` to be a list of class indices of {dataset}, but got {classes!r}")
    for k in classes:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < num_classes:
            raise BadValue(f"Expected `classes` of {dataset} in [0, {num_classes}), but got {k!r} in {list(classes)}")
    repeated = sorted({k for k in classes if list(classes).count(k) > 1})
    if repeated:
        raise BadValue(f"Expected distinct `classes` of {dataset}, but {repeated} appear more than once in "
                       f"{list(classes)}")
    if not 2 <= len(classes) < num_classes:
        raise BadValue(f"Expected `classes` to keep 2 to {num_classes - 1} of the {num_classes} classes of {dataset} "
                       f"(a classifier needs two; the rest are held out), but got {len(classes)}: {list(classes)}")
    return tuple(classes)


def _labels(dataset: Dataset, dataset_name: str) -> torch.Tensor:
    labels = dataset_labels(dataset)
    if labels is None:
        raise BadValue(f"{dataset_name}: keeping some classes needs a dataset that holds its labels apart (a "
                       f"TensorDataset, or one with `labels`), but got {type(dataset).__name__}")
    return labels.long()


def _where(dataset: Dataset, dataset_name: str, classes: tuple[int, ...], num_classes: int, keep: bool) -> torch.Tensor:
    """Indices (n,) ascending of the samples of `dataset` whose label is in `classes` (`keep`) or is not."""
    member = torch.zeros(num_classes, dtype=torch.bool)
    member[list(classes)] = True
    return (member[_labels(dataset, dataset_name)] == keep).nonzero().squeeze(1)


def keep_classes(splits: Splits, classes: Sequence[int], name: str | None = None) -> Splits:
    """`splits` with only the samples of `classes` (train and test, in their order), class `classes[j]` relabelled j,
    named `name` (default: `<name>-classes<c1>-<c2>...`); the other classes are `held_out`.

    Args:
        splits: a dataset whose train and test sets hold their labels (N,) apart (`data.splits.dataset_labels`).
        classes: the class indices to keep (`check_classes`).
        name: the name of the result.

    Returns:
        `Splits` of len(classes) classes, with their names.

    Raises:
        BadValue: a bad class list (`check_classes`), or a dataset without its labels apart.

    >>> from torch.utils.data import TensorDataset
    >>> toy = Splits("toy", TensorDataset(torch.arange(6.0), torch.tensor([0, 1, 2, 0, 1, 2])),
    ...              TensorDataset(torch.arange(3.0), torch.tensor([2, 1, 0])), 3, ("a", "b", "c"))
    >>> kept = keep_classes(toy, [2, 0])
    >>> kept.name, kept.class_names, kept.train.tensors[1].tolist(), kept.test.tensors[0].tolist()
    ('toy-classes2-0', ('c', 'a'), [1, 0, 1, 0], [0.0, 2.0])
    """
    classes = check_classes(classes, splits.num_classes, splits.name)
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.int64)
    relabel[list(classes)] = torch.arange(len(classes))

    def keep(dataset: Dataset) -> Dataset:
        *inputs, labels = subset_by_index(dataset, _where(dataset, splits.name, classes, splits.num_classes,
                                                          keep=True)).tensors  # type: ignore[attr-defined]
        return TensorDataset(*inputs, relabel[labels])

    if not all(isinstance(d, TensorDataset) for d in (splits.train, splits.test)):
        raise BadValue(f"{splits.name}: keeping some classes needs in-memory TensorDatasets, but got "
                       f"{type(splits.train).__name__}")
    return dataclasses.replace(splits, name=name or f"{splits.name}-classes{'-'.join(map(str, classes))}",
                               train=keep(splits.train), test=keep(splits.test), num_classes=len(classes),
                               class_names=tuple(splits.class_names[k] for k in classes), val=None)


def held_out(splits: Splits, classes: Sequence[int]) -> Dataset:
    """The test samples (with their own labels, in their order) of every class of `splits` not in `classes`: the
    near out-of-distribution set of a model trained on `keep_classes(splits, classes)`.

    >>> from torch.utils.data import TensorDataset
    >>> toy = Splits("toy", TensorDataset(torch.arange(3.0), torch.tensor([0, 1, 2])),
    ...              TensorDataset(torch.arange(4.0), torch.tensor([2, 1, 0, 2])), 3, ("a", "b", "c"))
    >>> held_out(toy, [0, 1]).tensors[0].tolist()
    [0.0, 3.0]
    """
    classes = check_classes(classes, splits.num_classes, splits.name)
    return subset_by_index(splits.test, _where(splits.test, splits.name, classes, splits.num_classes, keep=False))
