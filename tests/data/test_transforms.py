import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from itra.data import transforms
from itra.data.transforms import normalize, random_crop, random_horizontal_flip, standard_augmentation


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def crop_offsets(batch: torch.Tensor, crops: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    """For each image, the (top, left) of the window of the zero-padded image equal to its crop, by search."""
    _, _, h, w = batch.shape
    padded = F.pad(batch, (padding,) * 4)
    offsets = []
    for image, crop in zip(padded, crops):
        found = [
            (top, left)
            for top in range(2 * padding + 1)
            for left in range(2 * padding + 1)
            if torch.equal(image[:, top : top + h, left : left + w], crop)
        ]
        assert found, "crop is not a window of the padded image"
        offsets.append(found[0])
    return offsets


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
    padding=st.integers(0, 3), seed=st.integers(0, 2**31),
)
def test_crop_is_a_window_of_the_padded_image(b, c, h, w, padding, seed):
    batch = torch.rand(b, c, h, w, generator=generator(seed)) + 1  # no zeros, so padding is recognisable
    crops = random_crop(batch, padding, generator(seed))
    assert crops.shape == batch.shape and crops.dtype == batch.dtype
    crop_offsets(batch, crops, padding)  # asserts every crop is found


def test_crop_offsets_cover_every_position_and_no_more():
    padding = 2
    batch = torch.rand(500, 2, 5, 5, generator=generator(1)) + 1
    offsets = crop_offsets(batch, random_crop(batch, padding, generator(2)), padding)
    assert set(offsets) == {(t, l) for t in range(2 * padding + 1) for l in range(2 * padding + 1)}


def test_crop_without_padding_is_the_identity():
    batch = torch.rand(3, 3, 8, 8, generator=generator())
    assert torch.equal(random_crop(batch, 0, generator()), batch)


def test_crop_rejects_negative_padding():
    with pytest.raises(ValueError, match="padding"):
        random_crop(torch.zeros(1, 1, 4, 4), -1, generator())


@pytest.mark.parametrize("transform", [
    lambda x, g: random_crop(x, 4, g), random_horizontal_flip, standard_augmentation(4),
])
def test_same_seed_same_result(transform):
    batch = torch.rand(64, 3, 32, 32, generator=generator())
    first, second = transform(batch, generator(7)), transform(batch, generator(7))
    assert torch.equal(first, second)
    assert not torch.equal(first, transform(batch, generator(8)))


def test_flip_with_probability_one_and_zero():
    batch = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert torch.equal(random_horizontal_flip(batch, generator(), p=1.0), torch.flip(batch, dims=[-1]))
    assert torch.equal(random_horizontal_flip(batch, generator(), p=0.0), batch)


def test_flip_each_image_is_either_mirrored_or_kept():
    batch = torch.rand(400, 3, 4, 5, generator=generator())
    out = random_horizontal_flip(batch, generator(3))
    flipped = torch.tensor([torch.equal(o, torch.flip(x, dims=[-1])) for o, x in zip(out, batch)])
    kept = torch.tensor([torch.equal(o, x) for o, x in zip(out, batch)])
    assert (flipped ^ kept).all()
    assert 150 < int(flipped.sum()) < 250  # p = 0.5, 400 draws: 5 standard deviations


def test_flip_rejects_bad_probability():
    with pytest.raises(ValueError, match="probability"):
        random_horizontal_flip(torch.zeros(1, 1, 2, 2), generator(), p=1.5)


def test_standard_augmentation_is_crop_then_flip():
    batch = torch.rand(16, 3, 32, 32, generator=generator())
    g = generator(5)
    expected = random_horizontal_flip(random_crop(batch, 4, g), g)
    assert torch.equal(standard_augmentation(4)(batch, generator(5)), expected)


def test_normalize_known_values():
    images = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1).expand(2, 3, 2, 2)
    out = normalize(images, (0.5, 0.5, 0.0), (0.5, 0.25, 2.0))
    expected = torch.tensor([-1.0, 0.0, 0.5]).view(3, 1, 1).expand(2, 3, 2, 2)
    torch.testing.assert_close(out, expected)


def test_normalize_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="3 channel statistics"):
        normalize(torch.zeros(1, 3, 2, 2), transforms.KMNIST_MEAN, transforms.KMNIST_STD)


@pytest.mark.parametrize(
    "prefix, channels", [("CIFAR10", 3), ("CIFAR100", 3), ("STL10", 3), ("KMNIST", 1), ("IMAGENET", 3)]
)
def test_channel_statistics(prefix, channels):
    mean, std = getattr(transforms, f"{prefix}_MEAN"), getattr(transforms, f"{prefix}_STD")
    assert len(mean) == len(std) == channels
    assert all(0 < m < 1 for m in mean) and all(0 < s < 0.5 for s in std)
