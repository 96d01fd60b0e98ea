"""Bad input: a ValueError or TypeError naming the argument and what was expected, and the
model's parameters (and gradients) exactly as they were before the call."""
import numpy as np
import pytest

import scratchvae as sv
from scratchvae.models.autoencoder import Autoencoder, fit, pca, principal_angles
from scratchvae.backend import as_numpy
from scratchvae.models.deep_lvm import DeepLVM
from scratchvae.layers import MLP, Linear
from scratchvae.models.linear_gaussian import LinearGaussian
from scratchvae.models.mixture import GaussianMixture, fit_em
from scratchvae.optim import SGD, Adagrad, Adam


def _snapshot(model):
    return {name: (as_numpy(p).copy(), as_numpy(g).copy()) for name, p, g in model.named_parameters()}


def _assert_unchanged(model, snapshot):
    after = _snapshot(model)
    assert after.keys() == snapshot.keys()
    for name, (p, g) in snapshot.items():
        np.testing.assert_array_equal(after[name][0], p, err_msg=f"parameter {name} changed")
        np.testing.assert_array_equal(after[name][1], g, err_msg=f"gradient {name} changed")


# -- the VAE -----------------------------------------------------------------------------------
def _vae(device, likelihood="bernoulli"):
    model = sv.VAE(6, z_dim=2, hidden_dims=(5,), likelihood=likelihood, device=device, seed=0)
    x = model.xp.asarray(np.random.default_rng(0).uniform(0, 1, (4, 6)).astype(np.float32))
    model.loss_and_grads(x)          # non-zero gradients, so that a change would show
    return model, x


def _bad_x_cases(xp):
    good = np.random.default_rng(1).uniform(0, 1, (4, 6)).astype(np.float32)
    nan, inf = good.copy(), good.copy()
    nan[1, 2], inf[0, 0] = np.nan, np.inf
    return [
        ("wrong width", xp.asarray(good[:, :5]), ValueError, r"x must have shape \(any, 6\)"),
        ("1-D", xp.asarray(good[0]), ValueError, r"x must have shape"),
        ("float64 on a float32 model", xp.asarray(good.astype(np.float64)), TypeError, r"x must have dtype float32"),
        ("integers", xp.asarray((good > 0.5).astype(np.int64)), TypeError, r"x must have a float dtype"),
        ("a list", good.tolist(), TypeError, r"x must be a NumPy or CuPy array"),
        ("NaN", xp.asarray(nan), ValueError, r"x contains NaN or Inf"),
        ("Inf", xp.asarray(inf), ValueError, r"x contains NaN or Inf"),
    ]


@pytest.mark.parametrize("method", ["elbo", "loss", "loss_and_grads", "encode", "reconstruct"])
def test_vae_bad_x(xp, device, method):
    """Every entry point that takes x refuses wrong shapes, dtypes, non-arrays, NaN and Inf by name."""
    model, _ = _vae(device)
    before = _snapshot(model)
    for label, x, error, message in _bad_x_cases(xp):
        with pytest.raises(error, match=message):
            getattr(model, method)(x)
        _assert_unchanged(model, before)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_vae_bernoulli_targets_outside_unit_interval(xp, device, value):
    """A Bernoulli likelihood needs x in [0, 1]; the Gaussian one accepts any finite x."""
    model, x = _vae(device)
    before = _snapshot(model)
    bad = x.copy()
    bad[2, 3] = value
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] for a Bernoulli likelihood"):
        model.loss_and_grads(bad)
    _assert_unchanged(model, before)
    gaussian, _ = _vae(device, "gaussian")
    assert np.isfinite(gaussian.loss(bad))


