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

from itra.checks import check_bandwidth, check_labels, check_pair

Bandwidth = Union[Literal["class", "batch", "multi"], float]
BANDWIDTH_MODES = ("class", "batch", "multi")
# "multi": the DAN convention (Long et al. 2015): Gaussian kernels at these multiples of the batch
# median, averaged, so that no single bandwidth decides which distances count.
MULTI_KERNEL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances `||x_i - y_j||^2`, shape (..., n, m), from x (..., n, D)
    and y (..., m, D), with any leading batch dims.

    Computed as `|x|^2 + |y|^2 - 2 x.y` after subtracting a centre of x (distances are translation
    invariant, and centring keeps the cancellation error small for features far from the origin),
    clamped at 0. No square root is taken: its gradient is infinite at distance 0.
    """
    centre = detached_centre(x, dim=-2)
    x, y = x - centre, y - centre
    cross = x @ y.transpose(-1, -2)  # (..., n, m)
    sq = x.pow(2).sum(dim=-1).unsqueeze(-1) + y.pow(2).sum(dim=-1).unsqueeze(-2) - 2 * cross
    return sq.clamp_min(0)


def detached_centre(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The coordinate-wise midrange (max + min) / 2 of x along `dim`, kept as a size-1 dim, detached.

    Used to centre features before their distances are computed. Any point inside the samples' range
    serves for accuracy, and the midrange gives the smallest largest deviation. It is chosen over the
    mean because max and min are selections, not rounded sums: the centre does not depend on the order
    of the samples, so neither do the centred features, their distances or the median bandwidth, bit
    for bit. With a mean, a permutation of the batch moves the centre by a rounding error, and where
    the median distance is itself at rounding level (near-duplicate features beside a far one) sigma
    and the MMD then change with the order.
    """
    x = x.detach()
    return (x.amax(dim=dim, keepdim=True) + x.amin(dim=dim, keepdim=True)) / 2


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
    """sqrt(max(s, 0)) that is exactly 0, with a zero (sub)gradient, where s <= eps of the dtype; NaN stays NaN.

    The plain square root has an infinite derivative at 0, and at MMD = 0 the derivative of MMD^2 is
    itself 0, so autograd would compute inf * 0 = NaN. Values of MMD^2 below the dtype's epsilon are
    rounding noise of the kernel means, so they are treated as 0. A NaN (from NaN or infinite
    features) is passed on, never turned into a finite value, so that a training loop sees it.
    """
    eps = torch.finfo(squared.dtype).eps
    kept = (squared > eps) | squared.isnan()
    return torch.where(kept, squared.clamp_min(eps).sqrt(), torch.zeros_like(squared))


def _grouped_mmd(
    h1: torch.Tensor, y1: torch.Tensor, h2: torch.Tensor, y2: torch.Tensor, num_groups: int, bandwidth: Bandwidth,
    squared: bool = False,
) -> torch.Tensor:
    """MMD(H1^k, H2^k) for every group k present in both batches, all groups in one batched computation.

    The pooled samples are sorted by group and scattered into a zero-padded stack (G', P, D), G' the
    groups present in both batches and P the largest pooled group; one batched kernel (G', P, P)
    then holds every within-group pair, and padding is masked out. This costs G' * P^2 kernel entries
    instead of the (n + m)^2 of a full kernel matrix: about K times fewer for balanced classes.
    Returns (G',) values (MMD^2 with `squared`), empty when no group is shared.

    Numerics: whatever the input dtype (float16 and bfloat16 under mixed precision), everything is
    computed in float32 at least, outside autocast, and gradients come back in the input dtype. The
    features are divided by a detached scale (their largest deviation from the pooled mean) and a fixed
    sigma by its square, which leaves every kernel value as it is but keeps squared distances far
    from overflow and underflow (features of norm 1e19 or 1e-19 in float32).
    """
    with torch.autocast(h1.device.type, enabled=False):
        dtype = torch.promote_types(h1.dtype, torch.float32)
        pooled = torch.cat([h1, h2]).to(dtype)  # (N, D), N = n + m
        scale = _feature_scale(pooled)
        sigma = bandwidth if isinstance(bandwidth, str) else bandwidth / scale**2
        return _stacked_mmd(pooled / scale, h1.shape[0], torch.cat([y1, y2]).long(), num_groups, sigma, squared)


