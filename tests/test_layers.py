"""Linear and MLP: forward, every backward, parameter naming, and the initializations' statistics."""
import math

import numpy as np
import pytest
import scipy.stats

from scratchvae.backend import as_numpy
from scratchvae.derivations.checks import z_bound
from scratchvae.gradcheck import THRESHOLD, check_gradients
from scratchvae.layers import INITS, MLP, Linear, init_weights, linear_backward, mlp_backward


def _grad_errors(layer, x, dy):
    """Reports for every parameter and for the input of f = sum(dy * layer(x))."""
    layer.forward(x)
    dx = layer.backward(dy)
    grads = {**{k: g.copy() for k, g in layer.gradients().items()}, "x": dx}
    f = lambda: float((dy * layer.forward(x)).sum())  # noqa: E731
    return check_gradients(f, {**layer.parameters(), "x": x}, grads)


def test_linear_forward_is_xW_plus_b(xp, device):
    """y = x W + b with W (in, out) and b (out,), rows as examples."""
    layer = Linear(4, 3, rng=np.random.default_rng(0), dtype="float64", device=device)
    x = np.random.default_rng(1).standard_normal((5, 4))
    W, b = (as_numpy(layer.params[k]) for k in "Wb")
    np.testing.assert_allclose(as_numpy(layer.forward(xp.asarray(x))), x @ W + b, rtol=1e-14)


@pytest.mark.parametrize("init", INITS)
def test_linear_backward(xp, device, init):
    """dW = x^T dy, db = sum_b dy, dx = dy W^T, against central differences, for every init."""
    rng = np.random.default_rng(2)
    layer = Linear(4, 3, init=init, rng=rng, dtype="float64", device=device)
    if init in ("glorot", "he"):   # zero biases: give b a value so that db is tested at a generic point
        layer.params["b"][...] = xp.asarray(rng.standard_normal(3))
    x, dy = xp.asarray(rng.standard_normal((5, 4))), xp.asarray(rng.standard_normal((5, 3)))
    reports = _grad_errors(layer, x, dy)
    assert [r.name for r in reports] == ["W", "b", "x"]
    assert max(r.worst for r in reports) < THRESHOLD


def test_linear_backward_in_closed_form(xp, device):
    """The three formulas, written out with NumPy."""
    rng = np.random.default_rng(3)
    layer = Linear(4, 3, rng=rng, dtype="float64", device=device)
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer.forward(xp.asarray(x))
    dx = as_numpy(layer.backward(xp.asarray(dy)))
    W = as_numpy(layer.params["W"])
    np.testing.assert_allclose(as_numpy(layer.grads["W"]), x.T @ dy, rtol=1e-13)
    np.testing.assert_allclose(as_numpy(layer.grads["b"]), dy.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(dx, dy @ W.T, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_backward_function_is_what_the_layer_computes(xp, device, dtype):
    """linear_backward(dy, x, W) -> (dx, dW, db) is the textbook form of Linear.backward, which
    writes dW and db into the gradient buffer in place: the two agree bit for bit."""
    rng = np.random.default_rng(30)
    layer = Linear(4, 3, init="pytorch", rng=rng, dtype=dtype, device=device)
    x = xp.asarray(rng.standard_normal((6, 4)).astype(dtype))
    dy = xp.asarray(rng.standard_normal((6, 3)).astype(dtype))
    layer.forward(x)
    dx = layer.backward(dy)
    for mine, theirs in zip(linear_backward(dy, x, layer.params["W"]), (dx, layer.grads["W"], layer.grads["b"])):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(as_numpy(mine), as_numpy(theirs))


def test_mlp_backward_is_the_chain_rule_of_the_mlp(xp, device):
    """MLP.backward is mlp_backward over its layers: the same dx and the same gradients, and with
    input_grad=False the same gradients without dx."""
    rng = np.random.default_rng(31)
    x, dy = xp.asarray(rng.standard_normal((5, 4))), xp.asarray(rng.standard_normal((5, 3)))
    a, b = (MLP([4, 6, 3], activation="tanh", rng=np.random.default_rng(32), dtype="float64", device=device)
            for _ in range(2))
    a.forward(x)
    b.forward(x)
    np.testing.assert_array_equal(as_numpy(a.backward(dy)), as_numpy(mlp_backward(b.layers, dy)))
    for k, g in a.gradients().items():
        np.testing.assert_array_equal(as_numpy(g), as_numpy(b.gradients()[k]), err_msg=k)
    a.zero_grad()
    a.forward(x)
    assert a.backward(dy, input_grad=False) is None
    for k, g in a.gradients().items():
        np.testing.assert_array_equal(as_numpy(g), as_numpy(b.gradients()[k]), err_msg=k)


def test_backward_writes_gradients_in_place(xp, device):
    """backward fills the same gradient arrays every time (optimizers hold references to them)."""
    layer = Linear(3, 2, rng=np.random.default_rng(4), dtype="float64", device=device)
    before = {k: id(g) for k, g in layer.grads.items()}
    for _ in range(2):
        layer.forward(xp.ones((2, 3)))
        layer.backward(xp.ones((2, 2)))
    assert {k: id(g) for k, g in layer.grads.items()} == before
    layer.zero_grad()
    assert all(float(abs(g).max()) == 0 for g in layer.grads.values())


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "relu", "identity"])
def test_mlp_backward(xp, device, activation):
    """Backprop through Linear -> act -> Linear -> act -> Linear for every activation, every tensor."""
    rng = np.random.default_rng(5)
    mlp = MLP([4, 6, 5, 3], activation=activation, init="pytorch", rng=rng, dtype="float64", device=device)
    x, dy = xp.asarray(rng.standard_normal((7, 4))), xp.asarray(rng.standard_normal((7, 3)))
    reports = _grad_errors(mlp, x, dy)
    assert [r.name for r in reports] == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b", "x"]
    assert max(r.worst for r in reports) < THRESHOLD


