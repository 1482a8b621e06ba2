"""Maximum mean discrepancy between the features of two mini-batches: the ITRA matching loss.

Pure functions on tensors (no `nn`, no I/O). Notation follows the paper: `H1` (n, D) and `H2` (m, D)
are the features of mini-batches S1 and S2, `K(x, y) = exp(-||x - y||^2 / sigma)` the Gaussian kernel.

    MMD(H1, H2) = [ 1/n^2 sum K(h1_i, h1_j) + 1/m^2 sum K(h2_i, h2_j) - 2/(nm) sum K(h1_i, h2_j) ]^(1/2)

is the biased estimate of Gretton et al. (2007) that the paper writes down (Preliminary section).
`class_conditional_mmd` is ITRA-c's Match_c, Eq. (5).
"""
from __future__ import annotations

import functools
import math
from typing import Literal, Union

import torch

from itra.checks import check_bandwidth, check_count, check_flag, check_labels, check_pair
from itra.errors import BadValue

# One vocabulary for `mmd` and `class_conditional_mmd`: "batch" (the median of the pooled batch),
# "class" (a median per class; for `mmd`, one group, the same as "batch"), "multi" or a fixed sigma.
Bandwidth = Union[float, Literal["batch", "class", "multi"]]
BANDWIDTH_MODES = ("batch", "class", "multi")
# "multi": the DAN convention (Long et al. 2015): Gaussian kernels at these multiples of the batch
# median, averaged, so that no single bandwidth decides which distances count.
MULTI_KERNEL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # each twice the last: one exp, then squares
# Where `class_conditional_mmd` takes the blocked layout (`_blocked_kernel_sums`): host reads are free on
# the CPU, and there it is up to K times less work than the pooled (N, N) kernel (and 5-30x faster than
# sorting the pooled matrix's pairs for per-class medians); elsewhere the pooled path, which reads nothing.
BLOCKED_DEVICES = ("cpu",)
# The pooled samples N from which the blocks pay for their layout, measured at K = 10 and 100 (pooled time /
# blocked time): with a pooled median ("batch", "multi"), whose pairs are needed anyway, from N = 512
# (1.2-1.7x there, 0.9-1.1x at N = 256); with a fixed sigma from N = 128 (1.0-1.2x there, 1.8x at 256).
# Per-class medians ("class") always take the blocks.
BLOCKED_MIN_SAMPLES = {"median": 512, "fixed": 128}
# Per-class medians of blocks this wide take one selection per class instead of one batched selection
# (`torch.kthvalue` over the padded stack, which tracks indices): measured twice as fast from there on.
LOOPED_MEDIAN_WIDTH = 64
# Medians of this many pairs or more take the band selection of `_lower_median` on the CPU.
BAND_MEDIAN_SIZE, BAND_SAMPLE = 2**16, 4096


def parse_bandwidth(value: str | float) -> Bandwidth:
    """A bandwidth as a flag or a config file spells it (`"class"`, `"2.5"`, `2.5`): one of
    `BANDWIDTH_MODES` or a float > 0; anything else is a ValueError naming it."""
    if value in BANDWIDTH_MODES:
        return value  # type: ignore[return-value]
    expected = f"Expected `bandwidth` to be {', '.join(map(repr, BANDWIDTH_MODES))} or a number > 0, but got {value!r}"
    if isinstance(value, bool):
        raise BadValue(expected)
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise BadValue(expected) from None
    if not (sigma > 0 and math.isfinite(sigma)):
        raise BadValue(expected)
    return sigma


