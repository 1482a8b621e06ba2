import pytest
import torch
from torch.utils.data import TensorDataset

from itra.data.batches import epoch_generator, ordered_batches, shuffled_batches, subset


def dataset(n=10):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # the value is the sample's index
    return TensorDataset(x, torch.arange(n) % 3)


def test_ordered_batches_cover_the_dataset_in_order_for_any_map_style_dataset():
    tensors = dataset()
    items = [tensors[i] for i in range(len(tensors))]  # a plain list of (x, y) tuples goes through a DataLoader
    from_tensors, from_items = list(ordered_batches(tensors, 4)), list(ordered_batches(items, 4))
    assert [len(y) for _, y in from_tensors] == [len(y) for _, y in from_items] == [4, 4, 2]
    for a, b in zip(from_tensors, from_items):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.cat([x for x, _ in from_tensors]).flatten().tolist() == list(range(10))


def test_subset_is_fixed_by_its_seed():
    data = dataset(100)
    indices = {seed: subset(data, 20, seed).tensors[0].flatten().tolist() for seed in (0, 1)}
    assert indices[0] == subset(data, 20, 0).tensors[0].flatten().tolist()
    assert indices[0] != indices[1]
    assert len(set(indices[0])) == 20
    assert torch.equal(subset(data, 20, 0).tensors[1], torch.tensor(indices[0]).long() % 3)  # labels stay paired


def test_subset_of_a_plain_dataset_holds_the_same_items():
    data = dataset(100)
    items = [data[i] for i in range(len(data))]
    picked = subset(items, 20, seed=0)
    assert [float(x) for x, _ in picked] == subset(data, 20, seed=0).tensors[0].flatten().tolist()


@pytest.mark.parametrize("size", [None, 10, 11])
def test_subset_is_the_dataset_itself_when_not_smaller(size):
    data = dataset(10)
    assert subset(data, size) is data


def test_shuffled_batches_drop_the_remainder_and_are_reproducible():
    data = dataset(10)
    batches = list(shuffled_batches(data, 4, epoch_generator(0, 0, 1), drop_last=True))
    assert [len(y) for _, y in batches] == [4, 4]
    again = list(shuffled_batches(data, 4, epoch_generator(0, 0, 1), drop_last=True))
    assert all(torch.equal(a, b) for batch, other in zip(batches, again) for a, b in zip(batch, other))
    kept = list(shuffled_batches(data, 4, epoch_generator(0, 0, 1), drop_last=False))
    assert [len(y) for _, y in kept] == [4, 4, 2]
    assert sorted(torch.cat([x for x, _ in kept]).flatten().tolist()) == list(range(10))


def test_shuffled_items_through_a_dataloader_come_in_the_order_of_the_tensor_fast_path():
    tensors = dataset(10)
    items = [tensors[i] for i in range(len(tensors))]  # a plain list of (x, y) tuples

    def as_lists(pairs):
        x, y = zip(*pairs)
        return torch.stack(x).flatten().tolist(), list(y)

    fast = [x.flatten().tolist() for x, _ in shuffled_batches(tensors, 4, epoch_generator(0, 0, 1), drop_last=False)]
    for data, collate_fn in ((items, None), (items, as_lists), (tensors, as_lists)):
        batches = list(shuffled_batches(data, 4, epoch_generator(0, 0, 1), drop_last=False, collate_fn=collate_fn))
        assert [x.flatten().tolist() if collate_fn is None else x for x, _ in batches] == fast


def test_epoch_generator_differs_across_seed_epoch_and_stream():
    def draw(seed, epoch, stream):
        return torch.randperm(1000, generator=epoch_generator(seed, epoch, stream)).tolist()

    assert draw(0, 0, 1) == draw(0, 0, 1)
    others = [draw(1, 0, 1), draw(0, 1, 1), draw(0, 0, 2)]
    assert all(other != draw(0, 0, 1) for other in others)
    assert len({tuple(o) for o in others}) == 3
