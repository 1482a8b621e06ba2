"""The OOD scores and detection metrics of `itra.ood`, each against a float64 reference written the obvious way (loops
over samples and classes, numpy's pseudo-inverse) and the metrics against scikit-learn's and torchmetrics' own; bad
arguments by class. The cross-check against pytorch-ood's detectors is tests/test_ood_pytorch_ood.py."""
import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import itra.ood
from itra.errors import BadValue
from itra.ood import (OODScorer, auroc, energy_score, fit_class_gaussians, fpr_at_tpr, knn_score, mahalanobis_score,
                      max_logit_score, msp_score)

from tests.test_bad_values import FEATURE_DAMAGES, LABEL_DAMAGES, SCALAR_DAMAGES

FAST = settings(max_examples=30, deadline=None)


def gaussian(n, d, seed, scale=1.0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


# ---------------------------------------------------------------- references, written the obvious way
def reference_msp(z, t):
    """-max_k p_k, with every exponent shifted by the row's largest (the softmax's invariance; no overflow)."""
    return [-1 / sum(math.exp((v - max(row)) / t) for v in row) for row in z.tolist()]


def reference_energy(z):
    return [-(max(row) + math.log(sum(math.exp(v - max(row)) for v in row))) for row in z.tolist()]


def reference_mahalanobis(train, labels, k, test):
    """Class means and the shared covariance by loops, numpy's pseudo-inverse at torch's default cutoff, and the
    distance to every mean by loops."""
    x, y = train.numpy(), labels.numpy()
    means = [x[y == c].mean(axis=0) for c in range(k)]
    covariance = sum(np.outer(x[i] - means[y[i]], x[i] - means[y[i]]) for i in range(len(x))) / len(x)
    precision = np.linalg.pinv(covariance, rcond=covariance.shape[0] * np.finfo(np.float64).eps, hermitian=True)
    return [min(float((h - m) @ precision @ (h - m)) for m in means) for h in test.numpy()]


def reference_knn(test, train, k):
    units = [row / np.linalg.norm(row) for row in train.numpy()]
    return [sorted(float(np.linalg.norm(h / np.linalg.norm(h) - u)) for u in units)[k - 1] for h in test.numpy()]


def reference_auroc(inside, outside):
    """The Mann-Whitney statistic: P(s_out > s_in) + P(s_out = s_in) / 2 over all pairs."""
    wins = sum((o > i) + 0.5 * (o == i) for o in outside.tolist() for i in inside.tolist())
    return wins / (len(inside) * len(outside))


def reference_fpr(inside, outside, percent):
    """With t the ceil(percent / 100 N)-th smallest ID score (integer arithmetic: no rounding at the boundary), the
    fraction of OOD scores <= t."""
    accepted = -(-percent * len(inside) // 100)
    threshold = sorted(inside.tolist())[accepted - 1]
    return sum(o <= threshold for o in outside.tolist()) / len(outside)


# ---------------------------------------------------------------- the scores
@FAST
@given(n=st.integers(1, 12), k=st.integers(1, 6), t=st.sampled_from([0.05, 0.5, 1.0, 3.7]), seed=st.integers(0, 99),
       scale=st.sampled_from([0.1, 1.0, 20.0]))
def test_the_logit_scores_are_their_definitions(n, k, t, seed, scale):
    z = gaussian(n, k, seed, scale)
    # float64 softmax against math.exp: both rounded to about 1e-16 of the probabilities, which are at least 1e-300
    torch.testing.assert_close(msp_score(z, t), torch.tensor(reference_msp(z, t), dtype=torch.float64),
                               rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(energy_score(z), torch.tensor(reference_energy(z), dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert max_logit_score(z).tolist() == [-max(row) for row in z.tolist()]  # no arithmetic: exact


@FAST
@given(n_per_class=st.integers(1, 8), d=st.integers(1, 5), k=st.integers(1, 4), dead=st.integers(0, 2),
       seed=st.integers(0, 99))
def test_mahalanobis_is_the_distance_to_the_closest_class_mean(n_per_class, d, k, dead, seed):
    """Full-rank features, and features with dead units (a zero column: a ReLU unit no sample activates) whose
    covariance is singular: the pseudo-inverse leaves that direction out."""
    labels = torch.arange(k).repeat(n_per_class)
    train = torch.cat([gaussian(len(labels), d, seed) + 3 * labels[:, None], torch.zeros(len(labels), dead,
                                                                                          dtype=torch.float64)], 1)
    test = gaussian(7, d + dead, seed + 1, 2.0)
    # With too few samples for the live directions the covariance is singular or ill-conditioned there, with
    # eigenvalues near the cutoff where two pseudo-inverses may disagree; exact singularity is the dead units'.
    assume(len(labels) >= d + k + 3)
    fitted = fit_class_gaussians(train, labels, k)
    torch.testing.assert_close(fitted.means, torch.stack([train[labels == c].mean(0) for c in range(k)]))
    # rounding of (h - mu)^T P (h - mu), expanded: a few ulps of |h|^2 ||P||, far below 1e-9 of the distances here
    torch.testing.assert_close(mahalanobis_score(test, fitted),
                               torch.tensor(reference_mahalanobis(train, labels, k, test), dtype=torch.float64),
                               rtol=1e-9, atol=1e-9)


def test_mahalanobis_of_a_training_mean_is_zero_and_grows_along_the_small_variance():
    train = torch.tensor([[-1.0, -10.0], [1.0, 10.0], [-1.0, 10.0], [1.0, -10.0]], dtype=torch.float64)  # var 1, 100
    fitted = fit_class_gaussians(train, torch.tensor([0, 0, 0, 0]), 1)
    assert mahalanobis_score(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 10.0]]), fitted).tolist() == [0.0, 1.0, 1.0]


@FAST
@given(n=st.integers(1, 10), m=st.integers(1, 12), d=st.integers(1, 6), seed=st.integers(0, 99), data=st.data())
def test_knn_is_the_distance_to_the_kth_nearest_normalised_training_feature(n, m, d, seed, data):
    k = data.draw(st.integers(1, m))
    test, train = gaussian(n, d, seed), gaussian(m, d, seed + 1)
    # 2 - 2 u.v loses digits for close pairs: an error of about eps / distance, below 1e-7 for distances above 1e-9
    torch.testing.assert_close(knn_score(test, train, k), torch.tensor(reference_knn(test, train, k), dtype=torch.float64),
                               rtol=0, atol=1e-7)


def test_knn_ignores_the_norm_and_the_chunks():
    train, test = gaussian(40, 3, 0), gaussian(2500, 3, 1)
    assert torch.allclose(knn_score(test * 7, train / 3, 5), knn_score(test, train, 5), atol=1e-12)
    whole = knn_score(test, train, 5)
    torch.testing.assert_close(torch.cat([knn_score(test[:1000], train, 5), knn_score(test[1000:], train, 5)]), whole,
                               rtol=0, atol=1e-12)  # 2,500 queries: three blocks of `itra.ood.CHUNK`


def test_the_scorer_gives_every_score_and_msp_after_ts_only_with_a_temperature():
    train, labels = gaussian(30, 4, 0), torch.arange(3).repeat(10)
    h, z = gaussian(6, 4, 1), gaussian(6, 3, 2)
    scores = OODScorer(train, labels, 3, temperature=1.7, k=4)(h, z)
    assert list(scores) == list(itra.ood.SCORES)
    assert torch.equal(scores["msp_ts"], msp_score(z, 1.7)) and torch.equal(scores["knn"], knn_score(h, train, 4))
    assert torch.equal(scores["mahalanobis"], mahalanobis_score(h, fit_class_gaussians(train, labels, 3)))
    assert "msp_ts" not in OODScorer(train, labels, 3, k=4)(h, z)


# ---------------------------------------------------------------- the detection metrics
scores_strategy = st.lists(st.integers(-5, 5), min_size=1, max_size=25)  # small integers: many ties


@FAST
@given(inside=scores_strategy, outside=scores_strategy, percent=st.sampled_from([95, 50, 90, 100, 1, 37]))
def test_auroc_and_fpr_are_their_definitions_ties_included(inside, outside, percent):
    inside, outside = torch.tensor(inside, dtype=torch.float64), torch.tensor(outside, dtype=torch.float64)
    assert auroc(inside, outside) == pytest.approx(reference_auroc(inside, outside), abs=1e-12)
    assert fpr_at_tpr(inside, outside, percent / 100) == reference_fpr(inside, outside, percent)  # both count / M


@FAST
@given(n=st.integers(1, 60), m=st.integers(1, 60), seed=st.integers(0, 99), ties=st.booleans())
def test_auroc_and_fpr_agree_with_torchmetrics(n, m, seed, ties):
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    inside, outside = gaussian(n, 1, seed)[:, 0], gaussian(m, 1, seed + 1)[:, 0] + 0.5
    if ties:
        inside, outside = inside.round(), outside.round()
    scores, is_out = torch.cat([inside, outside]), torch.cat([torch.zeros(n), torch.ones(m)]).long()
    assert auroc(inside, outside) == pytest.approx(float(binary_auroc(scores, is_out)), abs=1e-6)
    fpr, tpr, _ = binary_roc(-scores, 1 - is_out)  # ID positive, as pytorch-ood computes its FPR95 with OOD positive
    assert fpr_at_tpr(inside, outside) == pytest.approx(float(fpr[torch.searchsorted(tpr, 0.95)]), abs=1e-6)


def test_perfect_and_useless_detectors():
    inside, outside = torch.arange(10.0), torch.arange(10.0) + 100
    assert auroc(inside, outside) == 1.0 and fpr_at_tpr(inside, outside) == 0.0
    assert auroc(outside, inside) == 0.0 and fpr_at_tpr(outside, inside) == 1.0
    assert auroc(inside, inside) == 0.5


def test_the_docstring_examples_run():
    assert doctest.testmod(itra.ood).failed == 0


# ---------------------------------------------------------------- bad arguments, by class
SCORE_DAMAGES = {"2-D": lambda s: s[:, None], "integer dtype": lambda s: s.long(), "empty": lambda s: s[:0],
                 "NaN": lambda s: torch.cat([s[:1] * math.nan, s[1:]]), "inf": lambda s: torch.cat([s[:1] + math.inf, s[1:]]),
                 "list": lambda s: s.tolist(), "numpy": lambda s: s.numpy()}
X, Y = gaussian(6, 3, 0).float(), torch.tensor([0, 1, 2, 0, 1, 2])
FITTED = fit_class_gaussians(X, Y, 3)
# name: (call, valid arguments, {argument: damages}, {argument: damages that are valid})
FUNCTIONS = {
    "msp_score": (msp_score, dict(logits=X, temperature=1.5), {"logits": FEATURE_DAMAGES, "temperature": SCALAR_DAMAGES},
                  {"temperature": {"fraction", "huge"}}),
    "energy_score": (energy_score, dict(logits=X), {"logits": FEATURE_DAMAGES}, {}),
    "max_logit_score": (max_logit_score, dict(logits=X), {"logits": FEATURE_DAMAGES}, {}),
    "fit_class_gaussians": (fit_class_gaussians, dict(features=X, labels=Y, num_classes=3),
                            {"features": FEATURE_DAMAGES, "labels": LABEL_DAMAGES, "num_classes": SCALAR_DAMAGES}, {}),
    "mahalanobis_score": (lambda **a: mahalanobis_score(gaussians=FITTED, **a), dict(features=X),
                          {"features": {**FEATURE_DAMAGES, "wrong width": lambda t: t[:, :2]}}, {}),
    "knn_score": (knn_score, dict(features=X, train_features=X, k=2),
                  {"features": FEATURE_DAMAGES, "train_features": FEATURE_DAMAGES, "k": SCALAR_DAMAGES}, {}),
    "auroc": (auroc, dict(inside=X[:, 0], outside=X[:, 1]), {"inside": SCORE_DAMAGES, "outside": SCORE_DAMAGES}, {}),
    "fpr_at_tpr": (fpr_at_tpr, dict(inside=X[:, 0], outside=X[:, 1], tpr=0.9),
                   {"inside": SCORE_DAMAGES, "outside": SCORE_DAMAGES, "tpr": SCALAR_DAMAGES}, {}),
    "OODScorer": (lambda **a: OODScorer(**a), dict(train_features=X, train_labels=Y, num_classes=3, temperature=2.0, k=2),
                  {"train_features": FEATURE_DAMAGES, "temperature": SCALAR_DAMAGES, "k": SCALAR_DAMAGES},
                  {"temperature": {"fraction", "huge", "None"}}),
}
CASES = [(name, argument, kind) for name, (_, _, damages, valid) in FUNCTIONS.items()
         for argument, kinds in damages.items() for kind in kinds if kind not in valid.get(argument, ())]


@pytest.mark.parametrize("name, argument, kind", CASES, ids=["-".join(case) for case in CASES])
def test_every_bad_argument_is_one_line_naming_it(name, argument, kind):
    call, valid, damages, _ = FUNCTIONS[name]
    bad = damages[argument][kind]
    arguments = {**valid, argument: bad(valid[argument]) if callable(bad) else bad}
    with pytest.raises(BadValue, match=f"`{argument}`") as error:  # every message names it so
        call(**arguments)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_the_valid_arguments_are_valid(name):
    call, valid, _, _ = FUNCTIONS[name]
    call(**valid)


def test_a_class_without_a_training_sample_is_one_line():
    with pytest.raises(BadValue, match=r"classes \[1\] have none"):
        fit_class_gaussians(X, torch.tensor([0, 2, 0, 2, 0, 2]), 3)
