import numpy as np
import pytest
import torch
from PIL import Image
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


def orders(loader, epochs, pin=False):
    """The S1 and S2 sample indices of `epochs` iterations of `loader` (with `pin`, `set_epoch` before each)."""
    seen = []
    for epoch in range(epochs):
        if pin:
            loader.set_epoch(epoch)
        pairs = list(loader)
        seen.append(tuple(tuple(torch.cat([batch[0] for batch in part]).flatten().tolist()) for part in zip(*pairs)))
    return seen


def test_each_iteration_is_the_next_epoch_unless_set_epoch_pins_it():
    advancing = orders(PairedLoader(dataset(), batch_size=32, seed=0), 3)
    assert len({first for first, _ in advancing}) == len({second for _, second in advancing}) == 3
    assert advancing == orders(PairedLoader(dataset(), batch_size=32, seed=0), 3, pin=True)  # epoch e is epoch e
    pinned = PairedLoader(dataset(), batch_size=32, seed=0)
    for _ in range(2):
        pinned.set_epoch(1)
        assert orders(pinned, 1) == advancing[1:2]
    assert orders(pinned, 1) == advancing[2:3]  # after a pinned epoch, the next one follows


def test_s2_stays_independent_of_s1_in_later_epochs():
    loader = PairedLoader(dataset(), batch_size=20, seed=0)
    for first, second in orders(loader, 3):
        assert sorted(first) == list(range(200)) and sorted(second) == list(range(200))
        assert sum(a == b for a, b in zip(first, second)) < 20  # about 1 by chance; 200 if S2 were S1


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


class PILDataset(Dataset):
    """(PIL.Image, int) items, the torchvision convention: image i is 4x4 grey pixels of value i."""

    def __init__(self, transform=None, size=50):
        self.transform, self.size = transform, size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        image = Image.fromarray(np.full((4, 4), i, dtype=np.uint8))
        return (image if self.transform is None else self.transform(image)), i % 5


def to_tensor(image):
    """(1, H, W) float32 in [0, 1], as torchvision's ToTensor gives a grey image."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).unsqueeze(0)


def stack_images(items):
    images, labels = zip(*items)
    return torch.stack([to_tensor(image) for image in images]), torch.tensor(labels)


def pixel_values(x):
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def test_a_pil_dataset_with_a_transform_or_a_collate_fn_gives_the_order_of_a_tensor_dataset():
    tensors = TensorDataset(torch.arange(50).unsqueeze(1), torch.arange(50) % 5)
    expected = [(x1.flatten().tolist(), x2.flatten().tolist()) for (x1, _), (x2, _) in PairedLoader(tensors, 10, seed=3)]
    for loader in (PairedLoader(PILDataset(to_tensor), 10, seed=3),
                   PairedLoader(PILDataset(), 10, seed=3, collate_fn=stack_images)):
        pairs = list(loader)
        (x1, y1), (x2, y2) = pairs[0]
        assert x1.shape == (10, 1, 4, 4) and x1.dtype == torch.float32 and y2.shape == (10,)
        assert [(pixel_values(x1), pixel_values(x2)) for (x1, _), (x2, _) in pairs] == expected
        assert all(torch.equal(y, torch.tensor(pixel_values(x)) % 5) for pair in pairs for x, y in pair)


def test_a_pil_dataset_without_a_transform_needs_a_collate_fn():
    with pytest.raises(TypeError, match="PIL"):
        next(iter(PairedLoader(PILDataset(), 10)))


def test_a_collate_fn_applies_to_a_tensor_dataset_too():
    def as_dict(items):
        x, y = zip(*items)
        return {"x": torch.stack(x), "y": torch.stack(y)}

    first, second = next(iter(PairedLoader(dataset(), batch_size=8, second_batch_size=4, collate_fn=as_dict)))
    assert first["x"].shape == (8, 1) and second["y"].shape == (4,)


def test_workers_give_the_same_batches():
    def batches(workers):
        return [torch.cat([x1, x2]).flatten().tolist()
                for (x1, _), (x2, _) in PairedLoader(ItemDataset(), batch_size=10, seed=2, num_workers=workers)]

    assert batches(2) == batches(0)


def test_pin_memory_without_a_gpu_warns_and_still_loads():
    if torch.cuda.is_available():
        pytest.skip("this machine can pin memory")
    with pytest.warns(UserWarning, match="no CUDA GPU"):
        loader = PairedLoader(dataset(), batch_size=10, pin_memory=True)
    assert len(list(loader)) == 20


@pytest.mark.parametrize("data", [dataset(), ItemDataset()], ids=["tensor-dataset", "item-dataset"])
def test_ranks_take_their_slice_of_one_process_global_batches(data):
    world, m = 3, 4
    whole = PairedLoader(data, batch_size=world * m, second_batch_size=world * 5, seed=7, drop_last=True)
    ranks = [PairedLoader(data, batch_size=m, second_batch_size=5, seed=7, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 2):
        for loader in (whole, *ranks):
            loader.set_epoch(epoch)
        steps = list(zip(whole, *ranks))
        assert len(steps) == len(whole) == len(ranks[0]) == len(data) // (world * m)  # the incomplete batch is dropped
        for (first, second), *shards in steps:
            for stream, batch in ((0, first), (1, second)):
                for tensor in range(2):  # inputs, labels
                    assert torch.equal(torch.cat([shard[stream][tensor] for shard in shards]), batch[tensor])


@pytest.mark.parametrize("kwargs,match", [({"batch_size": 0}, "batch_size"), ({"batch_size": 500}, "dataset size"),
                                          ({"batch_size": 8, "second_batch_size": -1}, "second_batch_size"),
                                          ({"batch_size": 80, "world_size": 3}, r"`batch_size` x world_size <= the "
                                           r"dataset size 200, but got 80 x 3"),
                                          ({"batch_size": 8, "rank": 2, "world_size": 2}, "rank")])
def test_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PairedLoader(dataset(), **kwargs)


def test_an_iterable_dataset_and_a_negative_epoch_are_one_clear_error():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield torch.zeros(2), 0

    with pytest.raises(ValueError, match="needs a map-style dataset with a length, but got Stream"):
        PairedLoader(Stream(), 2)
    loader = PairedLoader(TensorDataset(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long)), 2)
    with pytest.raises(ValueError, match="Expected `epoch` to be an integer >= 0, but got -1"):
        loader.set_epoch(-1)


def test_workers_give_the_batches_and_augmentation_of_no_workers(tmp_path):
    """Lazily decoded images (an ImageFolderDataset of PNG files) decoded in 2 worker processes: the same S1, S2
    and augmented batches as in the training process, for the same seed."""
    from itra.data.image_folder import load_image_folder
    from itra.data.transforms import standard_augmentation

    generator = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            for index in range(12):
                pixels = generator.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / label / f"{index}.png")
    splits = load_image_folder(tmp_path, image_size=16)
    augment = standard_augmentation(2)

    def batches(workers):
        loader = PairedLoader(splits.train, 5, 3, seed=1, num_workers=workers)
        augmentation = torch.Generator().manual_seed(7)
        return [[(augment(x, augmentation), y) for x, y in pair] for epoch in range(2) for pair in loader]

    for (first, second), (first_w, second_w) in zip(batches(0), batches(2), strict=True):
        for (x, y), (x_w, y_w) in ((first, first_w), (second, second_w)):
            assert torch.equal(x, x_w) and torch.equal(y, y_w)