def test_vae_bad_eps_and_n_samples(xp, device):
    """eps of the wrong shape (or no samples), dtype or device, non-finite eps, and n_samples < 1 or
    non-integer are refused."""
    model, x = _vae(device)
    before = _snapshot(model)
    rng_state = model.rng.bit_generator.state if device == "cpu" else None
    cases = [
        (dict(eps=xp.zeros((4, 3), dtype=np.float32)), ValueError, r"eps must have shape \(B, Z\) = \(4, 2\)"),
        (dict(eps=xp.zeros((2, 5, 2), dtype=np.float32)), ValueError, r"eps must have shape"),
        (dict(eps=xp.zeros((0, 4, 2), dtype=np.float32)), ValueError, r"eps must have shape .* with S >= 1"),
        (dict(eps=xp.zeros((4, 2))), TypeError, r"eps must have dtype float32"),
        (dict(eps=xp.full((4, 2), np.nan, dtype=np.float32)), ValueError, r"eps contains NaN"),
        (dict(n_samples=0), ValueError, r"n_samples must be a positive integer"),
        (dict(n_samples=-2), ValueError, r"n_samples must be a positive integer"),
        (dict(n_samples=1.5), TypeError, r"n_samples must be a positive integer"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            model.loss_and_grads(x, **kwargs)
        _assert_unchanged(model, before)
    if rng_state is not None:
        assert model.rng.bit_generator.state == rng_state      # no noise drawn for a refused call


@pytest.mark.parametrize("method", ["elbo", "loss", "loss_and_grads"])
def test_vae_empty_batch_is_refused(xp, device, method):
    """A batch of no images has no mean ELBO (0 / 0): refused by name before any noise is
    drawn, instead of a NaN loss or a ZeroDivisionError."""
    model, _ = _vae(device)
    before = _snapshot(model)
    rng_state = model.rng.bit_generator.state if device == "cpu" else None
    for kwargs in (dict(), dict(n_samples=3), dict(eps=xp.zeros((0, 2), dtype=np.float32))):
        with pytest.raises(ValueError, match=r"x must hold at least one image .* got shape \(0, 6\)"):
            getattr(model, method)(xp.zeros((0, 6), dtype=np.float32), **kwargs)
        _assert_unchanged(model, before)
    if rng_state is not None:
        assert model.rng.bit_generator.state == rng_state


@pytest.mark.parametrize("make", [
    lambda seed: sv.VAE(6, z_dim=2, hidden_dims=(5,), seed=seed),
    lambda seed: sv.make_rng(seed),
    lambda seed: sv.evaluate_elbo(sv.VAE(6, 2, (5,)), np.full((2, 6), 0.5, np.float32), seed=seed),
    lambda seed: sv.importance_sampled_bound(sv.VAE(6, 2, (5,)), np.full((2, 6), 0.5, np.float32), k=2,
                                             seed=seed),
    lambda seed: Autoencoder(6, 2, seed=seed),
    lambda seed: fit(Autoencoder(6, 2), np.zeros((4, 6), np.float32), seed=seed),
    lambda seed: DeepLVM.random(seed=seed),
    lambda seed: LinearGaussian.random(seed=seed),
    lambda seed: fit_em(np.random.default_rng(0).standard_normal((10, 2)), 2, seed=seed),
    lambda seed: sv.Trainer(sv.VAE(6, 2, (5,)), sv.Adam(sv.VAE(6, 2, (5,)).named_parameters()),
                            np.full((4, 6), 0.5, np.float32), np.full((2, 6), 0.5, np.float32), seed=seed),
])
def test_negative_seed_is_named(make):
    """A seed must be a non-negative integer (or None); the message names ``seed``."""
    with pytest.raises(ValueError, match="seed must be a non-negative integer or None, got -1"):
        make(-1)
    with pytest.raises(TypeError, match="seed must be a non-negative integer or None, got 1.5"):
        make(1.5)


def test_vae_decode_and_sample_bad_input(xp, device):
    """decode needs z of shape (B, Z) and the model's dtype; sample needs a positive integer n."""
    model, _ = _vae(device)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"z must have shape \(any, 2\)"):
        model.decode(xp.zeros((3, 4), dtype=np.float32))
    with pytest.raises(TypeError, match=r"z must have dtype float32"):
        model.decode(xp.zeros((3, 2)))
    with pytest.raises(ValueError, match="z contains NaN"):
        model.decode(xp.full((3, 2), np.inf, dtype=np.float32))
    for n, error in ((0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n must be a positive integer"):
            model.sample(n)
    _assert_unchanged(model, before)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(x_dim=0), ValueError, "x_dim must be a positive integer"),
    (dict(x_dim=6.0), TypeError, "x_dim must be a positive integer"),
    (dict(z_dim=-1), ValueError, "z_dim must be a positive integer"),
    (dict(hidden_dims=(5, 0)), ValueError, r"hidden_dims\[1\] must be a positive integer"),
    (dict(hidden_dims=(2.5,)), TypeError, r"hidden_dims\[0\] must be a positive integer"),
    (dict(likelihood="poisson"), ValueError, "likelihood must be one of"),
    (dict(activation="swish"), ValueError, "activation must be one of"),
    (dict(init="xavier"), ValueError, "init must be one of"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(weight_decay=float("nan")), ValueError, "weight_decay must be finite"),
    (dict(weight_decay="0.1"), TypeError, "weight_decay must be a real number"),
    (dict(dtype="int32"), TypeError, "dtype must be float32 or float64"),
    (dict(dtype="half-precision"), TypeError, "dtype must be float32 or float64"),
    (dict(device="tpu"), ValueError, "device must be one of"),
])
def test_vae_constructor_bad_arguments(kwargs, error, message):
    """Non-positive sizes, unknown names and bad numbers are refused with the argument's name."""
    args = dict(x_dim=6, z_dim=2, hidden_dims=(5,))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        sv.VAE(**args)


