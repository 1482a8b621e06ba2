"""Maximum mean discrepancy between the features of two mini-batches: the ITRA matching loss.

Pure functions on tensors (no `nn`, no I/O). Notation follows the paper: `H1` (n, D) and `H2` (m, D)
are the features of mini-batches S1 and S2, `K(x, y) = exp(-||x - y||^2 / sigma)` the Gaussian kernel.

    MMD(H1, H2) = [ 1/n^2 sum K(h1_i, h1_j) + 1/m^2 sum K(h2_i, h2_j) - 2/(nm) sum K(h1_i, h2_j) ]^(1/2)

is the biased estimate of Gretton et al. (2007) that the paper writes down (Preliminary section).
`class_conditional_mmd` is ITRA-c's Match_c, Eq. (5).
"""
from __future__ import annotations

from typing import Literal, Union

import torch

Bandwidth = Union[Literal["class", "batch"], float]


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances `||x_i - y_j||^2`, shape (..., n, m), from x (..., n, D)
    and y (..., m, D), with any leading batch dims.

    Computed as `|x|^2 + |y|^2 - 2 x.y` after subtracting the mean of x (distances are translation
    invariant, and centring keeps the cancellation error small for features far from the origin),
    clamped at 0. No square root is taken: its gradient is infinite at distance 0.
    """
    centre = x.detach().mean(dim=-2, keepdim=True)  # detached: distances do not depend on it
    x, y = x - centre, y - centre
    cross = x @ y.transpose(-1, -2)  # (..., n, m)
    sq = x.pow(2).sum(dim=-1).unsqueeze(-1) + y.pow(2).sum(dim=-1).unsqueeze(-2) - 2 * cross
    return sq.clamp_min(0)


def gaussian_kernel(sq_dists: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Gaussian kernel `K = exp(-d / sigma)` from squared distances d (any shape).

    `sigma` is a scalar or broadcasts against `sq_dists` (e.g. (n, 1) for one bandwidth per row).
    """
    return torch.exp(-sq_dists / sigma)


