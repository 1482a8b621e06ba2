"""Retrieval metrics (`itra.retrieval`) against a float64 reference written the obvious way (each query's others
sorted by distance, its R and its precisions counted one by one) and against pytorch-metric-learning's
`AccuracyCalculator`, whose definitions they follow; bad arguments by class."""
import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import itra.retrieval
from itra.errors import BadValue
from itra.retrieval import retrieval_metrics

from tests.test_bad_values import FEATURE_DAMAGES

FAST = settings(max_examples=40, deadline=None)


def reference(features: torch.Tensor, labels: torch.Tensor) -> dict:
    units = [row / np.linalg.norm(row) for row in features.double().numpy()]
    y = labels.tolist()
    p1, rp, mapr = [], [], []
    for i, u in enumerate(units):
        others = sorted((float(np.linalg.norm(u - v)), j) for j, v in enumerate(units) if j != i)
        r = sum(1 for j in range(len(y)) if j != i and y[j] == y[i])
        if r == 0:
            continue  # no other sample of its class: left out
        hits = [y[j] == y[i] for _, j in others[:r]]
        p1.append(float(hits[0]))
        rp.append(sum(hits) / r)
        mapr.append(sum(sum(hits[:n + 1]) / (n + 1) for n in range(r) if hits[n]) / r)
    return {"precision_at_1": np.mean(p1), "r_precision": np.mean(rp), "map_at_r": np.mean(mapr), "queries": len(p1)}


def labelled(n, d, classes, seed, spread):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    centres = torch.randn(classes, d, generator=generator, dtype=torch.float64) * spread
    return centres[labels] + torch.randn(n, d, generator=generator, dtype=torch.float64), labels


@FAST
@given(n=st.integers(2, 30), d=st.integers(2, 5), classes=st.integers(1, 6), seed=st.integers(0, 999),
       spread=st.sampled_from([0.0, 1.0, 5.0]))
def test_the_metrics_are_their_definitions(n, d, classes, seed, spread):
    """d >= 2: in one dimension the normalised features are +-1, all tied."""
    features, labels = labelled(n, d, classes, seed, spread)
    if int(torch.bincount(labels).max()) < 2:
        with pytest.raises(BadValue, match="two samples"):
            retrieval_metrics(features, labels)
        return
    got, want = retrieval_metrics(features, labels), reference(features, labels)
    assert got["queries"] == want["queries"]
    for key in ("precision_at_1", "r_precision", "map_at_r"):  # sums of a few dozen fractions: rounding only
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_they_agree_with_pytorch_metric_learning():
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.inference import CustomKNN

    for seed, spread, classes in [(0, 1.0, 4), (1, 3.0, 7), (2, 0.3, 2), (3, 2.0, 10)]:
        features, labels = labelled(1500, 16, classes, seed, spread)  # more than one block of `itra.retrieval.CHUNK`
        calculator = accuracy_calculator.AccuracyCalculator(
            include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k="max_bin_count",
            knn_func=CustomKNN(LpDistance(normalize_embeddings=True)))
        theirs = calculator.get_accuracy(features, labels)  # the query set its own reference, as here
        ours = retrieval_metrics(features, labels)
        assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
        assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-6)
        assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


def test_perfect_and_scale_free_retrieval():
    features, labels = labelled(200, 8, 5, 0, 100.0)  # far-apart classes
    assert retrieval_metrics(features, labels) == {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0,
                                                   "queries": 200}
    features, labels = labelled(300, 8, 5, 1, 1.0)
    scaled = features * torch.rand(300, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 10
    assert retrieval_metrics(scaled, labels) == pytest.approx(retrieval_metrics(features, labels), abs=1e-12)


def test_the_docstring_examples_run():
    assert doctest.testmod(itra.retrieval).failed == 0


LABEL_DAMAGES = {"float dtype": lambda y: y.float(), "2-D": lambda y: y[:, None], "one too few": lambda y: y[1:],
                 "list": lambda y: y.tolist(), "text": lambda y: "abc"}
CASES = [("features", kind) for kind in FEATURE_DAMAGES] + [("labels", kind) for kind in LABEL_DAMAGES]


@pytest.mark.parametrize("argument, kind", CASES, ids=["-".join(case) for case in CASES])
def test_every_bad_argument_is_one_line_naming_it(argument, kind):
    arguments = {"features": torch.randn(6, 3), "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    arguments[argument] = (FEATURE_DAMAGES if argument == "features" else LABEL_DAMAGES)[kind](arguments[argument])
    with pytest.raises(BadValue, match=f"`{argument}`") as error:
        retrieval_metrics(**arguments)
    assert "\n" not in str(error.value)
