"""`run_splits`: the validation split (held out first, stratified, fixed by the seed, never trained on, clean
labels), the subset drawn from what remains, and `holdout` on its own."""
import pytest
import torch
from torch.utils.data import TensorDataset

from itra.data.splits import Splits, dataset_labels, holdout, run_splits


def toy_splits(n=1000, k=4):
    labels = torch.arange(n) % k
    labels[: n // 2] = 0  # unbalanced: class 0 holds more than half
    inputs = torch.arange(n, dtype=torch.float32)[:, None]  # each input is its own index
    return Splits("toy", TensorDataset(inputs, labels), TensorDataset(inputs[:100], labels[:100]), k, tuple("abcd"))


def indices(dataset):
    return set(dataset.tensors[0][:, 0].long().tolist())


def test_validation_never_overlaps_training_and_is_fixed_by_the_seed():
    splits = toy_splits()
    data = run_splits(splits, train_subset=300, test_subset=None, label_noise=0.3, seed=0, val_split=200)
    assert len(data.val) == 200 and len(data.train) == 300
    assert not indices(data.val) & indices(data.train)
    again = run_splits(splits, train_subset=300, test_subset=None, label_noise=0.3, seed=0, val_split=200)
    assert torch.equal(again.val.tensors[0], data.val.tensors[0]) and torch.equal(again.train.tensors[1], data.train.tensors[1])
    other = run_splits(splits, train_subset=300, test_subset=None, label_noise=0.3, seed=1, val_split=200)
    assert indices(other.val) != indices(data.val)


def test_validation_labels_stay_clean_under_label_noise():
    splits = toy_splits()
    data = run_splits(splits, None, None, label_noise=0.5, seed=2, val_split=100)
    true = splits.train.tensors[1]
    val_index = data.val.tensors[0][:, 0].long()
    assert torch.equal(data.val.tensors[1], true[val_index])
    train_index = data.train.tensors[0][:, 0].long()
    assert (data.train.tensors[1] != true[train_index]).float().mean() == pytest.approx(0.5, abs=0.01)


def test_holdout_is_stratified_and_exact_in_size():
    labels = toy_splits().train.tensors[1]
    kept, held = holdout(labels, len(labels), 101, torch.Generator().manual_seed(0))
    assert len(held) == 101 and len(kept) == len(labels) - 101
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(len(labels)))
    counts, held_counts = torch.bincount(labels), torch.bincount(labels[held], minlength=4)
    assert ((held_counts - 101 * counts / len(labels)).abs() < 1).all()  # each class its share, rounded
    assert torch.equal(kept, kept.sort().values) and torch.equal(held, held.sort().values)


def test_holdout_without_labels_is_a_plain_random_split():
    kept, held = holdout(None, 50, 10, torch.Generator().manual_seed(0))
    assert len(set(held.tolist())) == 10 and not set(held.tolist()) & set(kept.tolist())


def test_without_a_validation_split_the_data_is_as_before():
    splits = toy_splits()
    data = run_splits(splits, train_subset=300, test_subset=50, label_noise=0.2, seed=3)
    assert data.val is None
    from itra.data.batches import epoch_generator, subset
    from itra.data.label_noise import with_label_noise

    before = with_label_noise(subset(splits.train, 300), 4, 0.2, epoch_generator(3, 0, stream=4))  # the old recipe
    assert all(torch.equal(a, b) for a, b in zip(data.train.tensors, before.tensors))


def test_a_validation_split_as_large_as_the_data_is_refused():
    with pytest.raises(ValueError, match="--val-split 1000 holds out the whole training set"):
        run_splits(toy_splits(), None, None, 0.0, 0, val_split=1000)


def test_dataset_labels_reads_tensor_datasets_and_labels_attributes():
    class Lazy(torch.utils.data.Dataset):
        labels = [1, 0, 1]

    assert torch.equal(dataset_labels(Lazy()), torch.tensor([1, 0, 1]))
    assert dataset_labels(torch.utils.data.Subset(Lazy(), [0])) is None
    assert torch.equal(dataset_labels(toy_splits().train), toy_splits().train.tensors[1])


@pytest.mark.parametrize("val_split", [1, 5, 7])
def test_a_validation_split_of_under_two_samples_per_class_is_refused(val_split):
    with pytest.raises(ValueError, match=f"--val-split {val_split} is too small for the 4 classes of toy: use at "
                                         "least 8 \\(2 per class\\)"):
        run_splits(toy_splits(), None, None, 0.0, 0, val_split=val_split)
    assert len(run_splits(toy_splits(), None, None, 0.0, 0, val_split=8).val) == 8
