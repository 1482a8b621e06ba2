"""Evaluation metrics: accuracy, cross-entropy, calibration (ECE and reliability bins)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of a reliability diagram, each (n_bins,): equal-width bins of confidence."""

    counts: torch.Tensor  # samples in each bin
    mean_confidence: torch.Tensor  # mean max-probability in each bin (0 where empty)
    accuracy: torch.Tensor  # fraction correct in each bin (0 where empty)


def calibration_bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> CalibrationBins:
    """Bin the confidences `max softmax(logits)` of (N, K) logits into `n_bins` equal-width bins.

    Bin b holds confidences in (b/n_bins, (b+1)/n_bins]; a confidence of exactly 1.0 falls in the
    last bin and one of exactly 0 in the first.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"Expected `n_bins` to be an integer larger than 0, but got {n_bins!r}")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"Expected logits (N, K) and labels (N,), but got {tuple(logits.shape)} and {tuple(labels.shape)}")
    probabilities = logits.detach().float().softmax(dim=1)
    confidence, prediction = probabilities.max(dim=1)
    correct = (prediction == labels).float()
    bin_index = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(bin_index, minlength=n_bins).float()
    safe_counts = counts.clamp_min(1)
    mean_confidence = torch.zeros(n_bins).index_add_(0, bin_index, confidence) / safe_counts
    accuracy = torch.zeros(n_bins).index_add_(0, bin_index, correct) / safe_counts
    return CalibrationBins(counts, mean_confidence, accuracy)


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)| over equal-width confidence bins."""
    bins = calibration_bins(logits, labels, n_bins)
    weights = bins.counts / bins.counts.sum()
    return float((weights * (bins.accuracy - bins.mean_confidence).abs()).sum())


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """Accuracy (%), mean cross-entropy (nats) and ECE of (N, K) logits against (N,) labels."""
    logits = logits.detach().float()
    return {
        "accuracy": 100.0 * float((logits.argmax(dim=1) == labels).float().mean()),
        "cross_entropy": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(logits, labels, n_bins),
    }


def compactness(h1: torch.Tensor, y1: torch.Tensor, h2: torch.Tensor, y2: torch.Tensor) -> float:
    """Normalised same-class distance across two mini-batches (the paper's Figure 1, left).

    `mean_{i, j: y1_i = y2_j} ||h1_i - h2_j|| / mean_{i, j} ||h1_i - h2_j||` over all pairs (i, j) of
    a sample of batch 1 (n, D) and a sample of batch 2 (m, D): 1 when same-class pairs are no closer
    than any pair, towards 0 as classes become compact relative to the spread of the features.
    Scale-free, so methods whose features have different norms compare. NaN when no class is shared,
    and when every feature is the same vector (collapsed features: no distance to normalise by).
    """
    distances = torch.cdist(h1.detach().double(), h2.detach().double())  # (n, m)
    same_class = y1[:, None] == y2[None, :]
    if not same_class.any():
        return float("nan")
    return float(distances[same_class].mean() / distances.mean())
