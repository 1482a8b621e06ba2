"""Out-of-distribution (OOD) scores of a classifier and how well they detect OOD inputs: pure functions on its
logits z (N, K) and penultimate features h (N, D), torch only, computed in float64.

Every score is an anomaly score, one per sample, higher for an input more likely out-of-distribution (pytorch-ood's
convention), so any of them thresholds the same way:

    msp_score       s = -max_k softmax(z / T)_k                   Hendrycks & Gimpel (2017); T = 1, or the run's fitted
                                                                  temperature (Guo et al. 2017, `itra.calibration`)
    energy_score    s = -logsumexp_k z_k                          Liu et al. (2020), the free energy at T = 1
    max_logit_score s = -max_k z_k                                Hendrycks et al. (2022)
    mahalanobis     s = min_k (h - mu_k)^T Sigma^+ (h - mu_k)     Lee et al. (2018): class means and one covariance
                                                                  shared by the classes, of the training features
    knn_score       s = ||u - u_(k)||,  u = h / ||h||             Sun et al. (2022): distance to the k-th nearest
                                                                  normalised training feature

Detection quality, from the scores of in-distribution (ID) and OOD samples, by scikit-learn's ROC curve:
`auroc` (the probability that an OOD sample scores above an ID sample, ties counted half) and `fpr_at_tpr` (FPR at
95 % TPR: the fraction of OOD samples accepted when the threshold accepts 95 % of ID samples; ID is the positive
class, as in Sun et al. and OpenOOD).

    scorer = OODScorer(train_features, train_labels, num_classes, temperature=T)   # fitted once on the training set
    inside, outside = scorer(test_features, test_logits), scorer(ood_features, ood_logits)   # {score: (N,)}
    auroc(inside["knn"], outside["knn"]), fpr_at_tpr(inside["knn"], outside["knn"])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from itra.checks import check_count, check_features, check_labels, check_number
from itra.errors import BadValue, MissingPackage

# Sun et al. (2022) use k = 50 for CIFAR-10 with its whole training set (50,000 images); here it is the default
# whatever the training set's size (`itra ood --knn-k`).
KNN_K = 50
# The scores `OODScorer` gives, as tables name them; "msp_ts" needs a temperature.
SCORES = {"msp": "MSP", "msp_ts": "MSP after TS", "energy": "energy", "max_logit": "max logit",
          "mahalanobis": "Mahalanobis", "knn": "kNN"}
CHUNK = 1024  # queries per block of a distance matrix (CHUNK x N float64)


def _check_temperature(temperature: float) -> None:
    check_number("temperature", temperature, lambda v: 0 < v < math.inf, "a finite number > 0")


def msp_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The negative maximum softmax probability of logits / T: s = -max_k softmax(z / T)_k.

    Args:
        logits: (N, K) floating point, finite.
        temperature: T > 0 (1: the model as it is; a fitted T: `itra.calibration.fit_temperature`).

    Returns:
        (N,) float64 in [-1, -1/K].

    >>> msp_score(torch.tensor([[2.0, 0.0], [0.0, 0.0]])).round(decimals=6).tolist()  # -e^2 / (e^2 + 1), -1/2
    [-0.880797, -0.5]
    """
    check_features("logits", logits)
    _check_temperature(temperature)
    return -(logits.double() / temperature).softmax(dim=1).amax(dim=1)


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """The free energy E(x) = -logsumexp_k z_k (Liu et al. 2020, at T = 1).

    Args:
        logits: (N, K) floating point, finite.

    Returns:
        (N,) float64.

    >>> energy_score(torch.tensor([[0.0, 0.0], [1.0, -30.0]])).round(decimals=6).tolist()  # -log 2, about -1
    [-0.693147, -1.0]
    """
    check_features("logits", logits)
    return -torch.logsumexp(logits.double(), dim=1)


def max_logit_score(logits: torch.Tensor) -> torch.Tensor:
    """The negative largest logit: s = -max_k z_k.

    Args:
        logits: (N, K) floating point, finite.

    Returns:
        (N,) float64.

    >>> max_logit_score(torch.tensor([[1.0, 3.0], [-2.0, -1.0]])).tolist()
    [-3.0, 1.0]
    """
    check_features("logits", logits)
    return -logits.double().amax(dim=1)


@dataclass(frozen=True)
class ClassGaussians:
    """Class-conditional Gaussians with one shared covariance (Lee et al. 2018), fitted by `fit_class_gaussians`."""

    means: torch.Tensor  # (K, D) float64: mu_k
    precision: torch.Tensor  # (D, D) float64: Sigma^+, the pseudo-inverse of the shared covariance