# -- layers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, message", [
    (lambda: Linear(0, 3), ValueError, "in_dim must be a positive integer"),
    (lambda: Linear(3, -2), ValueError, "out_dim must be a positive integer"),
    (lambda: Linear(3, 2.0), TypeError, "out_dim must be a positive integer"),
    (lambda: Linear(3, 2, init="normal"), ValueError, "init must be one of"),
    (lambda: Linear(3, 2, dtype="int8"), TypeError, "dtype must be float32 or float64"),
    (lambda: MLP([4]), ValueError, "sizes must list at least an input and an output size"),
    (lambda: MLP([4, 0, 2]), ValueError, r"sizes\[1\] must be a positive integer"),
    (lambda: MLP([4, 2], activation="gelu"), ValueError, "activation must be one of"),
    (lambda: MLP([4, 2], out_activation="softmax"), ValueError, "out_activation must be one of"),
])
def test_layer_constructor_bad_arguments(make, error, message):
    """Layer sizes must be positive integers and names known."""
    with pytest.raises(error, match=message):
        make()


# -- optimizers --------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, message", [
    (lambda ps: SGD(ps, lr=0), ValueError, "lr must be a positive number"),
    (lambda ps: SGD(ps, lr=-1e-3), ValueError, "lr must be a positive number"),
    (lambda ps: Adam(ps, lr=float("inf")), ValueError, "lr must be finite"),
    (lambda ps: Adagrad(ps, lr="0.1"), TypeError, "lr must be a real number"),
    (lambda ps: SGD(ps, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda ps: SGD(ps, momentum=-0.5), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda ps: SGD(ps, momentum="high"), TypeError, "momentum must be a real number"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError, r"betas must lie in \[0, 1\)"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), ValueError, r"betas must lie in \[0, 1\)"),
    (lambda ps: Adam([]), ValueError, "named_parameters is empty"),
    (lambda ps: SGD(ps, lr=float("nan")), ValueError, "lr must be finite"),
    (lambda ps: Adagrad(ps, eps=-1.0), ValueError, "eps must be a positive number"),
    (lambda ps: Adagrad(ps, eps=0.0), ValueError, "eps must be a positive number"),
    (lambda ps: Adagrad(ps, eps=float("nan")), ValueError, "eps must be finite"),
    (lambda ps: Adagrad(ps, eps=float("inf")), ValueError, "eps must be finite"),
    (lambda ps: Adagrad(ps, eps="1e-8"), TypeError, "eps must be a real number"),
    (lambda ps: Adam(ps, eps=-1e-8), ValueError, "eps must be a positive number"),
    (lambda ps: Adam(ps, eps=0), ValueError, "eps must be a positive number"),
    (lambda ps: Adam(ps, eps=float("nan")), ValueError, "eps must be finite"),
    (lambda ps: Adam(ps, eps=float("-inf")), ValueError, "eps must be finite"),
    (lambda ps: Adam(ps, eps=None), TypeError, "eps must be a real number"),
    (lambda ps: Adam(ps, betas=("0.9", 0.999)), TypeError, r"betas\[0\] must be a real number"),
    (lambda ps: Adam(ps, betas=(0.9, float("nan"))), ValueError, r"betas\[1\] must be finite"),
])
def test_optimizer_bad_arguments(make, error, message):
    """Every hyper-parameter (lr, momentum, betas, eps) out of range, non-finite or of the wrong
    type is refused by name; eps must be > 0 because it divides. The parameters are untouched."""
    mlp = MLP([3, 2], rng=np.random.default_rng(0))
    before = _snapshot(mlp)
    with pytest.raises(error, match=message):
        make(mlp.named_parameters())
    _assert_unchanged(mlp, before)


