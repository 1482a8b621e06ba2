"""Layer-wise representation similarity: the sample-wise cosine of Jiang, Zhou & Zhu (2024) and linear CKA
(Kornblith et al., 2019), biased or debiased (Song et al., 2012; Nguyen et al., 2021).

Pure functions on the representations x (N, D_x) and y (N, D_y) of the same N samples at two layers, and
accumulators that give the same values from batches, so that a test set need not be held at once:

    h = model.exits(images)                          # one (N, D_l) per layer, the last one the head's features
    sample_cosine(h[2], h[-1])                       # mean_i cos(x_i, y_i): needs D_x = D_y
    linear_cka(h[2], h[-1], debiased=True)           # any widths

Both are computed and returned in float64, whatever the input dtype (float32, bf16): adjacent layers have
similarities near 1 and their differences are what a heat-map shows, which low-precision sums over a test
set would blur.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from itra.checks import check_features
from itra.errors import BadValue

DEBIASED_MIN_SAMPLES = 4  # debiased HSIC divides by n (n - 3)


def _check_samples(x: torch.Tensor, y: torch.Tensor) -> None:
    check_features("x", x)
    check_features("y", y)
    if x.shape[0] != y.shape[0]:
        raise BadValue(f"Expected `x` and `y` to hold the same samples, one per row, but got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


def sample_cosines(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos(x_i, y_i) = x_i . y_i / (|x_i| |y_i|) for each sample i: (N,) float64 from x, y (N, D).

    A zero row gives 0 (each norm is clamped at 1e-8). The representations must have the same width D:
    layers of different widths (the stages of a ResNet) are compared with `linear_cka`.
    """
    _check_samples(x, y)
    if x.shape[1] != y.shape[1]:
        raise BadValue(f"Expected `x` and `y` of the same width for a sample-wise cosine, but got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}; compare layers of different widths with linear_cka")
    return F.cosine_similarity(x.double(), y.double(), dim=1, eps=1e-8)


def sample_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The layer similarity of Jiang et al. (2024): (1/N) sum_i cos(x_i, y_i), a 0-d float64 tensor from x, y (N, D)."""
    return sample_cosines(x, y).mean()


@dataclasses.dataclass
class _Moments:
    """Sums over samples i of u_i = x_i - s_x (D_x,), v_i = y_i - s_y (D_y,) and their squared norms
    p_i = |u_i|^2, q_i = |v_i|^2, for fixed shifts s_x, s_y: all that linear CKA needs, biased or debiased.

    Every term of CKA is invariant to the shifts; they only keep the sums small (centring in one pass).
    """

    count: int
    u: torch.Tensor  # sum u_i (D_x,)
    v: torch.Tensor  # sum v_i (D_y,)
    uu: torch.Tensor  # sum u_i u_i^T (D_x, D_x)
    vv: torch.Tensor  # sum v_i v_i^T (D_y, D_y)
    uv: torch.Tensor  # sum u_i v_i^T (D_x, D_y)
    pu: torch.Tensor  # sum p_i u_i (D_x,)
    qu: torch.Tensor  # sum q_i u_i (D_x,)
    pv: torch.Tensor  # sum p_i v_i (D_y,)
    qv: torch.Tensor  # sum q_i v_i (D_y,)
    pp: torch.Tensor  # sum p_i^2 ()
    qq: torch.Tensor  # sum q_i^2 ()
    pq: torch.Tensor  # sum p_i q_i ()

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> _Moments:
        u, v = x.double() - shift_x, y.double() - shift_y  # (N, D_x), (N, D_y)
        p, q = u.pow(2).sum(dim=1), v.pow(2).sum(dim=1)  # (N,)
        return cls(len(u), u.sum(0), v.sum(0), u.T @ u, v.T @ v, u.T @ v,
                   p @ u, q @ u, p @ v, q @ v, p @ p, q @ q, p @ q)

    def __add__(self, other: _Moments) -> _Moments:
        return _Moments(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))


def _sum_of_norm_products(pq: torch.Tensor, pv: torch.Tensor, qu: torch.Tensor, uv: torch.Tensor,
                          p: torch.Tensor, q: torch.Tensor, mean_u: torch.Tensor, mean_v: torch.Tensor,
                          n: int) -> torch.Tensor:
    """sum_i a_i b_i, a_i = |u_i - mean_u|^2 and b_i = |v_i - mean_v|^2, from sums over the uncentred u_i, v_i:
    expand a_i = p_i - 2 u_i . mean_u + |mean_u|^2 (and b_i alike) and use sum_i u_i = n mean_u."""
    square_u, square_v = mean_u @ mean_u, mean_v @ mean_v
    return (pq - 2 * mean_v @ pv + square_v * p - 2 * mean_u @ qu + 4 * mean_u @ uv @ mean_v + square_u * q
            - 3 * n * square_u * square_v)


def _linear_cka(m: _Moments, debiased: bool) -> torch.Tensor:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, L = Y Y^T, in feature space.

    Biased (Kornblith et al. 2019, Eq. 3 with linear kernels): n^2 HSIC_0 = |X_c^T Y_c|_F^2, X_c, Y_c the centred
    features. Debiased: the unbiased HSIC_1 of Song et al. (2012), which with the centred Gram matrices
    K = X_c X_c^T, L = Y_c Y_c^T (K 1 = 0, so K~ 1 = -a with a_i = K_ii = |x_c,i|^2) reduces to
        n (n - 3) HSIC_1 = |X_c^T Y_c|_F^2 - n / (n - 2) sum_i a_i b_i + (sum_i a_i)(sum_i b_i) / ((n - 1)(n - 2)).
    """
    n = m.count
    minimum = DEBIASED_MIN_SAMPLES if debiased else 2
    if n < minimum:
        raise BadValue(f"Expected at least {minimum} samples for {'debiased' if debiased else 'linear'} CKA, "
                         f"but got {n}")
    mean_u, mean_v = m.u / n, m.v / n
    cov_uu = m.uu - n * torch.outer(mean_u, mean_u)  # X_c^T X_c (D_x, D_x)
    cov_vv = m.vv - n * torch.outer(mean_v, mean_v)
    cov_uv = m.uv - n * torch.outer(mean_u, mean_v)  # X_c^T Y_c (D_x, D_y)
    hsic_xy, hsic_xx, hsic_yy = cov_uv.pow(2).sum(), cov_uu.pow(2).sum(), cov_vv.pow(2).sum()
    if debiased:
        p, q = m.uu.trace(), m.vv.trace()  # sum_i p_i, sum_i q_i
        a, b = cov_uu.trace(), cov_vv.trace()  # sum_i a_i, sum_i b_i
        ab = _sum_of_norm_products(m.pq, m.pv, m.qu, m.uv, p, q, mean_u, mean_v, n)
        aa = _sum_of_norm_products(m.pp, m.pu, m.pu, m.uu, p, p, mean_u, mean_u, n)
        bb = _sum_of_norm_products(m.qq, m.qv, m.qv, m.vv, q, q, mean_v, mean_v, n)
        hsic_xy = hsic_xy - n / (n - 2) * ab + a * b / ((n - 1) * (n - 2))
        hsic_xx = hsic_xx - n / (n - 2) * aa + a * a / ((n - 1) * (n - 2))
        hsic_yy = hsic_yy - n / (n - 2) * bb + b * b / ((n - 1) * (n - 2))
    return hsic_xy / (hsic_xx * hsic_yy).sqrt()


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """Linear CKA of the representations x (N, D_x) and y (N, D_y) of the same N samples: a 0-d float64 tensor.

        CKA(X, Y) = |Y_c^T X_c|_F^2 / (|X_c^T X_c|_F |Y_c^T Y_c|_F),  X_c = X - mean_i x_i  (Kornblith et al. 2019)

    in [0, 1], 1 for x with itself, invariant to orthogonal maps and isotropic scaling of either input, not to
    other invertible linear maps. `debiased=True` uses the unbiased HSIC estimator (Song et al. 2012) in each of
    the three terms, as Nguyen et al. (2021) do: it removes the bias of finite N toward 1 (needs N >= 4; a value
    can fall slightly below 0 or, rarely, be NaN when an estimate of HSIC(X, X) is negative). NaN when x or y is
    the same for every sample. Computed in feature space in O(N (D_x + D_y)^2); differentiable.
    """
    _check_samples(x, y)
    shift_x, shift_y = x.double().mean(dim=0), y.double().mean(dim=0)  # exact centring
    return _linear_cka(_Moments.of(x, y, shift_x, shift_y), debiased)


