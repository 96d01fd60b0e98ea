"""Activations: each function and derivative, at ordinary and extreme inputs, in both dtypes."""
import numpy as np
import pytest
import scipy.special

from scratchvae.activations import ACTIVATIONS, Identity, ReLU, Sigmoid, Softplus, Tanh, sigmoid, softplus
from scratchvae.backend import as_numpy
from scratchvae.gradcheck import THRESHOLD, numerical_gradient, rel_error

EXTREMES = np.array([-1e4, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e4])


def test_sigmoid_matches_scipy_expit(xp):
    """sigmoid(a) = 1 / (1 + exp(-a)) = (1 + tanh(a/2)) / 2, against scipy.special.expit.

    The tanh form is accurate to a few units of float64 round-off *absolutely* (|error| <
    2.3e-16): for a < -20 the sum 1 + tanh(a/2) cancels, so values below about 1e-16 come out
    as 0 or rounded, which no likelihood here notices (the Bernoulli log-likelihood uses
    softplus, not log sigmoid). For a > -20 it is also accurate relatively."""
    a = np.concatenate([np.linspace(-40, 40, 81), EXTREMES])
    ours = as_numpy(sigmoid(xp.asarray(a)))
    assert np.abs(ours - scipy.special.expit(a)).max() < 2.3e-16
    central = a > -20
    np.testing.assert_allclose(ours[central], scipy.special.expit(a[central]), rtol=1e-6)
    np.testing.assert_allclose(ours[a > -2], scipy.special.expit(a[a > -2]), rtol=1e-15)


def test_softplus_matches_logaddexp(xp):
    """softplus(a) = log(1 + exp(a)) = logaddexp(0, a), without overflow at a = 1e4."""
    a = np.concatenate([np.linspace(-40, 40, 81), EXTREMES])
    np.testing.assert_allclose(as_numpy(softplus(xp.asarray(a))), np.logaddexp(0.0, a), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_stay_finite_and_keep_dtype(xp, dtype):
    """At +-1e4 sigmoid is exactly 0 or 1, softplus exactly 0 or a, with no overflow or invalid
    operation (harmless underflow of exp(-1e4) to 0 is expected) and the input's dtype kept."""
    a = xp.asarray(EXTREMES.astype(dtype))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s, sp = sigmoid(a), softplus(a)
    assert s.dtype == dtype and sp.dtype == dtype
    s, sp = as_numpy(s), as_numpy(sp)
    assert s[0] == 0.0 and s[-1] == 1.0 and sp[0] == 0.0 and sp[-1] == np.float32(1e4)
    assert np.isfinite(s).all() and np.isfinite(sp).all()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward(xp, name):
    """da = dy * f'(a): Identity 1, Tanh 1 - y^2, ReLU [a > 0], Sigmoid y (1 - y), Softplus sigmoid(a),
    against central differences of sum(dy * f(a)) (ReLU inputs kept 0.1 away from its kink;
    |a| of order 1, where f' is not so small that round-off of f swamps it)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5))
    if name == "relu":
        a = np.sign(a) * np.maximum(np.abs(a), 0.1)
    a, dy = xp.asarray(a), xp.asarray(rng.standard_normal((4, 5)))
    layer = ACTIVATIONS[name]()
    layer.forward(a)
    da = layer.backward(dy)
    num = numerical_gradient(lambda: float((dy * layer.forward(a)).sum()), a)
    assert rel_error(da, num).max() < THRESHOLD


def test_activation_derivatives_in_closed_form(xp):
    """The derivatives used by backward, at a few points, written out."""
    a_host = np.array([-2.0, -0.5, 0.5, 2.0])
    a = xp.asarray(a_host[None])
    one = xp.ones_like(a)
    s = scipy.special.expit(a_host)
    cases = {Identity: np.ones(4), Tanh: 1 - np.tanh(a_host) ** 2, ReLU: [0, 0, 1, 1],
             Sigmoid: s * (1 - s), Softplus: s}
    for cls, expected in cases.items():
        layer = cls()
        layer.forward(a)
        np.testing.assert_allclose(as_numpy(layer.backward(one))[0], expected, rtol=1e-14,
                                   err_msg=cls.__name__)


def test_relu_takes_zero_derivative_at_the_kink(xp):
    """ReLU's derivative at exactly a = 0 is taken as 0 (documented choice)."""
    layer = ReLU()
    layer.forward(xp.zeros((1, 3)))
    assert as_numpy(layer.backward(xp.ones((1, 3)))).tolist() == [[0.0, 0.0, 0.0]]


def test_activations_have_no_parameters():
    """Activations are modules without parameters: nothing for optimizers to update."""
    for cls in ACTIVATIONS.values():
        assert cls().parameters() == {} and cls().gradients() == {}
    assert set(ACTIVATIONS) == {"identity", "tanh", "relu", "sigmoid", "softplus"}
