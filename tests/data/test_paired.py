import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from itra.data.paired import PairedLoader


def dataset(n=200, classes=4):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # the value is the sample's index
    y = torch.arange(n) % classes
    return TensorDataset(x, y)


def test_s2_is_drawn_independently_of_s1():
    loader = PairedLoader(dataset(), batch_size=20, seed=0)
    pairs = list(loader)
    assert len(pairs) == len(loader) == 10
    first = torch.cat([x1 for (x1, _), _ in pairs]).flatten().long()
    second = torch.cat([x2 for _, (x2, _) in pairs]).flatten().long()
    assert sorted(first.tolist()) == list(range(200))  # S1 is one pass over the data
    assert (first != second).float().mean() > 0.9  # S2 draws other indices, not S1 again
    overlap = sum(len(set(x1.flatten().tolist()) & set(x2.flatten().tolist())) for (x1, _), (x2, _) in pairs)
    assert overlap < 50  # by chance about 20 * 20 / 200 = 2 per pair, 20 in all; 200 if S2 were S1
    # Same label distribution: each pass of S2 is a permutation of the whole set.
    y2 = torch.cat([y2 for _, (_, y2) in pairs])
    assert torch.bincount(y2, minlength=4).tolist() == [50, 50, 50, 50]


def test_s2_has_its_own_size_and_is_always_full():
    loader = PairedLoader(dataset(90), batch_size=40, second_batch_size=25, seed=1)
    sizes = [(len(y1), len(y2)) for (_, y1), (_, y2) in loader]
    assert sizes == [(40, 25), (40, 25), (10, 25)]


def test_batches_depend_only_on_seed_and_epoch():
    def order(seed, epoch):
        loader = PairedLoader(dataset(), batch_size=32, seed=seed)
        loader.set_epoch(epoch)
        return [torch.cat([x1, x2]).flatten().tolist() for (x1, _), (x2, _) in loader]

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)


def test_unpaired_yields_the_same_s1():
    paired = [x1 for (x1, _), _ in PairedLoader(dataset(), batch_size=32, seed=5)]
    alone = [x for x, _ in PairedLoader(dataset(), batch_size=32, seed=5, paired=False)]
    assert all(torch.equal(a, b) for a, b in zip(paired, alone)) and len(paired) == len(alone)


class ItemDataset(Dataset):
    def __len__(self):
        return 50

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i % 5


def test_any_map_style_dataset_works():
    pairs = list(PairedLoader(ItemDataset(), batch_size=10, seed=0))
    assert len(pairs) == 5
    (x1, y1), (x2, y2) = pairs[0]
    assert x1.shape == (10, 1) and y2.shape == (10,)


@pytest.mark.parametrize("kwargs,match", [({"batch_size": 0}, "batch_size"), ({"batch_size": 500}, "dataset size"),
                                          ({"batch_size": 8, "second_batch_size": -1}, "second_batch_size")])
def test_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PairedLoader(dataset(), **kwargs)