def _feature_scale(pooled: torch.Tensor) -> torch.Tensor:
    """The largest absolute deviation of the samples (N, D) from their centre (`detached_centre`),
    detached (a maximum, not a sum of squares, so that it cannot overflow itself); 1 where it is 0 or
    not finite (identical samples: nothing to scale; NaN features: the NaN is passed on by the features)."""
    scale = (pooled.detach() - detached_centre(pooled, dim=0)).abs().max()
    return torch.where((scale > 0) & scale.isfinite(), scale, torch.ones_like(scale))


def _stacked_mmd(
    pooled: torch.Tensor, n: int, labels: torch.Tensor, num_groups: int, bandwidth: str | torch.Tensor,
    squared: bool,
) -> torch.Tensor:
    """`_grouped_mmd` on pooled features (N, D), the first n of S1, with labels (N,)."""
    y1, y2 = labels[:n], labels[n:]
    in_second = torch.arange(pooled.shape[0], device=pooled.device) >= n  # (N,)
    present = (torch.bincount(y1, minlength=num_groups) > 0) & (torch.bincount(y2, minlength=num_groups) > 0)
    slot_of_group = torch.cumsum(present, 0) - 1  # group id -> row in the stack (valid where present)
    num_present = int(present.sum())
    if num_present == 0:
        return pooled.new_zeros(0)

    keep = present[labels]
    slot = slot_of_group[labels[keep]]  # (N',)
    order = torch.argsort(slot, stable=True)
    slot, samples, second = slot[order], pooled[keep][order], in_second[keep][order]
    # Centre the real samples before zero-padding, so that padding sits at their centre, not far away.
    samples = samples - detached_centre(samples, dim=0)
    sizes = torch.bincount(slot, minlength=num_present)  # (G',) pooled size of each group
    position = torch.arange(slot.shape[0], device=slot.device) - (torch.cumsum(sizes, 0) - sizes)[slot]
    width = int(sizes.max())
    stack = samples.new_zeros(num_present, width, samples.shape[1]).index_put((slot, position), samples)  # (G', P, D)
    valid = torch.zeros(num_present, width, dtype=torch.bool, device=slot.device).index_put((slot, position), torch.ones_like(second))
    weight_2 = torch.zeros(num_present, width, dtype=samples.dtype, device=slot.device).index_put((slot, position), second.to(samples.dtype))
    weight_1 = valid.to(samples.dtype) - weight_2  # (G', P): 1 for samples of S1, 0 for S2 and padding

    sq = squared_distances(stack, stack)  # (G', P, P)
    if not isinstance(bandwidth, str):
        sigma = bandwidth
    elif bandwidth == "class":
        sigma = median_bandwidth(sq, valid)[:, None, None]  # (G', 1, 1)
    else:  # "batch", "multi"
        sigma = median_bandwidth(squared_distances(pooled.detach(), pooled.detach()))
    if bandwidth == "multi":
        scales = torch.tensor(MULTI_KERNEL_SCALES, dtype=sq.dtype, device=sq.device)[:, None, None, None]
        kernel = gaussian_kernel(sq, sigma * scales).mean(dim=0)  # (G', P, P), averaged over (S, 1, 1, 1) bandwidths
    else:
        kernel = gaussian_kernel(sq, sigma)  # (G', P, P)

    def kernel_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # sum_ij a_i K_ij b_j per group
        return (a.unsqueeze(1) @ kernel @ b.unsqueeze(2)).flatten()

    n_1, n_2 = weight_1.sum(1), weight_2.sum(1)  # (G',) both > 0 for present groups
    mmd_squared = (
        kernel_sum(weight_1, weight_1) / n_1**2 + kernel_sum(weight_2, weight_2) / n_2**2
        - 2 * kernel_sum(weight_1, weight_2) / (n_1 * n_2)
    )
    return mmd_squared.clamp_min(0) if squared else _safe_sqrt(mmd_squared)