def median_bandwidth(sq_dists: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The median heuristic: sigma = median of the off-diagonal pairwise squared distances.

    Args:
        sq_dists: (N, N) squared distances of the pooled samples (both mini-batches together), or a
            stack (G, N, N) of such matrices, one per group (class), padded to a common N.
        valid: (G, N) True for the samples of each group: with a stack, its real (not padding)
            samples; with one (N, N) matrix, the members of each group (disjoint groups), whose
            within-group pairs give that group's median.

    Returns:
        A scalar, or (G,) with `valid`. The median is the lower median (as `torch.median`) of the
        pairs i < j (the matrix is symmetric up to rounding). Where it is 0 (more than half of the
        pairs coincide) the mean squared distance is used instead, and where that is 0 too (all
        samples identical, or fewer than two) sigma = 1: every kernel value is then exp(0) = 1
        whatever sigma. A vanishing sigma would make d K / d d = -K / sigma overflow for coinciding
        pairs and turn their zero gradient into inf - inf = NaN. Off the CPU no shape depends on the
        values (no read back to the host); on the CPU a stack and a large set of pairs take selections
        that read (free there). Computed under `no_grad`: the paper's sigma "is not back propagated".
    """
    with torch.no_grad():
        n = sq_dists.shape[-1]
        if n < 2:
            ones = sq_dists.new_ones(())
            return ones if valid is None else ones.expand(valid.shape[0])
        rows, cols, flat = _upper_pairs(n, sq_dists.device)  # (M,) each: the pairs i < j
        pairs = sq_dists.take(flat) if sq_dists.ndim == 2 else sq_dists.flatten(1)[:, flat]  # (M,) or (G, M)
        if valid is None:
            return _median_of_pairs(pairs)
        if sq_dists.ndim == 3:
            return _stacked_lower_median(pairs, valid[:, rows] & valid[:, cols])
        num_groups = valid.shape[0]  # one matrix: a pair belongs to its samples' group when they share one
        label = torch.where(valid.any(0), valid.to(torch.uint8).argmax(0), num_groups)  # (N,)
        group = torch.where(label[rows] == label[cols], label[rows], num_groups)  # (M,)
        return _grouped_lower_median(pairs, group, num_groups)


def _median_of_pairs(pairs: torch.Tensor) -> torch.Tensor:
    """`median_bandwidth` of one group from its pairs' squared distances (M,): the lower median, with
    `_positive_or_fallback`."""
    return _positive_or_fallback(_lower_median(pairs), pairs.mean())


def _lower_median(values: torch.Tensor) -> torch.Tensor:
    """`values.median()` of a 1-D tensor (the lower median; NaN if any value is NaN), exactly.

    On the CPU, from `BAND_MEDIAN_SIZE` values, it is selected within a band instead: the band around
    the median of an evenly strided sample of `BAND_SAMPLE` values, wide enough (4 standard deviations
    of the sample median's rank) to hold the median almost always. Counting the values below the band
    proves that it does; if not, the full selection runs. About half the time of `torch.median` there
    (two passes of comparisons and one selection among a few per cent of the values, against a copy
    and a selection among all).
    """
    size = values.numel()
    if values.device.type != "cpu" or size < BAND_MEDIAN_SIZE:
        return values.median()
    rank = (size - 1) // 2  # the lower median's, from 0
    sample = values[:: size // BAND_SAMPLE].sort().values  # (S,), S >= BAND_SAMPLE
    centre, margin = rank * sample.numel() // size, 2 * math.isqrt(sample.numel())
    low, high = sample[max(centre - margin, 0)], sample[min(centre + margin, sample.numel() - 1)]
    below = int((values < low).sum())
    band = values[(values >= low) & (values <= high)]
    if below <= rank < below + band.numel() and below + band.numel() + int((values > high).sum()) == size:  # no NaN
        return band.kthvalue(rank - below + 1).values
    return values.median()


def _stacked_lower_median(pairs: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Lower median (with `_positive_or_fallback`) of each row of `pairs` (G, M) over its `real` entries.

    One batched selection (`kthvalue`, no sort) at the same rank R in every row: row g, whose median has
    rank r_g among its c_g real entries, gets R - r_g of its padding entries set to -inf (below every
    distance) and the rest to +inf. R is read back to the host: this serves the CPU's blocked layout.
    """
    counts = real.sum(1)  # (G,)
    rank = (counts - 1).clamp_min(0) // 2
    top = int(rank.max())
    padding_rank = torch.cumsum(~real, 1)  # (G, M): 1, 2, ... along each row's padding
    low = padding_rank <= (top - rank)[:, None]
    filled = torch.where(real, pairs, torch.where(low, -math.inf, math.inf))
    median = filled.kthvalue(top + 1, dim=1).values
    median = torch.where(counts > 0, median, torch.zeros_like(median))
    return _positive_or_fallback(median, (pairs * real).sum(1) / counts.clamp_min(1))


@functools.lru_cache(maxsize=16)
def _upper_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, columns and flat indices (M,) of the pairs i < j of an (n, n) matrix (read-only, cached:
    building them costs about a third of the median's selection)."""
    rows, cols = torch.triu_indices(n, n, 1, device=device)
    return rows, cols, rows * n + cols


def _grouped_lower_median(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Lower median (with `_positive_or_fallback`) of `values` (P,) per group id in [0, G]; id G is
    ignored. Two sorts (by value, then stably by group) put each group's values in order, side by
    side; a group's median is then read at its offset, with no shape that depends on the groups."""
    values, order = values.sort()
    group, regroup = group[order].sort(stable=True)
    values = values[regroup]
    counts = torch.zeros(num_groups + 1, dtype=torch.long, device=values.device).index_add_(0, group, torch.ones_like(group))
    sums = torch.zeros(num_groups + 1, dtype=values.dtype, device=values.device).index_add_(0, group, values)
    counts, sums = counts[:num_groups], sums[:num_groups]
    first = torch.cumsum(counts, 0) - counts
    median = values[(first + (counts - 1).clamp_min(0) // 2).clamp_max(values.shape[0] - 1)]
    median = torch.where(counts > 0, median, torch.zeros_like(median))
    return _positive_or_fallback(median, sums / counts.clamp_min(1))


def _positive_or_fallback(median: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return torch.where(median > 0, median, torch.where(mean > 0, mean, 1.0))


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


def _kernel_and_slope(exponent: torch.Tensor, multi: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel at `exponent` = -d / sigma (overwritten) and its derivative in the exponent: exp itself
    for one scale; for "multi", the mean of exp(exponent / s) over `MULTI_KERNEL_SCALES` and of its
    derivatives, from one `exp` at the widest scale and its squares (the scales are powers of two)."""
    if not multi:
        kernel = exponent.exp_()
        return kernel, kernel
    power = exponent.div_(MULTI_KERNEL_SCALES[-1]).exp_()  # exp(-d / (4 sigma))
    kernel, slope = power.clone(), power / MULTI_KERNEL_SCALES[-1]
    for scale in reversed(MULTI_KERNEL_SCALES[:-1]):
        power = power * power
        kernel += power
        slope.add_(power, alpha=1 / scale)
    return kernel.div_(len(MULTI_KERNEL_SCALES)), slope.div_(len(MULTI_KERNEL_SCALES))


class _KernelSums(torch.autograd.Function):
    """sum_{i,j} w_i w_j k(z_i, z_j) of each block: (G,) from blocks z (G, P, D) and signed weights w
    (G, P), or a scalar from one block z (P, D), w (P,). With weights 1/n on S1 and -1/m on S2 (0 on
    padding) this is a block's MMD^2.

    k is the Gaussian kernel exp(-d / sigma) of the squared distances d (..., P, P) that the caller has
    computed from z without gradient (and reused for the median), or the mean of such kernels at
    `MULTI_KERNEL_SCALES` times sigma. `inv_sigma` is 1/sigma: a scalar, (G, 1, 1) per block, or (P, 1)
    per row (equal within a group, so the kernel stays symmetric). With `group` (P,) (one block only),
    pairs of different groups are left out and the result is (num_groups,), one sum per group.

    The gradient is written by hand: one (P, P) @ (P, D) product per block and no (P, P) temporary
    beyond the saved kernel slope, where autograd would keep and build several.
    """

    @staticmethod
    def forward(ctx, z, sq_dists, weights, inv_sigma, multi, group, num_groups):
        inv_sigma = _resolvable(inv_sigma, z.dtype)
        kernel, slope = _kernel_and_slope(sq_dists.mul_(-inv_sigma), multi)
        if group is not None:
            cross = group[:, None] != group[None, :]
            kernel.masked_fill_(cross, 0)
            if multi:
                slope.masked_fill_(cross, 0)
        kernel_weights = _matvec(kernel, weights)  # (..., P)
        per_sample = weights * kernel_weights
        # A sample's pair with itself adds nothing to the gradient (z_i - z_i): without it, the two terms of the
        # backward that would cancel to rounding for it are not formed at all (one scale: the slope is the kernel,
        # whose sums are taken above)
        slope.diagonal(dim1=-2, dim2=-1).zero_()
        ctx.save_for_backward(z, slope, weights, group, inv_sigma)
        if group is None:
            return per_sample.sum(-1)
        return per_sample.new_zeros(num_groups).index_add_(0, group, per_sample)

    @staticmethod
    def backward(ctx, grad):
        # d/dz_i of sum_g grad_g sum_ij w_i w_j k_ij = -4 grad_g(i) w_i / sigma_i sum_j k'_ij w_j (z_i - z_j),
        # k' the kernel's slope in -d / sigma (k itself for one scale), k symmetric within a group.
        z, slope, weights, group, inv_sigma = ctx.saved_tensors
        slope_weights = _matvec(slope, weights)  # (..., P)
        grad_per_sample = grad.unsqueeze(-1) if group is None else grad[group]  # broadcasts to (..., P)
        if z.shape[-1] > z.shape[-2]:  # sum_j k'_ij w_j z_j: weigh the smaller operand
            weighted = (slope * weights.unsqueeze(-2)) @ z  # (..., P, D)
        else:
            weighted = slope @ (weights.unsqueeze(-1) * z)
        coefficient = (-4 * grad_per_sample * weights).unsqueeze(-1) * inv_sigma
        grad_z = weighted.neg_().addcmul_(slope_weights.unsqueeze(-1), z).mul_(coefficient)  # in place: no new (P, D)
        return grad_z, None, None, None, None, None, None


def _resolvable(inv_sigma: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1/sigma at most 1/eps of `dtype`. The squared distances of the scaled samples (|z| <= sqrt(D)) are computed
    as |z_i|^2 + |z_j|^2 - 2 z_i.z_j, to about eps: a sigma below that compares rounding noise, and its 1/sigma
    would multiply the rounding residue of the gradient's terms for equal samples (a sample with itself, or the same
    sample drawn into S1 and S2), whose true value is 0, into a gradient of 1e20 or more that makes training
    diverge. At the limit every pair farther apart than rounding is still at a kernel of exp(-1/eps) = 0."""
    return inv_sigma.clamp_max(1 / torch.finfo(dtype).eps)


def _matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """matrix (..., P, P) times vector (..., P): (..., P); one block takes `mv` (half the time of a
    one-column `mm` at P = 128-256)."""
    return matrix @ vector if vector.ndim == 1 else (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def _sq_distances(z: torch.Tensor) -> torch.Tensor:
    """`|z_i|^2 + |z_j|^2 - 2 z_i.z_j` (P, P) or (G, P, P), clamped at 0, of centred and scaled samples
    z (P, D) or blocks (G, P, D); no gradient (the kernel's is written by hand in `_KernelSums`)."""
    with torch.no_grad():
        if z.shape[-1] > z.shape[-2]:  # D > P: the norms from the Gram matrix's diagonal, one pass of P^2, not P D
            sq = z @ z.transpose(-1, -2)  # (..., P, P)
            sq_norms = sq.diagonal(dim1=-2, dim2=-1).clone()
            sq.mul_(-2).add_(sq_norms.unsqueeze(-2))
        else:
            sq_norms = z.square().sum(-1)  # (..., P)
            product = torch.baddbmm if z.ndim == 3 else torch.addmm
            sq = product(sq_norms.unsqueeze(-2), z, z.transpose(-1, -2), alpha=-2)
        sq = sq.add_(sq_norms.unsqueeze(-1)).clamp_min_(0)
        # A sample's distance to itself is 0 up to rounding (the product and the norms sum in different orders); at a
        # small sigma that rounding times 1/sigma would take exp(0) = 1 to 0: it is set to exactly 0.
        sq.diagonal(dim1=-2, dim2=-1).fill_(0)
        return sq


def _pair_distances(z: torch.Tensor, rows_per_block: int = 256) -> torch.Tensor:
    """The squared distances (M,) of the pairs i < j of z (N, D), M = N (N - 1) / 2, without gradient and
    without the (N, N) matrix: each block of rows against the columns from its first row on, so about
    half the products of the full matrix (the median needs the pairs, not the matrix)."""
    with torch.no_grad():
        sq_norms = z.square().sum(-1)  # (N,)
        pieces = []
        for start in range(0, z.shape[0], rows_per_block):
            rows = z[start:start + rows_per_block]  # (b, D)
            block = torch.addmm(sq_norms[None, start:], rows, z[start:].T, alpha=-2)
            block = block.add_(sq_norms[start:start + rows_per_block, None]).clamp_min_(0)  # (b, N - start)
            pieces += [block[:, :rows.shape[0]].take(_upper_pairs(rows.shape[0], z.device)[2]), block[:, rows.shape[0]:].flatten()]
        return torch.cat(pieces)


@functools.lru_cache(maxsize=16)
def _one_group_weights(n: int, m: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n + m,): 1/n for S1's samples, -1/m for S2's (read-only, cached: `mmd`'s weights depend only on the sizes)."""
    return torch.cat([torch.full((n,), 1 / n, dtype=dtype), torch.full((m,), -1 / m, dtype=dtype)]).to(device)


def _mmd_per_group(
    h1: torch.Tensor, h2: torch.Tensor, y: torch.Tensor | None, counts: tuple[torch.Tensor, torch.Tensor] | None,
    bandwidth: Bandwidth, squared: bool,
) -> torch.Tensor:
    """MMD(H1, H2) as a scalar for one group (y None), or MMD(H1^k, H2^k) for every class k: (K,), from
    the pooled labels y (N,), N = n + m, and counts, the (K,) sizes of each class in S1 and in S2;
    classes absent from a batch get a finite value the caller leaves out. MMD^2 with `squared`.

    One pooled (N, N) distance matrix serves the pooled median ("batch", "multi") and the kernel, with
    the pairs of different classes masked: no shape depends on the labels, so nothing is read back to
    the host. This runs for one group, on GPUs, and for small batches. On the CPU (`BLOCKED_DEVICES`),
    where reads are free, classes take the blocked layout instead (`_blocked_kernel_sums`): always with
    per-class medians, and from `BLOCKED_MIN_SAMPLES` pooled samples otherwise.

    Numerics: whatever the input dtype (float16 and bfloat16 under mixed precision), everything is
    computed in float32 at least, outside autocast, and gradients come back in the input dtype. The
    features are centred and divided by a detached scale (their largest deviation
    from that centre), and a fixed sigma by its square: every kernel value stays as it is, the
    distances `|x|^2 + |y|^2 - 2 x.y` keep no cancellation error from a large offset, and they are
    far from overflow and underflow (features of norm 1e19 or 1e-19 in float32). A sigma below the rounding of
    those distances (1/sigma above 1/eps of the dtype, after scaling) acts as that limit (`_resolvable`), and a
    sample's kernel with itself, constant, gives no gradient term: a tiny sigma gives the MMD of a kernel that is 0
    between different samples and a gradient of 0, not rounding times 1/sigma.

    The centre is the coordinate-wise midrange (max + min) / 2, not the mean: max and min are selections, not rounded
    sums, so the centre does not depend on the order of the samples, and neither do the centred features, their
    distances or the median bandwidth, bit for bit. With a mean, a permutation of the batch moves the centre by a
    rounding error, and where the median distance is itself at rounding level (near-duplicate features beside a far
    one) sigma and the MMD would change with the order. Any point inside the samples' range serves for accuracy, and
    the midrange gives the smallest largest deviation.
    """
    n, m = h1.shape[0], h2.shape[0]
    with torch.autocast(h1.device.type, enabled=False):
        pooled = torch.cat([h1, h2]).to(torch.promote_types(h1.dtype, torch.float32))  # (N, D)
        detached = pooled.detach()
        high, low = detached.amax(dim=0), detached.amin(dim=0)  # (D,)
        centre = (high + low) / 2  # the midrange (docstring)
        scale = _finite_positive_or_one(((high - low) / 2).max())  # the largest deviation from the centre
        z = torch.addcmul(-centre / scale, pooled, 1 / scale)  # (pooled - centre) / scale in one pass
        multi = bandwidth == "multi"
        per_class = bandwidth == "class" and y is not None
        blocked = y is not None and z.device.type in BLOCKED_DEVICES and (
            per_class or n + m >= BLOCKED_MIN_SAMPLES["median" if isinstance(bandwidth, str) else "fixed"])
        sq = None if blocked else _sq_distances(z)  # the blocks have their own
        inv_sigma = None  # per class: from each class's pairs, below
        if not isinstance(bandwidth, str):  # held at 1/eps by `_resolvable` (an inf would make 0 * inf = NaN)
            inv_sigma = scale.detach() ** 2 / bandwidth
        elif not per_class:  # "batch", "multi", and "class" of one group
            inv_sigma = 1 / (median_bandwidth(sq) if sq is not None else _median_of_pairs(_pair_distances(z)))
        if y is None:
            weights = _one_group_weights(n, m, z.dtype, z.device)  # (N,): 1/n on S1, -1/m on S2
        else:
            in_first = torch.arange(n + m, device=z.device) < n
            weights = 1 / torch.where(in_first, counts[0].to(z.dtype)[y], -counts[1].to(z.dtype)[y])  # 1/n_k, -1/m_k
        if blocked:
            mmd_squared = _blocked_kernel_sums(z, y, weights, counts, inv_sigma, multi)
        else:
            if per_class:
                members = y[None, :] == torch.arange(counts[0].shape[0], device=y.device)[:, None]  # (K, N)
                inv_sigma = (1 / median_bandwidth(sq, members))[y][:, None]  # (N, 1)
            num_groups = 0 if y is None else counts[0].shape[0]
            mmd_squared = _KernelSums.apply(z, sq, weights, inv_sigma, multi, y, num_groups)
        return mmd_squared.clamp_min(0) if squared else _safe_sqrt(mmd_squared)


def _blocked_kernel_sums(
    z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, counts: tuple[torch.Tensor, torch.Tensor],
    inv_sigma: torch.Tensor | None, multi: bool,
) -> torch.Tensor:
    """MMD^2 of every class (K,), 0 for classes not in both batches, from z (N, D) (S1's rows first), its
    labels y (N,), each sample's signed weight (N,) (1/n_k on S1, -1/m_k on S2) and the (K,) class sizes
    in S1 and in S2. Each class present in both batches is a block of a stack (G', P, D), P the largest
    pooled class: about K times fewer kernel entries and products than the pooled (N, N) matrix. `inv_sigma` None means a median per class.
    Padding repeats sample 0 with weight 0.

    The layout is built on the host from the labels (a read: free on the CPU, a sync on a GPU, where
    the pooled path runs instead).
    """
    sizes = (counts[0] + counts[1]).long()  # (K,) pooled class sizes
    shared = ((counts[0] > 0) & (counts[1] > 0)).nonzero().squeeze(1)  # (G',) classes in both batches
    values = z.new_zeros(sizes.shape[0])
    if shared.numel() == 0:
        return values + 0 * z.sum()
    block_sizes = sizes[shared]  # (G',)
    by_class = torch.argsort(y, stable=True)  # (N,) each class's samples together, S1's first
    offsets = torch.arange(int(block_sizes.max()))  # (P,)
    real = offsets < block_sizes[:, None]  # (G', P)
    slot = (torch.cumsum(sizes, 0) - sizes)[shared, None] + offsets  # (G', P) where each block's samples are in by_class
    index = torch.where(real, by_class[slot.clamp_max(y.shape[0] - 1)], 0)  # (G', P) samples; padding: sample 0
    block_weights = torch.where(real, weights[index], 0)  # (G', P): 1/n_k on S1, -1/m_k on S2, 0 on padding
    blocks = z.index_select(0, index.flatten()).view(*index.shape, z.shape[1])  # (G', P, D)
    sq = _sq_distances(blocks.detach())  # (G', P, P)
    if inv_sigma is None:  # each class's median, over its pairs i < j
        if index.shape[1] < LOOPED_MEDIAN_WIDTH:  # one batched selection
            sigma = median_bandwidth(sq, real)
        else:  # one selection per class (its samples lead its block): half the time of the batched one there
            sigma = torch.stack([median_bandwidth(sq[g, :size, :size]) for g, size in enumerate(block_sizes.tolist())])
        inv_sigma = (1 / sigma)[:, None, None]
    return values.index_put((shared,), _KernelSums.apply(blocks, sq, block_weights, inv_sigma, multi, None, 0))


def _finite_positive_or_one(scale: torch.Tensor) -> torch.Tensor:
    """1 where the feature scale is 0 or subnormal (samples identical up to the dtype's smallest normal
    number: nothing to scale, and 1/scale would overflow; their distances then round to 0, so the MMD
    is that of identical samples, 0) or not finite (NaN features: the NaN is passed on by the features
    themselves)."""
    limits = torch.finfo(scale.dtype)
    return torch.where((scale >= limits.tiny) & (scale <= limits.max), scale, 1.0)


def mmd(
    x: torch.Tensor, y: torch.Tensor, bandwidth: Bandwidth = "batch", validate_args: bool = True,
    squared: bool = False,
) -> torch.Tensor:
    """Biased MMD estimate between the samples x and y (the paper's Preliminary equation; ITRA's Match in Eq. (3)-(4)).

    .. math:: MMD(X, Y) = [1/n^2 sum_ij K(x_i, x_j) + 1/m^2 sum_ij K(y_i, y_j) - 2/(nm) sum_ij K(x_i, y_j)]^(1/2),
              K(a, b) = exp(-||a - b||^2 / sigma)

    Args:
        x: (n, D) floating-point features, e.g. of mini-batch S1.
        y: (m, D) features of the same dtype and device, e.g. of S2; m may differ from n.
        bandwidth: sigma: "batch" (default) the median of the pooled samples' pairwise squared distances (no
            gradient: the paper's sigma "is not back propagated"); "class" the same here (one group); "multi"
            kernels at `MULTI_KERNEL_SCALES` times that median, averaged; a float > 0 that fixed sigma.
        validate_args: check the inputs (they read values back from the device: a sync per call; the training
            loop turns this off).
        squared: return MMD^2 instead of MMD.

    Returns:
        A scalar tensor (0-dim) of x's dtype. The square root is kept safe: MMD^2 is clamped at 0 and, where it is
        below the dtype's epsilon, the result is exactly 0 with a zero gradient (not inf * 0 = NaN), e.g. `mmd(x, x)`.

    Raises:
        BadValue: x or y not a non-empty, finite, floating-point 2-D tensor, their feature dims, dtypes or devices
            differ, `bandwidth` is none of the above, or `squared` is not a bool (with `validate_args`).

    Example:
        >>> import torch
        >>> from itra import mmd
        >>> x, y = torch.zeros(2, 1), torch.ones(2, 1)  # distance 1 across, sigma = the median, 1
        >>> round(mmd(x, y, squared=True).item(), 4)  # 2 (1 - e^-1), to float32 rounding
        1.2642
        >>> round(mmd(x, y, bandwidth=2.0).item(), 4)  # sqrt(2 (1 - e^-1/2))
        0.8871
        >>> mmd(x, x)  # identical samples: exactly 0
        tensor(0.)
    """
    if validate_args:
        check_pair(x, y, ("x", "y"))
        check_bandwidth(bandwidth, modes=BANDWIDTH_MODES)
        check_flag("squared", squared)
    return _mmd_per_group(x, y, None, None, bandwidth, squared)


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
    """ITRA-c's matching loss, Eq. (5): the mean over classes k of MMD(H1^k, H2^k) (`mmd` within each class).

    .. math:: Match_c(H1, H2) = 1/|P| sum_{k in P} MMD(H1^k, H2^k),   P = the classes present in both batches

    Args:
        h1: (n, D) floating-point features of mini-batch S1.
        y1: (n,) their integer labels in [0, num_classes).
        h2: (m, D) features of mini-batch S2 (same D, dtype and device).
        y2: (m,) their labels.
        num_classes: K.
        bandwidth: "batch" (default): one median over the pooled batch; "class" (the paper as we read it): sigma_k
            the median squared distance among class k's pooled samples; "multi": kernels at `MULTI_KERNEL_SCALES`
            times the batch median, averaged; a float > 0: that fixed sigma. No gradient flows through a median.
        validate_args: check the inputs (they read values back from the device every call); the training loop
            turns this off once its inputs are known to be well formed.
        squared: the mean of MMD^2 instead of MMD.

    Returns:
        A scalar tensor (0-dim). Eq. (5) divides by K; here classes absent from either batch are left out of the mean
        (their MMD is undefined). When no class is shared the result is a zero still attached to the graph, so
        `backward()` works.

    Raises:
        BadValue: features as `mmd` refuses them; labels not 1-D integer tensors, one per row, in [0, num_classes);
            `num_classes` not an integer >= 1; an unknown `bandwidth`; `squared` not a bool (with `validate_args`).

    No Python loop over classes computes a kernel. On a GPU all classes come from one pooled (N, N) kernel with the
    pairs of different classes masked out, min(K, N) class slots whatever the labels (`_class_slots`), and no value
    is read back to the host; on the CPU, where reads are free, large batches and per-class medians take a stack of
    per-class blocks instead (`BLOCKED_DEVICES`), up to K times less work.

    Example:
        >>> import torch
        >>> from itra import class_conditional_mmd
        >>> h1, h2 = torch.tensor([[0.0], [0.0], [5.0], [5.0]]), torch.tensor([[1.0], [1.0], [5.0], [5.0]])
        >>> y = torch.tensor([0, 0, 1, 1])  # class 0 moved by 1, class 1 the same in both batches
        >>> value = class_conditional_mmd(h1, y, h2, y, num_classes=2, bandwidth="class")
        >>> round(value.item(), 4)  # (mmd of class 0 + 0) / 2 = sqrt(2 (1 - e^-1)) / 2, to float32 rounding
        0.5622
        >>> class_conditional_mmd(h1, y, h2, torch.tensor([2, 2, 2, 2]), num_classes=3)  # no class in both: 0
        tensor(0.)
    """
    if validate_args:
        check_pair(h1, h2, ("h1", "h2"))
        check_count("num_classes", num_classes)
        check_labels("y1", y1, h1, num_classes)
        check_labels("y2", y2, h2, num_classes)
        check_bandwidth(bandwidth, modes=BANDWIDTH_MODES)
        check_flag("squared", squared)
    labels, slots = _class_slots(torch.cat([y1, y2]).long(), num_classes)  # (N,) in [0, slots)
    counts = tuple(torch.zeros(slots, device=y.device).index_add_(0, y, torch.ones(y.shape, device=y.device))
                   for y in labels.split([y1.shape[0], y2.shape[0]]))  # (slots,) class sizes in S1 and in S2
    present = (counts[0] > 0) & (counts[1] > 0)  # (slots,)
    values = _mmd_per_group(h1, h2, labels, counts, bandwidth, squared)  # (slots,)
    return torch.where(present, values, torch.zeros_like(values)).sum() / present.sum().clamp_min(1)


def _class_slots(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, int]:
    """The pooled labels (N,) and the number of class slots the kernels take: K, or, where K > N, the labels
    renumbered in their order into [0, N) and N slots (at most N classes can be present; the mean over present
    classes does not change). A sort and a cumulative sum, nothing read back to the host, so memory and work grow
    with min(K, N), not with K (`num_classes=10**12` is as cheap as 10)."""
    if num_classes <= labels.shape[0]:
        return labels, num_classes
    values, order = labels.sort()
    ranks = torch.zeros_like(labels)
    ranks[order[1:]] = (values[1:] != values[:-1]).long().cumsum(0)  # how many smaller labels there are
    return ranks, labels.shape[0]
