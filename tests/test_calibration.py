"""Temperature scaling against an independent float64 reference (scipy's bounded Brent on the mean NLL in
log T) and a library's temperature scaling (netcal), its bounds, determinism and the sharded form."""
import math

import numpy as np
import pytest
import torch

from itra.calibration import TEMPERATURE_RANGE, fit_temperature, nll_sums


def logits_and_labels(n=2000, k=10, scale=4.0, right=0.6, seed=0):
    """Logits (n, K) whose top class is the label for a fraction `right` of the samples, random for the rest."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=generator, dtype=torch.float64) * scale
    labels = torch.randint(0, k, (n,), generator=generator)
    labels[: int(right * n)] = logits[: int(right * n)].argmax(dim=1)
    return logits, labels


def mean_nll(logits, labels, temperature):
    scaled = logits.numpy() / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_normaliser - scaled[np.arange(len(labels)), labels.numpy()]))


@pytest.mark.parametrize("scale, right", [(4.0, 0.6), (0.3, 0.9), (10.0, 0.95), (1.0, 0.3), (2.0, 0.99)])
def test_fit_temperature_equals_a_float64_reference(scale, right):
    from scipy.optimize import minimize_scalar

    logits, labels = logits_and_labels(scale=scale, right=right)
    bounds = tuple(math.log(b) for b in TEMPERATURE_RANGE)
    reference = minimize_scalar(lambda u: mean_nll(logits, labels, math.exp(u)), bounds=bounds, method="bounded",
                                options={"xatol": 1e-12})
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(math.exp(reference.x), rel=1e-6)
    assert mean_nll(logits, labels, temperature) <= reference.fun + 1e-12


def test_fit_temperature_equals_netcal():
    netcal = pytest.importorskip("netcal.scaling", reason="pip install netcal")
    logits, labels = logits_and_labels()
    scaling = netcal.TemperatureScaling()  # fits on probabilities, by maximum likelihood
    probabilities = logits.softmax(dim=1).numpy()
    scaling.fit(probabilities, labels.numpy())
    ours = (logits / fit_temperature(logits, labels)).softmax(dim=1).numpy()
    np.testing.assert_allclose(scaling.transform(probabilities), ours, atol=1e-4)


def test_the_nll_derivatives_are_those_of_the_nll():
    logits, labels = logits_and_labels(n=50)
    u = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    nll = torch.nn.functional.cross_entropy(logits / u.exp(), labels, reduction="sum")
    (slope,) = torch.autograd.grad(nll, u, create_graph=True)
    (curvature,) = torch.autograd.grad(slope, u)
    count, ours_slope, ours_curvature = nll_sums(logits, labels, math.exp(0.3))
    assert count == 50
    assert float(ours_slope) == pytest.approx(float(slope.detach()), rel=1e-10)
    assert float(ours_curvature) == pytest.approx(float(curvature), rel=1e-10)


def test_temperature_of_an_overconfident_model_is_above_one_and_scaling_does_not_change_predictions():
    logits, labels = logits_and_labels(scale=1.0, right=0.7)
    temperature = fit_temperature(logits * 5, labels)
    assert temperature == pytest.approx(5 * fit_temperature(logits, labels), rel=1e-8)  # T scales with the logits
    assert temperature > 1
    assert torch.equal((logits / temperature).argmax(dim=1), logits.argmax(dim=1))


def test_bounds_where_the_nll_is_monotone():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == TEMPERATURE_RANGE[0]  # always right: sharper is better
    assert fit_temperature(logits, torch.tensor([1, 0])) == TEMPERATURE_RANGE[1]  # always wrong: flatter is better


def test_same_input_same_temperature_and_float32_input():
    logits, labels = logits_and_labels(seed=3)
    assert fit_temperature(logits, labels) == fit_temperature(logits.clone(), labels.clone())
    assert fit_temperature(logits.float(), labels) == pytest.approx(fit_temperature(logits, labels), rel=1e-5)


def test_reduce_sums_the_shards():
    """Two ranks holding the same shard: summing their sums (2 x) fits the temperature of the doubled set."""
    logits, labels = logits_and_labels(n=999, seed=5)
    calls = []
    sharded = fit_temperature(logits, labels, reduce=lambda sums: calls.append(1) or 2 * sums)
    assert len(calls) > 2
    whole = fit_temperature(torch.cat([logits, logits]), torch.cat([labels, labels]))
    assert sharded == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize("logits, labels, message", [
    (torch.zeros(3), torch.zeros(3, dtype=torch.long), "Expected logits"),
    (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), "finite"),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "at least one sample"),
])
def test_bad_inputs_are_one_clear_error(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)


@pytest.mark.parametrize("logits", [torch.zeros(4, 3), torch.full((4, 3), 7.5), torch.arange(4.0)[:, None].expand(4, 3),
                                    torch.randn(4, 1)])
def test_logits_that_carry_no_information_fit_the_temperature_one(logits):
    """The NLL is log K whatever T: any T fits, and T = 1 leaves the model as it is (not a bound of the range)."""
    assert fit_temperature(logits, torch.tensor([0, 0, 0, 0])) == 1.0


@pytest.mark.parametrize("labels, message", [(torch.tensor([0, 3]), r"Expected `labels` in \[0, 3\), but got the label 3"),
                                             (torch.tensor([0.0, 1.0]), "integer tensor"),
                                             (np.array([0, 1]), "integer tensor")])
def test_labels_out_of_range_or_of_another_type_name_themselves(labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(torch.randn(2, 3), labels)