# -- the notes' other models ---------------------------------------------------------------------
def _mixture_args():
    return (np.array([0.4, 0.6]), np.array([[0.0, 0.0], [3.0, 1.0]]), np.array([np.eye(2), 2 * np.eye(2)]))


@pytest.mark.parametrize("change, error, message", [
    (lambda pi, mu, cov: (np.array([0.5, 0.6]), mu, cov), ValueError, "pi must be positive and sum to 1"),
    (lambda pi, mu, cov: (np.array([1.2, -0.2]), mu, cov), ValueError, "pi must be positive"),
    (lambda pi, mu, cov: (pi, mu[:, :1], cov), ValueError, r"cov must have shape \(K, D, D\)"),
    (lambda pi, mu, cov: (pi, mu[:1], cov), ValueError, r"mu must have shape \(2, any\)"),
    (lambda pi, mu, cov: (pi, mu, np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])), ValueError,
     r"cov\[1\] must be positive definite"),
    (lambda pi, mu, cov: (pi, mu, np.array([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]])), ValueError,
     r"cov\[1\] must be symmetric"),
    (lambda pi, mu, cov: (pi, mu, np.array([[1.0, 1.0], [0.0, 2.0]])), ValueError, "must be positive"),
    (lambda pi, mu, cov: (pi, np.array([[0.0, np.nan], [1.0, 1.0]]), cov), ValueError, "mu contains NaN"),
    (lambda pi, mu, cov: (pi.astype(int), mu, cov), TypeError, "pi must have a float dtype"),
])
def test_mixture_bad_parameters(change, error, message):
    """Mixing proportions must be a distribution, covariances symmetric positive definite, shapes consistent."""
    with pytest.raises(error, match=message):
        GaussianMixture(*change(*_mixture_args()))


def test_mixture_bad_data_and_q():
    """x must be (N, D) floats without NaN; q must be an (N, K) distribution per row."""
    model = GaussianMixture(*_mixture_args())
    with pytest.raises(ValueError, match=r"x must have shape \(any, 2\)"):
        model.log_prob(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="x contains NaN"):
        model.log_prob(np.array([[0.0, np.nan]]))
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="q must be a distribution"):
        model.lower_bound(x, np.full((3, 2), 0.7))
    with pytest.raises(ValueError, match="q must be a distribution"):
        model.kl_to_posterior(x, np.array([[1.5, -0.5]] * 3))
    with pytest.raises(ValueError, match=r"q must have shape \(3, 2\)"):
        model.lower_bound(x, np.full((3, 3), 1 / 3))
    for n in (0, 2.5):
        with pytest.raises((ValueError, TypeError), match="n must be a positive integer"):
            model.sample(n, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(covariance="spherical"), ValueError, "covariance must be one of"),
    (dict(n_components=0), ValueError, "n_components must be a positive integer"),
    (dict(n_components=50), ValueError, "n_components must be at most the number of points"),
    (dict(n_iter=0), ValueError, "n_iter must be a positive integer"),
    (dict(reg_covar=-1.0), ValueError, "reg_covar must be a finite number >= 0"),
])
def test_fit_em_bad_arguments(kwargs, error, message):
    """EM's options are checked before any iteration."""
    x = np.random.default_rng(0).standard_normal((20, 2))
    args = dict(n_components=2)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        fit_em(x, **args)
    with pytest.raises(ValueError, match="x must be 2-D"):
        fit_em(x[:, 0], 2)