def median_bandwidth(sq_dists: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The median heuristic: sigma = median of the off-diagonal pairwise squared distances.

    Args:
        sq_dists: (N, N) squared distances of the pooled samples (both mini-batches together), or a
            stack (G, N, N) of such matrices, one per group (class), padded to a common N.
        valid: with a stack, (G, N) True for the real (not padding) samples of each group.

    Returns:
        A scalar, or (G,) for a stack. The median is the lower median (as `torch.median`). Where it
        is 0 (more than half of the pairs coincide) the mean squared distance is used instead, and
        where that is 0 too (all samples identical, or fewer than two) sigma = 1: every kernel value
        is then exp(0) = 1 whatever sigma. A vanishing sigma would make d K / d d = -K / sigma
        overflow for coinciding pairs and turn their zero gradient into inf - inf = NaN.
        Computed under `no_grad`: the paper's sigma "is not back propagated".
    """
    with torch.no_grad():
        n = sq_dists.shape[-1]
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=sq_dists.device)
        if valid is None:
            if n < 2:
                return sq_dists.new_tensor(1.0)
            pairs = sq_dists[off_diagonal]
            return _positive_or_fallback(pairs.median(), pairs.mean())
        pairs = valid[:, :, None] & valid[:, None, :] & off_diagonal  # (G, N, N)
        ranked = sq_dists.masked_fill(~pairs, float("inf")).flatten(1).sort(dim=1).values  # (G, N*N)
        pair_counts = pairs.flatten(1).sum(dim=1)  # (G,)
        lower_median = ranked.gather(1, ((pair_counts - 1).clamp_min(0) // 2).unsqueeze(1)).squeeze(1)
        mean = (sq_dists * pairs).flatten(1).sum(dim=1) / pair_counts.clamp_min(1)
        return _positive_or_fallback(torch.where(pair_counts > 0, lower_median, torch.zeros_like(lower_median)), mean)


def _positive_or_fallback(median: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return torch.where(median > 0, median, torch.where(mean > 0, mean, torch.ones_like(mean)))


def _safe_sqrt(squared: torch.Tensor) -> torch.Tensor:
    """sqrt(max(s, 0)) that is exactly 0, with a zero (sub)gradient, where s <= eps of the dtype.

    The plain square root has an infinite derivative at 0, and at MMD = 0 the derivative of MMD^2 is
    itself 0, so autograd would compute inf * 0 = NaN. Values of MMD^2 below the dtype's epsilon are
    rounding noise of the kernel means, so they are treated as 0.
    """
    eps = torch.finfo(squared.dtype).eps
    positive = squared > eps
    return torch.where(positive, squared.clamp_min(eps).sqrt(), torch.zeros_like(squared))


def _check_features(name: str, h: torch.Tensor) -> None:
    if not isinstance(h, torch.Tensor):
        raise ValueError(f"Expected `{name}` to be a torch.Tensor, but got {type(h).__name__}")
    if h.ndim != 2:
        raise ValueError(f"Expected `{name}` to be 2-D (num_samples, feature_dim), but got shape {tuple(h.shape)}")
    if h.shape[0] == 0:
        raise ValueError(f"Expected `{name}` to hold at least one sample, but got shape {tuple(h.shape)}")
    if not h.is_floating_point():
        raise ValueError(f"Expected `{name}` to be a floating-point tensor, but got dtype {h.dtype}")
    if not torch.isfinite(h).all():
        raise ValueError(f"Expected `{name}` to be finite, but it holds NaN or inf values")


def _check_pair(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str]) -> None:
    _check_features(names[0], x)
    _check_features(names[1], y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"Expected `{names[0]}` and `{names[1]}` to have the same feature dim, but got "
            f"{x.shape[1]} and {y.shape[1]}"
        )
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(
            f"Expected `{names[0]}` and `{names[1]}` on the same dtype and device, but got "
            f"{x.dtype}/{x.device} and {y.dtype}/{y.device}"
        )


def _check_labels(name: str, y: torch.Tensor, features: torch.Tensor, num_classes: int) -> None:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex():
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"Expected `{name}` to be a 1-D integer tensor of class indices, but got {shape}")
    if y.shape[0] != features.shape[0]:
        raise ValueError(
            f"Expected one label per feature row, but `{name}` has {y.shape[0]} labels for {features.shape[0]} rows"
        )
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"Expected `{name}` in [0, {num_classes}), but got the label {bad}")


def _grouped_mmd(
    h1: torch.Tensor, y1: torch.Tensor, h2: torch.Tensor, y2: torch.Tensor, num_groups: int, bandwidth: Bandwidth
) -> torch.Tensor:
    """MMD(H1^k, H2^k) for every group k present in both batches, all groups in one batched computation.

    The pooled samples are sorted by group and scattered into a zero-padded stack (G', P, D), G' the
    groups present in both batches and P the largest pooled group; one batched kernel (G', P, P)
    then holds every within-group pair, and padding is masked out. This costs G' * P^2 kernel entries
    instead of the (n + m)^2 of a full kernel matrix: about K times fewer for balanced classes.
    Returns (G',) values, empty when no group is shared.
    """
    n = h1.shape[0]
    pooled = torch.cat([h1, h2])  # (N, D), N = n + m
    labels = torch.cat([y1, y2]).long()  # (N,)
    in_second = torch.arange(pooled.shape[0], device=pooled.device) >= n  # (N,)
    present = (torch.bincount(y1.long(), minlength=num_groups) > 0) & (torch.bincount(y2.long(), minlength=num_groups) > 0)
    slot_of_group = torch.cumsum(present, 0) - 1  # group id -> row in the stack (valid where present)
    num_present = int(present.sum())
    if num_present == 0:
        return pooled.new_zeros(0)

    keep = present[labels]
    slot = slot_of_group[labels[keep]]  # (N',)
    order = torch.argsort(slot, stable=True)
    slot, samples, second = slot[order], pooled[keep][order], in_second[keep][order]
    # Centre the real samples before zero-padding, so that padding sits at their mean, not far away.
    samples = samples - samples.detach().mean(dim=0)
    sizes = torch.bincount(slot, minlength=num_present)  # (G',) pooled size of each group
    position = torch.arange(slot.shape[0], device=slot.device) - (torch.cumsum(sizes, 0) - sizes)[slot]
    width = int(sizes.max())
    stack = samples.new_zeros(num_present, width, samples.shape[1]).index_put((slot, position), samples)  # (G', P, D)
    valid = torch.zeros(num_present, width, dtype=torch.bool, device=slot.device).index_put((slot, position), torch.ones_like(second))
    weight_2 = torch.zeros(num_present, width, dtype=samples.dtype, device=slot.device).index_put((slot, position), second.to(samples.dtype))
    weight_1 = valid.to(samples.dtype) - weight_2  # (G', P): 1 for samples of S1, 0 for S2 and padding

    sq = squared_distances(stack, stack)  # (G', P, P)
    if bandwidth == "class":
        sigma = median_bandwidth(sq, valid)[:, None, None]  # (G', 1, 1)
    elif bandwidth == "batch":
        sigma = median_bandwidth(squared_distances(pooled.detach(), pooled.detach()))
    else:
        sigma = bandwidth
    kernel = gaussian_kernel(sq, sigma)  # (G', P, P)

    def kernel_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # sum_ij a_i K_ij b_j per group
        return (a.unsqueeze(1) @ kernel @ b.unsqueeze(2)).flatten()

    n_1, n_2 = weight_1.sum(1), weight_2.sum(1)  # (G',) both > 0 for present groups
    mmd_squared = (
        kernel_sum(weight_1, weight_1) / n_1**2 + kernel_sum(weight_2, weight_2) / n_2**2
        - 2 * kernel_sum(weight_1, weight_2) / (n_1 * n_2)
    )
    return _safe_sqrt(mmd_squared)


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None, validate_args: bool = True) -> torch.Tensor:
    """Biased MMD estimate between x (n, D) and y (m, D), n and m may differ; returns a scalar.

    `MMD = sqrt(1/n^2 sum K(x_i,x_j) + 1/m^2 sum K(y_i,y_j) - 2/(nm) sum K(x_i,y_j))`, the paper's
    Preliminary equation, used as ITRA's Match in Eq. (3)-(4). The bandwidth sigma is the median of
    the pooled samples' pairwise squared distances (no gradient), or the given float.

    The square root is kept safe: MMD^2 is clamped at 0 and, where it is below the dtype's epsilon,
    the result is exactly 0 with a zero gradient (not inf * 0 = NaN), e.g. for `mmd(x, x)`.
    `validate_args=False` skips the input checks, which read values back from the device (a sync per call).
    """
    if validate_args:
        _check_pair(x, y, ("x", "y"))
        check_bandwidth(bandwidth, allow_modes=False)
    zeros_x = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    zeros_y = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return _grouped_mmd(x, zeros_x, y, zeros_y, 1, "class" if bandwidth is None else bandwidth)[0]


def class_conditional_mmd(
    h1: torch.Tensor,
    y1: torch.Tensor,
    h2: torch.Tensor,
    y2: torch.Tensor,
    num_classes: int,
    bandwidth: Bandwidth = "class",
    validate_args: bool = True,
) -> torch.Tensor:
    """ITRA-c's matching loss, Eq. (5): the mean over classes k of MMD(H1^k, H2^k); returns a scalar.

    Args:
        h1: (n, D) features of mini-batch S1; y1: (n,) their labels in [0, num_classes).
        h2: (m, D) features of mini-batch S2; y2: (m,) their labels.
        num_classes: K.
        bandwidth: "class" (default): sigma_k is the median squared distance among class k's pooled
            samples; "batch": one median over the pooled batch; a float: that fixed sigma.

    Eq. (5) divides by K; here classes absent from either batch are left out of the mean (their MMD
    is undefined), so the mean runs over the classes present in both. When no class is shared the
    result is a zero that is still attached to the graph, so `backward()` works.
    All classes are computed in one batched kernel over per-class blocks (no Python loop over classes).
    `validate_args=False` skips the input checks (they read values back from the device every call);
    the training loop turns them off once its inputs are known to be well formed.
    """
    if validate_args:
        _check_pair(h1, h2, ("h1", "h2"))
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Expected `num_classes` to be an integer larger than 0, but got {num_classes!r}")
        _check_labels("y1", y1, h1, num_classes)
        _check_labels("y2", y2, h2, num_classes)
        check_bandwidth(bandwidth, allow_modes=True)
    values = _grouped_mmd(h1, y1, h2, y2, num_classes, bandwidth)
    if values.numel() == 0:  # no class in both batches: a zero that still back-propagates
        return (h1.sum() + h2.sum()) * 0
    return values.mean()


def check_bandwidth(bandwidth: object, allow_modes: bool) -> None:
    if bandwidth is None and not allow_modes:
        return
    if isinstance(bandwidth, str) and allow_modes and bandwidth in ("class", "batch"):
        return
    if isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and bandwidth > 0:
        return
    valid = '"class", "batch" or a float > 0' if allow_modes else "None (median heuristic) or a float > 0"
    raise ValueError(f"Expected `bandwidth` to be {valid}, but got {bandwidth!r}")
