"""Evaluation metrics: accuracy, cross-entropy, calibration (ECE and reliability bins), each from sums over
samples (`metric_sums`) that add up over the shards of a set; compactness."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from itra.errors import BadValue


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of a reliability diagram, each (n_bins,): equal-width bins of confidence."""

    counts: torch.Tensor  # samples in each bin
    mean_confidence: torch.Tensor  # mean max-probability in each bin (0 where empty)
    accuracy: torch.Tensor  # fraction correct in each bin (0 where empty)


def metric_sums(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """The sums over samples that accuracy, CE and calibration are functions of, float64 (3 + 3 n_bins,):

        [N, correct predictions, summed CE (nats),
         samples per bin (n_bins), summed confidence per bin (n_bins), correct predictions per bin (n_bins)]

    over equal-width bins of the confidence `max softmax(logits)` (computed on the CPU): bin b holds
    confidences in (b/n_bins, (b+1)/n_bins], a confidence of exactly 1.0 the last bin and one of
    exactly 0 the first.
    The sums of disjoint parts of a set add up to the whole set's, so ranks that each evaluate a shard
    all-reduce this vector instead of gathering (N, K) logits (`evaluate.evaluate`).
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise BadValue(f"Expected `n_bins` to be an integer larger than 0, but got {n_bins!r}")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise BadValue(f"Expected logits (N, K) and labels (N,), but got {tuple(logits.shape)} and {tuple(labels.shape)}")
    logits, labels = logits.detach().cpu().double(), labels.cpu()
    confidence, prediction = logits.softmax(dim=1).max(dim=1)
    correct = (prediction == labels).double()
    bin_index = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)
    per_bin = torch.zeros(3, n_bins, dtype=torch.float64)
    per_bin[0].index_add_(0, bin_index, torch.ones_like(confidence))
    per_bin[1].index_add_(0, bin_index, confidence)
    per_bin[2].index_add_(0, bin_index, correct)
    totals = torch.stack([correct.new_tensor(float(len(labels))), correct.sum(),
                          F.cross_entropy(logits, labels, reduction="sum")])
    return torch.cat([totals, per_bin.flatten()])


def metrics_from_sums(sums: torch.Tensor) -> dict[str, float]:
    """Accuracy (%), mean cross-entropy (nats) and ECE from `metric_sums`' vector (of one set, or summed over parts).

    ECE = sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)| = sum_b |correct_b - summed confidence_b| / N.
    """
    count, correct, cross_entropy = sums[:3]
    _, confidence_per_bin, correct_per_bin = sums[3:].view(3, -1)
    ece = (correct_per_bin - confidence_per_bin).abs().sum() / count
    return {"accuracy": 100.0 * float(correct / count), "cross_entropy": float(cross_entropy / count), "ece": float(ece)}


def calibration_bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> CalibrationBins:
    """The reliability diagram of (N, K) logits: `n_bins` equal-width bins of confidence (as `metric_sums`)."""
    counts, confidence, correct = metric_sums(logits, labels, n_bins)[3:].view(3, n_bins)
    return CalibrationBins(counts, confidence / counts.clamp_min(1), correct / counts.clamp_min(1))


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)| over equal-width confidence bins."""
    return metrics_from_sums(metric_sums(logits, labels, n_bins))["ece"]


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """Accuracy (%), mean cross-entropy (nats) and ECE of (N, K) logits against (N,) labels."""
    return metrics_from_sums(metric_sums(logits, labels, n_bins))


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
