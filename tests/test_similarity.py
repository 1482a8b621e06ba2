"""similarity.py against slow references written the obvious way (loops, Gram matrices, float64), gradcheck,
the invariances CKA has and has not, and streamed accumulation against the one-shot value."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from itra.similarity import CKAAccumulator, CosineAccumulator, linear_cka, sample_cosine, sample_cosines


# ---------------------------------------------------------------- slow references (float64, Gram matrices, loops)
def ref_hsic(k: torch.Tensor, l: torch.Tensor, debiased: bool) -> torch.Tensor:
    """Biased: tr(K H L H) / (n-1)^2, H = I - 11^T/n. Debiased: Song et al. (2012), Eq. (5), with K~, L~ the Gram
    matrices with a zero diagonal."""
    n = len(k)
    ones = torch.ones(n, dtype=torch.float64)
    if not debiased:
        h = torch.eye(n, dtype=torch.float64) - torch.outer(ones, ones) / n
        return torch.trace(k @ h @ l @ h) / (n - 1) ** 2
    k, l = k - torch.diag(torch.diag(k)), l - torch.diag(torch.diag(l))
    return (torch.trace(k @ l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (ones @ k @ l @ ones)) / (n * (n - 3))


def ref_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    x, y = x.double(), y.double()
    k, l = x @ x.T, y @ y.T  # uncentred: the biased form centres with H, the unbiased estimator needs no centring
    return (ref_hsic(k, l, debiased) / (ref_hsic(k, k, debiased) * ref_hsic(l, l, debiased)).sqrt()).item()


def ref_cosines(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    values = []
    for a, b in zip(x.double().tolist(), y.double().tolist()):
        dot = sum(ai * bi for ai, bi in zip(a, b))
        values.append(dot / (math.sqrt(sum(ai * ai for ai in a)) * math.sqrt(sum(bi * bi for bi in b))))
    return values


def related(n: int, dim_x: int, dim_y: int, seed: int = 0, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, dim_x) and y (n, dim_y) = a random linear map of x plus noise (CKA well inside (0, 1)), both + offset."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim_x, generator=g, dtype=torch.float64)
    y = x @ torch.randn(dim_x, dim_y, generator=g, dtype=torch.float64) + torch.randn(n, dim_y, generator=g,
                                                                                        dtype=torch.float64)
    return x + offset, y + offset


def orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


# ---------------------------------------------------------------- linear CKA
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize(("n", "dim_x", "dim_y"), [(4, 3, 2), (40, 5, 9), (30, 64, 8)])  # N < D too
def test_cka_matches_the_gram_matrix_reference(debiased, n, dim_x, dim_y):
    x, y = related(n, dim_x, dim_y)
    assert linear_cka(x, y, debiased).item() == pytest.approx(ref_cka(x, y, debiased), abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 12), dim_x=st.integers(1, 6), dim_y=st.integers(1, 6), seed=st.integers(0, 2**16),
       debiased=st.booleans())
def test_cka_matches_the_reference_on_any_shape(n, dim_x, dim_y, seed, debiased):
    x, y = related(n, dim_x, dim_y, seed, offset=2.0)
    assert linear_cka(x, y, debiased).item() == pytest.approx(ref_cka(x, y, debiased), abs=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(debiased):
    x, _ = related(20, 6, 1)
    assert linear_cka(x, x, debiased).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_rotation_scaling_and_translation(debiased):
    x, y = related(50, 6, 4)
    value = linear_cka(x, y, debiased).item()
    assert linear_cka(x @ orthogonal(6, 1), y, debiased).item() == pytest.approx(value, abs=1e-12)
    assert linear_cka(x, 7.5 * y @ orthogonal(4, 2), debiased).item() == pytest.approx(value, abs=1e-12)
    assert linear_cka(x + 100.0, y - 3.0, debiased).item() == pytest.approx(value, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_not_invariant_to_an_arbitrary_invertible_map(debiased):
    x, y = related(50, 6, 4)
    stretch = torch.diag(torch.tensor([100.0, 1, 1, 1, 1, 0.01], dtype=torch.float64))  # invertible, not orthogonal
    assert abs(linear_cka(x @ stretch, y, debiased).item() - linear_cka(x, y, debiased).item()) > 0.05


def test_cka_of_independent_representations_is_small_and_debiasing_removes_the_bias():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g)
    assert linear_cka(x, y).item() > 0.3  # the finite-N bias: D comparable to N
    assert abs(linear_cka(x, y, debiased=True).item()) < 0.05


def test_cka_is_float64_from_low_precision_inputs():
    x, y = related(30, 5, 3)
    for dtype in (torch.float32, torch.bfloat16):
        value = linear_cka(x.to(dtype), y.to(dtype))
        assert value.dtype == torch.float64 and value.ndim == 0
        assert value.item() == pytest.approx(ref_cka(x.to(dtype), y.to(dtype)), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_gradcheck(debiased):
    x, y = related(8, 3, 2)
    assert torch.autograd.gradcheck(lambda a, b: linear_cka(a, b, debiased), (x.requires_grad_(), y.requires_grad_()))


# ---------------------------------------------------------------- accumulation over batches
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e4])  # features far from the origin: the first batch's mean keeps precision
def test_cka_accumulated_over_batches_equals_the_one_shot_value(debiased, offset):
    x, y = related(100, 7, 5, offset=offset)
    accumulator = CKAAccumulator(7, 5)
    for rows in (slice(0, 1), slice(1, 37), slice(37, 100)):  # uneven, one of a single sample
        accumulator.update(x[rows], y[rows])
    assert accumulator.compute(debiased).item() == pytest.approx(linear_cka(x, y, debiased).item(), abs=1e-10)
    assert accumulator.compute(debiased).item() == pytest.approx(ref_cka(x - offset, y - offset, debiased), abs=1e-10)


def test_cka_accumulator_keeps_no_graph():
    x, y = related(10, 3, 2)
    accumulator = CKAAccumulator(3, 2)
    accumulator.update(x.requires_grad_(), y)
    assert not accumulator.compute().requires_grad


# ---------------------------------------------------------------- sample-wise cosine
def test_cosine_on_hand_made_vectors():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    y = torch.tensor([[0.0, 2.0], [2.0, 2.0], [-5.0, 0.0], [4.0, 3.0], [1.0, 1.0]])
    cosines = sample_cosines(x, y)
    assert cosines.dtype == torch.float64
    torch.testing.assert_close(cosines, torch.tensor([0.0, 1.0, -1.0, 24 / 25, 0.0], dtype=torch.float64))
    assert sample_cosine(x, y).item() == pytest.approx((1 - 1 + 24 / 25) / 5)


def test_cosine_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(17, 9, generator=g), torch.randn(17, 9, generator=g)
    torch.testing.assert_close(sample_cosines(x, y).tolist(), ref_cosines(x, y))
    assert sample_cosine(x, y).item() == pytest.approx(sum(ref_cosines(x, y)) / 17, abs=1e-12)


def test_cosine_accumulated_over_batches_equals_the_one_shot_value():
    x, y = related(30, 4, 4)
    accumulator = CosineAccumulator()
    for rows in (slice(0, 11), slice(11, 12), slice(12, 30)):
        accumulator.update(x[rows], y[rows])
    assert accumulator.compute().item() == pytest.approx(sample_cosine(x, y).item(), abs=1e-12)


def test_cosine_gradcheck():
    x, y = related(5, 3, 3)
    assert torch.autograd.gradcheck(sample_cosine, (x.requires_grad_(), y.requires_grad_()))


# ---------------------------------------------------------------- errors
def test_cosine_of_different_widths_points_to_cka():
    with pytest.raises(ValueError, match=r"same width .* shapes \(4, 3\) and \(4, 5\); .* linear_cka"):
        sample_cosine(torch.randn(4, 3), torch.randn(4, 5))


@pytest.mark.parametrize("function", [sample_cosine, linear_cka])
def test_different_samples_or_bad_shapes(function):
    with pytest.raises(ValueError, match=r"same samples, one per row, but got shapes \(4, 3\) and \(5, 3\)"):
        function(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"`x` to be 2-D .* shape \(4,\)"):
        function(torch.randn(4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="`y` to be finite"):
        function(torch.randn(4, 3), torch.full((4, 3), float("nan")))


def test_too_few_samples():
    with pytest.raises(ValueError, match="at least 4 samples for debiased CKA, but got 3"):
        linear_cka(torch.randn(3, 2), torch.randn(3, 2), debiased=True)
    with pytest.raises(ValueError, match="at least 2 samples for linear CKA, but got 1"):
        linear_cka(torch.randn(1, 2), torch.randn(1, 2))


def test_accumulator_errors():
    accumulator = CKAAccumulator(3, 2)
    with pytest.raises(ValueError, match="No samples yet"):
        accumulator.compute()
    with pytest.raises(ValueError, match=r"widths \(3, 2\) .* shapes \(4, 2\) and \(4, 3\)"):
        accumulator.update(torch.randn(4, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="No samples yet"):
        CosineAccumulator().compute()
