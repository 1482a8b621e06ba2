"""Retrieval by feature distance: how often the samples nearest to a query share its class. Pure functions on
features (N, D) and labels (N,), torch only, in float64.

Each sample is a query against all the others (leave-one-out, the query set its own reference), ranked by the
Euclidean distance of L2-normalised features (cosine similarity), the setting of Musgrave, Belongie and Lim (2020),
"A Metric Learning Reality Check", whose definitions pytorch-metric-learning's `AccuracyCalculator` computes
(tests/test_retrieval.py checks them against it). With R_i the number of other samples of query i's class and
rel_i(j) = 1 when its j-th nearest neighbour is of its class:

    precision@1  = mean_i rel_i(1)
    R-precision  = mean_i 1/R_i sum_{j<=R_i} rel_i(j)
    MAP@R        = mean_i 1/R_i sum_{j<=R_i} P_i(j) rel_i(j),   P_i(j) = 1/j sum_{l<=j} rel_i(l)

A query whose class has no other sample (R_i = 0) is left out, as pytorch-metric-learning does. Neighbours at equal
distances are ranked in no fixed order (`torch.topk`); features of a trained model have no exact ties.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from itra.checks import check_features
from itra.errors import BadValue

METRICS = {"precision_at_1": "precision@1", "r_precision": "R-precision", "map_at_r": "MAP@R"}  # as tables name them
CHUNK = 1024  # queries per block of the distance matrix (CHUNK x N)


def retrieval_metrics(features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Precision@1, R-precision and MAP@R of every sample as a query against the others (module docstring).

    Args:
        features: (N, D) floating point, finite.
        labels: (N,) integer classes; at least one class with two samples.

    Returns:
        {"precision_at_1", "r_precision", "map_at_r"}: each in [0, 1], higher is better; "queries": how many
        queries they average.

    Raises:
        BadValue: features or labels of the wrong shape or type, or no class with two samples.

    >>> angles = torch.tensor([0.0, 10.0, 40.0, 28.0, 90.0, 100.0]).deg2rad()  # classes 0, 0, 0, 1, 1, 1
    >>> h = torch.stack([angles.cos(), angles.sin()], dim=1)  # (6, 2): 40's nearest are 28, then 10
    >>> retrieval_metrics(h, torch.tensor([0, 0, 0, 1, 1, 1]))
    {'precision_at_1': 0.6666666666666666, 'r_precision': 0.4166666666666667, 'map_at_r': 0.375, 'queries': 6}
    """
    check_features("features", features)
    if not isinstance(labels, torch.Tensor) or labels.shape != features.shape[:1] or labels.is_floating_point():
        shown = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise BadValue(f"Expected `labels` to be an integer tensor ({len(features)},), one per feature row, but got "
                       f"{shown}")
    labels = labels.long()
    _, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    relevant = counts[index] - 1  # (N,) R_i
    if int(relevant.max()) == 0:
        raise BadValue("Expected at least one class with two samples to retrieve, but every class has one")
    units = F.normalize(features.double(), dim=1)  # (N, D)
    depth = int(relevant.max())  # the most neighbours any query needs
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(units), CHUNK):
        rows = torch.arange(start, min(start + CHUNK, len(units)))
        squared = (2 - 2 * units[rows] @ units.T).clamp_(min=0)  # (C, N): ||u - v||^2 of unit vectors
        squared[torch.arange(len(rows)), rows] = torch.inf  # a query is not its own neighbour
        neighbours = squared.topk(depth, dim=1, largest=False).indices  # (C, depth), nearest first
        r = relevant[rows]  # (C,)
        per_r = 1 / r.clamp(min=1).double()  # (C,) 1 / R_i
        within = torch.arange(1, depth + 1)[None, :] <= r[:, None]  # (C, depth): j <= R_i
        hit = (labels[neighbours] == labels[rows, None]) & within  # (C, depth): rel_i(j), j <= R_i
        precision = hit.double().cumsum(dim=1) / torch.arange(1, depth + 1)  # (C, depth): P_i(j)
        queries = r > 0
        per_query = torch.stack([hit[:, 0].double(), hit.double().sum(dim=1) * per_r,
                                 (precision * hit).sum(dim=1) * per_r])  # (3, C)
        sums += per_query[:, queries].sum(dim=1)
    count = int((relevant > 0).sum())
    precision_at_1, r_precision, map_at_r = (sums / count).tolist()
    return {"precision_at_1": precision_at_1, "r_precision": r_precision, "map_at_r": map_at_r, "queries": count}
