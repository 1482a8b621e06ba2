"""Training on some of a dataset's classes (`itra.data.classes`, `fashion-mnist-first6`): no sample of a held-out class
reaches training, whatever the class list, validation split, subset and label noise (generated); a bad class list is
one line, in the library and through `itra train` (generated)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.utils.data import TensorDataset

from itra.cli import main
from itra.data.classes import check_classes, held_out, keep_classes
from itra.data.registry import CLASS_SUBSETS, DATASETS, ImageDataset, _class_subset, held_out_set, load_dataset
from itra.data.splits import Splits, run_splits
from itra.errors import BadValue

from tests.helpers import needs_fmnist


def tagged(num_classes: int, per_class: int, seed: int) -> Splits:
    """Images (N, 1, 2, 2) whose first pixel is the sample's own class and second its index, shuffled: a sample's
    true class can be read back from its image whatever its label became."""
    def part(n: int, offset: int) -> TensorDataset:
        labels = torch.arange(num_classes).repeat(n)[torch.randperm(num_classes * n, generator=generator)]
        images = torch.zeros(len(labels), 1, 2, 2)
        images[:, 0, 0, 0], images[:, 0, 0, 1] = labels.float(), torch.arange(len(labels)).float() + offset
        return TensorDataset(images, labels)

    generator = torch.Generator().manual_seed(seed)
    return Splits("tagged", part(per_class, 0), part(max(1, per_class // 2), 10_000), num_classes,
                  tuple(f"c{k}" for k in range(num_classes)))


@st.composite
def class_lists(draw):
    num_classes = draw(st.integers(3, 10))
    kept = draw(st.lists(st.integers(0, num_classes - 1), min_size=2, max_size=num_classes - 1, unique=True))
    return num_classes, kept


@settings(max_examples=60, deadline=None)
@given(case=class_lists(), per_class=st.integers(4, 30), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_no_held_out_class_reaches_training_validation_or_the_id_test_set(case, per_class, seed, data):
    num_classes, kept = case
    source = tagged(num_classes, per_class, seed)
    splits = keep_classes(source, kept)
    train_size = len(kept) * per_class
    val_split = data.draw(st.sampled_from([0, *range(2 * len(kept), train_size, max(1, train_size // 4))]))
    left = train_size - val_split
    train_subset = data.draw(st.one_of(st.none(), st.integers(1, left)))
    noise = data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    run = run_splits(splits, train_subset, None, noise, seed % 1000, val_split)
    relabel = {k: j for j, k in enumerate(kept)}
    for name, part in (("train", run.train), ("val", run.val), ("test", run.test)):
        if part is None:
            continue
        images, labels = part.tensors
        true = images[:, 0, 0, 0].long()
        assert set(true.tolist()) <= set(kept), name  # never a held-out class
        assert set(labels.tolist()) <= set(range(len(kept))), name  # labels of the kept classes only, noise included
        if name != "train" or noise == 0:
            assert labels.tolist() == [relabel[k] for k in true.tolist()], name
    held = held_out(source, kept).tensors[0][:, 0, 0, 0].long()
    assert held.numel() and not set(held.tolist()) & set(kept)
    # the test set is split, not sampled: the kept classes' samples and the held-out ones are all of it, once each
    ids = sorted(run.test.tensors[0][:, 0, 0, 1].tolist() + held_out(source, kept).tensors[0][:, 0, 0, 1].tolist())
    assert ids == sorted(source.test.tensors[0][:, 0, 0, 1].tolist())
    assert splits.class_names == tuple(f"c{k}" for k in kept) and splits.num_classes == len(kept)


BAD_LISTS = {  # damage: the class list of a dataset of K classes
    "duplicate": lambda K: [0, 1, 1], "duplicate far apart": lambda K: [K - 1, 0, K - 1], "K": lambda K: [0, K],
    "negative": lambda K: [-1, 0], "huge": lambda K: [0, 10**20], "float": lambda K: [0, 1.0], "bool": lambda K: [0, True],
    "text item": lambda K: [0, "1"], "None item": lambda K: [0, None], "one class": lambda K: [0],
    "no class": lambda K: [], "every class": lambda K: list(range(K)), "a string": lambda K: "012",
    "a number": lambda K: 3, "None": lambda K: None,
}
BAD_CASES = [(K, damage) for K in (3, 6, 10) for damage in BAD_LISTS]


@pytest.mark.parametrize("num_classes, damage", BAD_CASES, ids=[f"K{K}-{d}" for K, d in BAD_CASES])
def test_a_bad_class_list_is_one_line_naming_it(num_classes, damage):
    source = tagged(num_classes, 2, 0)
    for call in (keep_classes, held_out):
        with pytest.raises(BadValue) as error:
            call(source, BAD_LISTS[damage](num_classes))
        message = str(error.value)
        assert "\n" not in message and "`classes`" in message and "tagged" in message, message


@pytest.mark.parametrize("damage", ["duplicate", "K", "negative", "every class", "one class"])
def test_a_registered_class_subset_with_a_bad_list_is_one_line_through_itra_train(tmp_path, capsys, monkeypatch,
                                                                                   damage):
    monkeypatch.setitem(CLASS_SUBSETS, "digits-bad", ("digits", tuple(BAD_LISTS[damage](10))))
    monkeypatch.setitem(DATASETS, "digits-bad", ImageDataset(_class_subset("digits-bad")))
    code = main(["train", "--dataset", "digits-bad", "--epochs", "1", "--train-subset", "64", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "`classes`" in err and "digits" in err, err


def test_check_classes_keeps_the_order_given():
    assert check_classes([5, 0, 2], 6, "x") == (5, 0, 2)


@needs_fmnist
def test_fashion_mnist_first6_is_the_first_six_classes_and_holds_out_the_rest():
    whole, first6 = load_dataset("fashion-mnist"), load_dataset("fashion-mnist-first6")
    assert first6.name == "fashion-mnist-first6" and first6.num_classes == 6
    assert first6.class_names == whole.class_names[:6]
    assert (len(first6.train), len(first6.test)) == (36_000, 6_000)
    kept = whole.train.tensors[1] < 6
    assert torch.equal(first6.train.tensors[0], whole.train.tensors[0][kept])
    assert torch.equal(first6.train.tensors[1], whole.train.tensors[1][kept])
    held = held_out_set("fashion-mnist-first6")
    assert len(held) == 4_000 and set(held.tensors[1].tolist()) == {6, 7, 8, 9}
    assert held_out_set("fashion-mnist") is None and first6.image_shape == (1, 28, 28)


def test_the_docstring_examples_run():
    import doctest

    import itra.data.classes

    assert doctest.testmod(itra.data.classes).failed == 0