class CKAAccumulator:
    """`linear_cka` over a data set seen in batches: `update(x, y)` per batch, then `compute(debiased)`.

        acc = CKAAccumulator(dim_x, dim_y)
        for images, _ in loader:
            h = model.exits(images)
            acc.update(h[0], h[-1])
        acc.compute(), acc.compute(debiased=True)

    Holds sums over the samples seen, never the samples: X^T X, Y^T Y, X^T Y ((D_x + D_y)^2 float64 numbers)
    and vectors of first and (for the debiased form) norm-weighted sums, all centred at the end. Both forms
    equal `linear_cka` on the concatenated batches up to float64 rounding. The sums are taken around the
    first batch's mean (CKA does not depend on it) so that features far from the origin lose no precision.
    Inputs are detached: nothing is kept for autograd.
    """

    def __init__(self, dim_x: int, dim_y: int) -> None:
        self.dims = (dim_x, dim_y)
        self.moments: _Moments | None = None
        self.shifts: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: x (B, dim_x) and y (B, dim_y), the same B samples."""
        _check_samples(x, y)
        if (x.shape[1], y.shape[1]) != self.dims:
            raise BadValue(f"Expected widths {self.dims} for (x, y), as the accumulator was built with, but got "
                             f"shapes {tuple(x.shape)} and {tuple(y.shape)}")
        x, y = x.detach(), y.detach()
        if self.shifts is None:
            self.shifts = (x.double().mean(dim=0), y.double().mean(dim=0))
        batch = _Moments.of(x, y, *self.shifts)
        self.moments = batch if self.moments is None else self.moments + batch

    def compute(self, debiased: bool = False) -> torch.Tensor:
        """CKA of all samples seen so far, biased or debiased as in `linear_cka`: a 0-d float64 tensor."""
        if self.moments is None:
            raise BadValue("No samples yet: call update(x, y) with at least one batch before compute()")
        return _linear_cka(self.moments, debiased)


class CosineAccumulator:
    """`sample_cosine` over a data set seen in batches: a running sum of cos(x_i, y_i) and a count."""

    def __init__(self) -> None:
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: x, y (B, D), the same B samples."""
        cosines = sample_cosines(x.detach(), y.detach())
        self.total = self.total.to(cosines.device) + cosines.sum()
        self.count += len(cosines)

    def compute(self) -> torch.Tensor:
        """(1/N) sum_i cos(x_i, y_i) over the N samples seen so far: a 0-d float64 tensor."""
        if self.count == 0:
            raise BadValue("No samples yet: call update(x, y) with at least one batch before compute()")
        return self.total / self.count