def fit_class_gaussians(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> ClassGaussians:
    """Class means mu_k = mean of the h_i with y_i = k, and the pseudo-inverse of the shared (tied) covariance
    Sigma = 1/N sum_i (h_i - mu_{y_i}) (h_i - mu_{y_i})^T, in float64.

    The pseudo-inverse (`torch.linalg.pinv`, hermitian) leaves out directions of zero variance, e.g. a ReLU unit
    that no training sample activates, rather than dividing by zero; pytorch-ood's detector does the same.

    Args:
        features: (N, D) the training features.
        labels: (N,) integer class indices in [0, num_classes); every class needs at least one sample.
        num_classes: K.

    Returns:
        `ClassGaussians` with means (K, D) and precision (D, D).

    >>> fitted = fit_class_gaussians(torch.tensor([[0.0], [2.0], [10.0], [12.0]]), torch.tensor([0, 0, 1, 1]), 2)
    >>> fitted.means.tolist(), fitted.precision.tolist()
    ([[1.0], [11.0]], [[1.0]])
    """
    check_features("features", features)
    check_count("num_classes", num_classes)
    check_labels("labels", labels, features, num_classes)
    h, y = features.double(), labels.long()
    counts = torch.bincount(y, minlength=num_classes)  # (K,)
    if (counts == 0).any():
        missing = (counts == 0).nonzero().squeeze(1).tolist()
        raise BadValue(f"Expected every class in `labels` to have a training sample, but classes {missing} have none")
    means = torch.zeros(num_classes, h.shape[1], dtype=torch.float64).index_add_(0, y, h) / counts[:, None]  # (K, D)
    centred = h - means[y]  # (N, D)
    covariance = centred.T @ centred / len(h)  # (D, D)
    return ClassGaussians(means, torch.linalg.pinv(covariance, hermitian=True))


def mahalanobis_score(features: torch.Tensor, gaussians: ClassGaussians) -> torch.Tensor:
    """The Mahalanobis distance to the closest class mean: s = min_k (h - mu_k)^T Sigma^+ (h - mu_k).

    Args:
        features: (N, D).
        gaussians: `fit_class_gaussians` of the training features (D the same).

    Returns:
        (N,) float64, >= 0 up to rounding.

    >>> fitted = fit_class_gaussians(torch.tensor([[0.0], [2.0], [10.0], [12.0]]), torch.tensor([0, 0, 1, 1]), 2)
    >>> mahalanobis_score(torch.tensor([[1.0], [5.0], [14.0]]), fitted).tolist()
    [0.0, 16.0, 9.0]
    """
    check_features("features", features)
    means, precision = gaussians.means, gaussians.precision
    if features.shape[1] != means.shape[1]:
        raise BadValue(f"Expected `features` of width {means.shape[1]} (the fitted Gaussians'), but got "
                       f"{tuple(features.shape)}")
    h = features.double()
    # (h - mu)^T P (h - mu) = h^T P h - 2 h^T P mu + mu^T P mu, every class at once
    quadratic = ((h @ precision) * h).sum(dim=1)  # (N,)
    cross = h @ (precision @ means.T)  # (N, K)
    offset = ((means @ precision) * means).sum(dim=1)  # (K,)
    return (quadratic[:, None] - 2 * cross + offset[None, :]).amin(dim=1)


def knn_score(features: torch.Tensor, train_features: torch.Tensor, k: int = KNN_K) -> torch.Tensor:
    """The Euclidean distance from each L2-normalised feature to its k-th nearest L2-normalised training feature
    (Sun et al. 2022): s = ||u - u_(k)||, u = h / ||h||, in [0, 2].

    Args:
        features: (N, D) the features to score.
        train_features: (M, D) the training features, M >= k.
        k: which neighbour (1: the nearest).

    Returns:
        (N,) float64.

    >>> train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> knn_score(torch.tensor([[2.0, 0.0]]), train, k=2).round(decimals=6).tolist()  # sqrt(2)
    [1.414214]
    """
    check_features("features", features)
    check_features("train_features", train_features)
    check_count("k", k)
    if k > len(train_features):
        raise BadValue(f"Expected `k` at most the {len(train_features)} training features, but got {k}")
    if features.shape[1] != train_features.shape[1]:
        raise BadValue(f"Expected `features` and `train_features` of one width, but got {tuple(features.shape)} and "
                       f"{tuple(train_features.shape)}")
    reference = F.normalize(train_features.double(), dim=1)  # (M, D)
    distances = []
    for start in range(0, len(features), CHUNK):
        queries = F.normalize(features[start:start + CHUNK].double(), dim=1)  # (C, D)
        squared = (2 - 2 * queries @ reference.T).clamp_(min=0)  # (C, M): ||u - v||^2 of unit vectors
        distances.append(squared.kthvalue(k, dim=1).values.sqrt())
    return torch.cat(distances)


def _check_scores(name: str, scores: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1 or not scores.is_floating_point():
        shown = f"{scores.dtype} {tuple(scores.shape)}" if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise BadValue(f"Expected `{name}` to be a 1-D floating-point tensor of scores, but got {shown}")
    if len(scores) == 0:
        raise BadValue(f"Expected `{name}` to hold at least one score, but got none")
    if not torch.isfinite(scores).all():
        raise BadValue(f"Expected `{name}` to be finite, but it holds NaN or inf values")


def _roc(inside: torch.Tensor, outside: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The scores of both sets, ID first, and which are OOD (1) or ID (0), for scikit-learn."""
    _check_scores("inside", inside)
    _check_scores("outside", outside)
    scores = torch.cat([inside.double(), outside.double()]).cpu().numpy()
    return scores, np.r_[np.zeros(len(inside)), np.ones(len(outside))]


def _sklearn_metrics():  # type: ignore[no-untyped-def]
    try:
        from sklearn import metrics
    except ImportError:
        raise MissingPackage("OOD detection metrics need scikit-learn: pip install scikit-learn") from None
    return metrics


def auroc(inside: torch.Tensor, outside: torch.Tensor) -> float:
    """The area under the ROC curve of telling OOD from ID samples by their anomaly scores (scikit-learn's
    `roc_auc_score`): P(s_out > s_in) + P(s_out = s_in) / 2 over pairs of an OOD and an ID sample. 1: every OOD
    sample scores above every ID sample; 0.5: chance.

    Args:
        inside: (N,) the scores of ID samples.
        outside: (M,) the scores of OOD samples.

    Returns:
        The AUROC in [0, 1].

    >>> round(auroc(torch.tensor([0.1, 0.4, 0.35]), torch.tensor([0.8, 0.4])), 6)  # 5.5 of 6 pairs
    0.916667
    """
    scores, is_out = _roc(inside, outside)
    return float(_sklearn_metrics().roc_auc_score(is_out, scores))


def fpr_at_tpr(inside: torch.Tensor, outside: torch.Tensor, tpr: float = 0.95) -> float:
    """The false positive rate at `tpr` true positive rate with ID as the positive class: with t the smallest
    threshold such that a fraction >= `tpr` of ID samples has s <= t (accepted as ID), the fraction of OOD samples
    with s <= t. From scikit-learn's `roc_curve` (ID positive, score -s): its FPR at the first point with TPR >= `tpr`.

    Args:
        inside: (N,) the scores of ID samples.
        outside: (M,) the scores of OOD samples.
        tpr: in (0, 1].

    Returns:
        The FPR in [0, 1]; lower is better.

    >>> fpr_at_tpr(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.5, 3.0, 9.0]), tpr=0.75)  # t = 2
    0.3333333333333333
    """
    check_number("tpr", tpr, lambda v: 0 < v <= 1, "a number in (0, 1]")
    scores, is_out = _roc(inside, outside)
    fpr, tprs, _ = _sklearn_metrics().roc_curve(1 - is_out, -scores, drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


class OODScorer:
    """Every score of `SCORES`, fitted once on a model's training features: the class Gaussians of `mahalanobis_score`
    and the normalised training set of `knn_score`; "msp_ts" only with a `temperature`.

    Args:
        train_features: (M, D) the training features.
        train_labels: (M,) their classes in [0, num_classes).
        num_classes: K.
        temperature: the model's fitted temperature (`itra.calibration`), or None.
        k: the neighbour of `knn_score`.

    >>> scorer = OODScorer(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1]), 2, temperature=2.0, k=1)
    >>> sorted(scorer(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, -1.0]])))
    ['energy', 'knn', 'mahalanobis', 'max_logit', 'msp', 'msp_ts']
    """

    def __init__(self, train_features: torch.Tensor, train_labels: torch.Tensor, num_classes: int,
                 temperature: float | None = None, k: int = KNN_K) -> None:
        check_features("train_features", train_features)
        if temperature is not None:
            _check_temperature(temperature)
        check_count("k", k)
        if k > len(train_features):
            raise BadValue(f"Expected `k` at most the {len(train_features)} training features, but got {k}")
        self.gaussians = fit_class_gaussians(train_features, train_labels, num_classes)
        self.train_features, self.temperature, self.k = train_features, temperature, k

    def __call__(self, features: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """{score: (N,) float64} of samples with features (N, D) and logits (N, K), in `SCORES` order."""
        scores = {"msp": msp_score(logits)}
        if self.temperature is not None:
            scores["msp_ts"] = msp_score(logits, self.temperature)
        scores.update(energy=energy_score(logits), max_logit=max_logit_score(logits),
                      mahalanobis=mahalanobis_score(features, self.gaussians),
                      knn=knn_score(features, self.train_features, self.k))
        return scores
