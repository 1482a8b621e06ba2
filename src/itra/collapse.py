"""Feature collapse: every sample mapped to (nearly) the same feature vector.

A matching loss pulls features of one class together; pulled too hard (small batches, noisy labels,
large λ) it can pull every feature onto one point, where the match is exactly 0, the cross-entropy
sits at log K and the run never recovers (the ReLUs that would separate the classes are dead). These
functions tell it from a batch of features; `itra.callbacks.CollapseGuard` stops a run on them.

    from itra.collapse import is_collapsed
    if is_collapsed(extractor(x)):   # (B, D) features of any batch
        ...
"""
from __future__ import annotations

import torch
from itra.errors import BadValue

COLLAPSE_THRESHOLD = 1e-3


@torch.no_grad()
def feature_spread(features: torch.Tensor) -> torch.Tensor:
    """The spread of a batch of features (B, D), relative to their size: a 0-d tensor in [0, 1].

    `mean_d std_b(h_bd) / sqrt(mean_bd h_bd^2)`: the mean per-dimension standard deviation over the
    batch, divided by the features' root-mean-square value, so that it does not depend on their scale.
    0 when every row is the same vector (all zero included), about 1 for centred features.
    """
    features = features.detach().float()
    size = features.pow(2).mean().sqrt()
    spread = features.std(dim=0, unbiased=False).mean()
    return torch.where(size > 0, spread / size.clamp_min(torch.finfo(features.dtype).tiny), torch.zeros_like(size))


def is_collapsed(features: torch.Tensor, threshold: float = COLLAPSE_THRESHOLD) -> bool:
    """Whether a batch of features (B, D), B >= 2, has collapsed: `feature_spread` below `threshold`."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise BadValue(f"Expected features of shape (B, D) with B >= 2, but got {tuple(features.shape)}")
    return bool(feature_spread(features) < threshold)