def mmd(
    x: torch.Tensor, y: torch.Tensor, bandwidth: float | Literal["multi"] | None = None, validate_args: bool = True,
    squared: bool = False,
) -> torch.Tensor:
    """Biased MMD estimate between x (n, D) and y (m, D), n and m may differ; returns a scalar.

    `MMD = sqrt(1/n^2 sum K(x_i,x_j) + 1/m^2 sum K(y_i,y_j) - 2/(nm) sum K(x_i,y_j))`, the paper's
    Preliminary equation, used as ITRA's Match in Eq. (3)-(4); MMD^2 itself with `squared`. The
    bandwidth sigma is the median of the pooled samples' pairwise squared distances (None; no
    gradient), the given float, or "multi": kernels at `MULTI_KERNEL_SCALES` times that median, averaged.

    The square root is kept safe: MMD^2 is clamped at 0 and, where it is below the dtype's epsilon,
    the result is exactly 0 with a zero gradient (not inf * 0 = NaN), e.g. for `mmd(x, x)`.
    `validate_args=False` skips the input checks, which read values back from the device (a sync per call).
    """
    if validate_args:
        check_pair(x, y, ("x", "y"))
        check_bandwidth(bandwidth, modes=(None, "multi"))
    zeros_x = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    zeros_y = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return _grouped_mmd(x, zeros_x, y, zeros_y, 1, "batch" if bandwidth is None else bandwidth, squared)[0]


def class_conditional_mmd(
    h1: torch.Tensor,
    y1: torch.Tensor,
    h2: torch.Tensor,
    y2: torch.Tensor,
    num_classes: int,
    bandwidth: Bandwidth = "batch",
    validate_args: bool = True,
    squared: bool = False,
) -> torch.Tensor:
    """ITRA-c's matching loss, Eq. (5): the mean over classes k of MMD(H1^k, H2^k); returns a scalar.

    Args:
        h1: (n, D) features of mini-batch S1; y1: (n,) their labels in [0, num_classes).
        h2: (m, D) features of mini-batch S2; y2: (m,) their labels.
        num_classes: K.
        bandwidth: "batch" (default): one median over the pooled batch; "class" (the paper as we
            read it): sigma_k is the median squared distance among class k's pooled samples; "multi": kernels at
            `MULTI_KERNEL_SCALES` times the batch median, averaged; a float: that fixed sigma.
        validate_args: check the inputs (they read values back from the device every call); the
            training loop turns this off once its inputs are known to be well formed.
        squared: the mean of MMD^2 instead of MMD.

    Eq. (5) divides by K; here classes absent from either batch are left out of the mean (their MMD
    is undefined), so the mean runs over the classes present in both. When no class is shared the
    result is a zero that is still attached to the graph, so `backward()` works.
    All classes are computed in one batched kernel over per-class blocks (no Python loop over classes).
    """
    if validate_args:
        check_pair(h1, h2, ("h1", "h2"))
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Expected `num_classes` to be an integer larger than 0, but got {num_classes!r}")
        check_labels("y1", y1, h1, num_classes)
        check_labels("y2", y2, h2, num_classes)
        check_bandwidth(bandwidth, modes=BANDWIDTH_MODES)
    values = _grouped_mmd(h1, y1, h2, y2, num_classes, bandwidth, squared)
    if values.numel() == 0:  # no class in both batches: a zero that still back-propagates
        return (h1.sum() + h2.sum()) * 0
    return values.mean()
