"""Temperature scaling (Guo et al. 2017): one scalar T > 0, fitted on held-out logits, that divides every
logit so that the mean negative log-likelihood is smallest. It changes no prediction (argmax is invariant
to T > 0), only the confidence, so it calibrates a model for free after training.

    T = argmin_T  1/N sum_i [ logsumexp_k(z_ik / T) - z_iy_i / T ]

Pure functions on tensors, float64. The NLL is convex in the inverse temperature s = 1/T, so in u = log T it
has one minimum and its derivative changes sign once; `fit_temperature` finds that sign change by a
safeguarded Newton iteration in u, deterministically. Every quantity it needs is a sum over samples
(`nll_sums`), so ranks that each hold a shard of the logits fit the same T by summing (`reduce`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from itra.checks import check_labels, check_number, check_values_readable
from itra.errors import BadValue

# T is searched in [1/100, 100]: beyond it a model's confidence is all or nothing. Where the NLL still falls at a
# bound (e.g. every held-out sample right with a margin: it falls as T -> 0), that bound is the fitted T.
TEMPERATURE_RANGE = (1e-2, 1e2)


def nll_sums(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """(3,) float64: [N, dNLL/du, d²NLL/du²] summed over samples at u = log `temperature`, for logits (N, K).

    With a = z / T (one sample's scaled logits, p = softmax(a)): d NLL / du = a_y - E_p[a] and
    d² NLL / du² = Var_p(a) - (a_y - E_p[a]).
    """
    scaled = logits.double() / temperature  # (N, K)
    probabilities = scaled.softmax(dim=1)
    mean = (probabilities * scaled).sum(dim=1)  # (N,) E_p[a]
    variance = (probabilities * (scaled - mean[:, None]).pow(2)).sum(dim=1)  # (N,)
    slope = scaled.gather(1, labels.long()[:, None]).squeeze(1) - mean  # (N,)
    return torch.stack([scaled.new_tensor(float(len(labels))), slope.sum(), (variance - slope).sum()])


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor,
                    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda sums: sums,
                    tolerance: float = 1e-10) -> float:
    """The temperature T in `TEMPERATURE_RANGE` that minimises the mean NLL of `logits` (N, K) / T against
    `labels` (N,), to `tolerance` in log T (far below the 1e-4 relative that matters). `reduce` sums
    `nll_sums` over the shards of a distributed set (`distributed.sum_over_ranks`); alone, the identity.

    Newton steps in u = log T where they stay inside the bracket of the sign change of dNLL/du, bisection
    otherwise: it converges whatever the start, and the same input gives the same T, bit for bit.

    Logits that carry no information (every sample's K logits equal: the NLL is log K whatever T) fit any T: the
    fitted T is then 1, the model as it is.

    Args:
        logits: (N, K) floating-point logits of held-out samples (a validation set, never the test set).
        labels: (N,) their integer labels in [0, K).
        reduce: sums a (3,) tensor of `nll_sums` over the ranks that share the set; alone, the identity.
        tolerance: the precision of log T.

    Returns:
        T, a float in `TEMPERATURE_RANGE`: calibrated probabilities are `softmax(logits / T)`.

    Raises:
        BadValue: `logits` not a floating-point (N, K) tensor with K >= 1, or not finite; `labels` not an integer
            (N,) tensor in [0, K); no sample on any shard; `tolerance` not a finite number > 0.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # 2 of 3 right: T = 2 / log 2
        >>> round(fit_temperature(logits, torch.tensor([0, 1, 1])), 3)
        2.885
        >>> fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1, 1]))
        1.0
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 1 or not logits.is_floating_point():
        shown = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise BadValue(f"Expected logits (N, K), a floating-point torch.Tensor with K >= 1, but got {shown}")
    check_number("tolerance", tolerance, lambda v: 0 < v < math.inf, "a finite number > 0")
    check_values_readable("logits", logits)
    if not torch.isfinite(logits).all():
        raise BadValue("Expected finite logits to fit a temperature on, but some are NaN or infinite")
    if len(logits):  # a shard of a distributed set may be empty
        check_labels("labels", labels, logits, logits.shape[1])
    elif not isinstance(labels, torch.Tensor) or labels.shape != (0,):
        raise BadValue(f"Expected `labels` (0,) for no logits, but got {getattr(labels, 'shape', type(labels).__name__)}")
    spread = (logits.amax(dim=1) - logits.amin(dim=1)).double().sum()  # 0: no sample's logits tell classes apart
    count, spread = reduce(torch.stack([spread.new_tensor(float(len(logits))), spread])).tolist()
    if count == 0:
        raise BadValue("Expected at least one sample to fit a temperature on, but got none")
    if spread == 0:
        return 1.0

    def derivatives(u: float) -> tuple[float, float]:
        _, slope, curvature = reduce(nll_sums(logits, labels, math.exp(u))).tolist()
        return slope, curvature

    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    if derivatives(low)[0] >= 0:  # the NLL rises from the smallest T on
        return TEMPERATURE_RANGE[0]
    if derivatives(high)[0] <= 0:  # it still falls at the largest T
        return TEMPERATURE_RANGE[1]
    u = 0.0  # T = 1: the model as it is
    for _ in range(200):
        slope, curvature = derivatives(u)
        if slope == 0:
            break
        if slope > 0:
            high = u
        else:
            low = u
        step = -slope / curvature if curvature > 0 else math.inf
        if low < u + step < high:
            u += step
            if abs(step) < tolerance:
                break
        else:
            u = (low + high) / 2
            if high - low < tolerance:
                break
    return math.exp(u)