def test_mlp_output_activation(xp, device):
    """out_activation applies to the last layer only: sigmoid outputs lie in (0, 1)."""
    mlp = MLP([3, 4, 2], activation="relu", out_activation="sigmoid", rng=np.random.default_rng(6),
              dtype="float64", device=device)
    y = as_numpy(mlp.forward(xp.asarray(np.random.default_rng(7).normal(0, 5, (50, 3)))))
    assert (y > 0).all() and (y < 1).all()
    assert "Sigmoid" in repr(mlp) and "ReLU" in repr(mlp)


def test_layers_default_to_float32_on_the_requested_device(xp, device):
    """Parameters are float32 unless float64 is asked for, and live on the device."""
    mlp = MLP([3, 2], rng=np.random.default_rng(0), device=device)
    assert all(p.dtype == np.float32 for p in mlp.parameters().values())
    assert all(isinstance(p, xp.ndarray) for p in mlp.parameters().values())
    assert all(g.dtype == np.float32 for g in mlp.gradients().values())


def test_same_seed_same_weights_on_every_device(xp, device):
    """Weights are drawn on the host, so a seed gives the same initial model on CPU and GPU."""
    a = MLP([5, 4, 3], rng=np.random.default_rng(9), device=device)
    b = MLP([5, 4, 3], rng=np.random.default_rng(9), device="cpu")
    for k, p in a.parameters().items():
        np.testing.assert_array_equal(as_numpy(p), b.parameters()[k])


# -- initializations ------------------------------------------------------------------------
IN, OUT = 400, 300          # 120000 weights: standard errors of about 0.3 percent


def _z_mean_and_var(w, var):
    """|z| of the sample mean against 0 and of the sample variance against var (SE from the sample)."""
    n = w.size
    z_mean = abs(w.mean()) / (w.std(ddof=1) / math.sqrt(n))
    sq = (w - w.mean()) ** 2
    z_var = abs(sq.mean() - var) / (sq.std(ddof=1) / math.sqrt(n))
    return z_mean, z_var


@pytest.mark.parametrize("init, var_w", [("paper", 0.01 ** 2), ("paper-variance", 0.01), ("glorot", 6.0 / (IN + OUT) / 3),
                                         ("he", 2.0 / IN), ("pytorch", 1.0 / IN / 3)])
def test_initialization_statistics(init, var_w):
    """Weights have mean 0 and the variance of their law: paper N(0, 0.01^2); paper-variance
    N(0, 0.01), the variance 0.01; Glorot U(-r, r)
    with r = sqrt(6/(in+out)), variance r^2/3; He N(0, 2/in); PyTorch U(-1/sqrt(in), 1/sqrt(in)),
    variance 1/(3 in).
    Both z-scores below the Bonferroni bound for 10 comparisons at alpha = 1e-4."""
    W, b = init_weights(IN, OUT, init, np.random.default_rng(10))
    assert W.shape == (IN, OUT) and b.shape == (OUT,) and W.dtype == np.float64
    assert max(_z_mean_and_var(W, var_w)) < z_bound(10)


R_GLOROT, R_PYTORCH = math.sqrt(6 / (IN + OUT)), 1 / math.sqrt(IN)


@pytest.mark.parametrize("init, law", [("paper", scipy.stats.norm(0, 0.01)),
                                       ("paper-variance", scipy.stats.norm(0, 0.1)),
                                       ("glorot", scipy.stats.uniform(-R_GLOROT, 2 * R_GLOROT)),
                                       ("he", scipy.stats.norm(0, math.sqrt(2 / IN))),
                                       ("pytorch", scipy.stats.uniform(-R_PYTORCH, 2 * R_PYTORCH))])
def test_initialization_distribution_kolmogorov_smirnov(init, law):
    """The weights follow their stated law (normal or uniform): Kolmogorov-Smirnov p-value above 1e-4."""
    W, _ = init_weights(IN, OUT, init, np.random.default_rng(11))
    assert scipy.stats.kstest(W.ravel(), law.cdf).pvalue > 1e-4


def test_initialization_ranges_and_biases():
    """Uniform inits stay inside their range; Glorot and He start with zero biases; the paper's
    and PyTorch's biases follow the weights' law."""
    rng = np.random.default_rng(12)
    W, b = init_weights(IN, OUT, "glorot", rng)
    assert np.abs(W).max() <= math.sqrt(6 / (IN + OUT)) and not b.any()
    W, b = init_weights(IN, OUT, "pytorch", rng)
    assert np.abs(W).max() <= 1 / math.sqrt(IN) and np.abs(b).max() <= 1 / math.sqrt(IN) and b.std() > 0
    _, b = init_weights(IN, OUT, "he", rng)
    assert not b.any()
    _, b = init_weights(IN, 20000, "paper", rng)
    assert b.std(ddof=1) == pytest.approx(0.01, rel=4 * math.sqrt(1 / (2 * 20000)))
    _, b = init_weights(IN, 20000, "paper-variance", rng)
    assert b.std(ddof=1) == pytest.approx(0.1, rel=4 * math.sqrt(1 / (2 * 20000)))