def test_deep_lvm_bad_input_leaves_parameters_unchanged(xp, device):
    """Wrong shapes, dtypes and NaN for x and z are refused by name; parameters and gradients unchanged."""
    model = DeepLVM.random(x_dim=3, z_dim=2, device=device)
    x, z = xp.zeros((4, 3)), xp.zeros((4, 2))
    model.log_prob(x, z)
    model.backward()
    before = _snapshot(model)
    cases = [
        ((xp.zeros((4, 2)), z), ValueError, r"x must have shape \(4, 3\)"),
        ((xp.zeros((5, 3)), z), ValueError, r"x must have shape \(4, 3\)"),
        ((x, xp.zeros((4, 3))), ValueError, r"z must have shape \(any, 2\)"),
        ((x, xp.zeros((4, 2), dtype=np.int32)), TypeError, "z must have a float dtype"),
        ((xp.full((4, 3), np.nan), z), ValueError, "x contains NaN"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            model.log_prob(*args)
        _assert_unchanged(model, before)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        model.log_marginal(x, n_samples=0)
    _assert_unchanged(model, before)


def test_deep_lvm_bad_parameters():
    """A, B, c, d must agree in shape and dtype."""
    A = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"B must have shape \(3, 2\)"):
        DeepLVM(A, np.zeros((2, 3)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"d must have shape \(3\)"):
        DeepLVM(A, A.copy(), np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="c must have dtype float64"):
        DeepLVM(A, A.copy(), np.zeros(3, dtype=np.float32), np.zeros(3))
    with pytest.raises(ValueError, match="x_dim must be a positive integer"):
        DeepLVM.random(x_dim=0)


def test_linear_gaussian_bad_input():
    """The noise s must be a positive number; x, mu, logvar must match the model's sizes."""
    W, b = np.ones((3, 2)), np.zeros(3)
    for s, error, message in ((0.0, ValueError, "s .*must be a positive number"),
                              (-1.0, ValueError, "s .*must be a positive number"),
                              (float("nan"), ValueError, "s must be finite"),
                              ("1", TypeError, "s must be a real number")):
        with pytest.raises(error, match=message):
            LinearGaussian(W, b, s)
    with pytest.raises(ValueError, match=r"b must have shape \(3\)"):
        LinearGaussian(W, np.zeros(2), 1.0)
    model = LinearGaussian(W, b, 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(any, 3\)"):
        model.log_marginal(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"logvar must have shape \(2, 2\)"):
        model.elbo(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"mu contains NaN"):
        model.elbo(np.zeros((2, 3)), np.full((2, 2), np.nan), np.zeros((2, 2)))


def test_autoencoder_bad_input_leaves_parameters_unchanged(xp, device):
    """Wrong widths, unknown optimizers and non-positive epochs or batch sizes are refused before training."""
    model = Autoencoder(5, 2, hidden_dims=(4,), device=device)
    x = xp.zeros((6, 5), dtype=np.float32)
    before = _snapshot(model)
    cases = [
        (lambda: model.loss(xp.zeros((6, 4), dtype=np.float32)), ValueError, r"x must have shape \(any, 5\)"),
        (lambda: model.decode(xp.zeros((6, 3), dtype=np.float32)), ValueError,
         r"h must have shape \(any, 2\)"),
        (lambda: fit(model, x, optimizer="rmsprop"), ValueError, "optimizer must be one of"),
        (lambda: fit(model, x, epochs=0), ValueError, "epochs must be a positive integer"),
        (lambda: fit(model, x, batch_size=0), ValueError, "batch_size must be a positive integer"),
        (lambda: fit(model, x, lr=-1.0), ValueError, "lr must be a positive number"),
        (lambda: fit(model, xp.full((6, 5), np.nan, dtype=np.float32)), ValueError, "x contains NaN"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
        _assert_unchanged(model, before)
    with pytest.raises(ValueError, match="code_dim must be a positive integer"):
        Autoencoder(5, 0)


def test_pca_and_angles_bad_input():
    """k must be a positive integer no larger than min(N, D); bases must share their row count."""
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"k must be at most min\(N, D\) = 3"):
        pca(x, 4)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        pca(x, 0)
    with pytest.raises(ValueError, match=r"V must have shape \(4, any\)"):
        principal_angles(np.ones((4, 2)), np.ones((5, 2)))


@pytest.mark.parametrize("hidden_dims", [None, "400", 4.0])
def test_hidden_dims_that_are_not_sizes_are_named(hidden_dims):
    with pytest.raises(TypeError, match="hidden_dims must be a positive integer or a tuple"):
        sv.VAE(4, 2, hidden_dims=hidden_dims)
    with pytest.raises(TypeError, match="hidden_dims must be a positive integer or a tuple"):
        Autoencoder(4, 2, hidden_dims=hidden_dims)


@pytest.mark.parametrize("betas", [0.9, (0.9,), (0.9, 0.99, 0.5)])
def test_adam_betas_must_be_a_pair(betas):
    model = sv.VAE(4, 2, (3,))
    with pytest.raises(TypeError, match=r"betas must be a pair \(b1, b2\)"):
        sv.Adam(model.named_parameters(), betas=betas)
