"""The deep latent-variable model of note 000: p(x|z) = N(sigmoid(Az+c), diag(exp(sigmoid(Bz+d))))."""
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from scratchvae.activations import sigmoid
from scratchvae.backend import as_numpy, make_rng
from scratchvae.derivations.checks import z_bound
from scratchvae.gradcheck import THRESHOLD, check_gradients
from scratchvae.models.deep_lvm import DeepLVM


def _model(xp, device, x_dim=3, z_dim=2, seed=4):
    return DeepLVM.random(x_dim=x_dim, z_dim=z_dim, scale=1.0, seed=seed, device=device)


def test_log_prob_is_a_diagonal_gaussian_with_the_notes_mean_and_covariance(xp, device):
    """log p(x|z) = log N(x; sigmoid(A z + c), diag(exp(sigmoid(B z + d)))), against scipy."""
    model = _model(xp, device)
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    A, B, c, d = (as_numpy(model.params[k]) for k in "ABcd")
    ours = as_numpy(model.log_prob(xp.asarray(x), xp.asarray(z)))
    for n in range(5):
        mean = 1 / (1 + np.exp(-(A @ z[n] + c)))
        cov = np.diag(np.exp(1 / (1 + np.exp(-(B @ z[n] + d)))))
        assert ours[n] == pytest.approx(scipy.stats.multivariate_normal(mean, cov).logpdf(x[n]), rel=1e-12)


def test_gradient_wrt_A_B_c_d_and_z_two_oracles(xp, device):
    """d/d(A, B, c, d, z) of sum_n g_n log p(x_n|z_n): our central differences, and
    scipy.optimize.approx_fprime on the flattened parameters as a second oracle."""
    model = _model(xp, device)
    rng = np.random.default_rng(1)
    x, z, g = (xp.asarray(rng.standard_normal(s)) for s in ((6, 3), (6, 2), (6,)))
    model.log_prob(x, z)
    dz = model.backward(g)
    grads = {**{k: v.copy() for k, v in model.grads.items()}, "z": dz}
    f = lambda: float((model.log_prob(x, z) * g).sum())  # noqa: E731
    reports = check_gradients(f, {**model.params, "z": z}, grads)
    assert [r.name for r in reports] == ["A", "B", "c", "d", "z"]
    assert max(r.worst for r in reports) < THRESHOLD

    names = ["A", "B", "c", "d"]
    sizes = [model.params[k].size for k in names]

    def f_flat(theta):
        for k, part in zip(names, np.split(theta, np.cumsum(sizes)[:-1])):
            model.params[k][...] = xp.asarray(part.reshape(model.params[k].shape))
        return f()

    theta0 = np.concatenate([as_numpy(model.params[k]).ravel() for k in names])
    approx = scipy.optimize.approx_fprime(theta0, f_flat, 1e-7)     # forward differences: O(delta) error
    f_flat(theta0)
    analytic = np.concatenate([as_numpy(grads[k]).ravel() for k in names])
    np.testing.assert_allclose(analytic, approx, rtol=1e-5, atol=1e-6)


def test_default_upstream_gradient_is_ones(xp, device):
    """backward() without weights differentiates sum_n log p(x_n|z_n), i.e. g = 1."""
    model = _model(xp, device)
    rng = np.random.default_rng(2)
    x, z = xp.asarray(rng.standard_normal((4, 3))), xp.asarray(rng.standard_normal((4, 2)))
    model.log_prob(x, z)
    dz1 = as_numpy(model.backward())
    dA1 = as_numpy(model.grads["A"]).copy()
    model.log_prob(x, z)
    dz2 = as_numpy(model.backward(xp.ones(4)))
    np.testing.assert_array_equal(dz1, dz2)
    np.testing.assert_array_equal(dA1, as_numpy(model.grads["A"]))


def test_backward_before_log_prob_raises():
    """backward() without a preceding log_prob() is a RuntimeError, not a silent wrong gradient."""
    with pytest.raises(RuntimeError, match="log_prob"):
        DeepLVM.random().backward()


def test_log_joint_adds_the_standard_normal_prior(xp, device):
    """log p(x, z) = log p(x|z) + log N(z; 0, I)."""
    model = _model(xp, device)
    rng = np.random.default_rng(3)
    x, z = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    diff = as_numpy(model.log_joint(xp.asarray(x), xp.asarray(z)) - model.log_prob(xp.asarray(x), xp.asarray(z)))
    np.testing.assert_allclose(diff, scipy.stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z), rtol=1e-12)


def test_ancestral_samples_given_z_have_the_conditional_moments(xp, device):
    """Given z, x = mu(z) + exp(logvar(z)/2) eps: the standardized residuals (x - mu(z)) / sigma(z)
    have mean 0 and variance 1 within the Bonferroni bound of standard errors."""
    model = _model(xp, device)
    x, z = model.sample(20000, make_rng(4, device))
    mu, logvar = model.likelihood_params(z)
    r = as_numpy((x - mu) / xp.exp(logvar / 2))
    n = r.shape[0]
    z_mean = np.abs(r.mean(axis=0)) / (r.std(axis=0, ddof=1) / np.sqrt(n))
    w = (r - r.mean(axis=0)) ** 2
    z_var = np.abs(w.mean(axis=0) - 1) / (w.std(axis=0, ddof=1) / np.sqrt(n))
    zs = np.concatenate([z_mean, z_var])
    assert zs.max() < z_bound(zs.size)
    assert as_numpy(z).std() == pytest.approx(1.0, abs=5 * np.sqrt(2 / z.size))


def test_log_marginal_is_the_log_mean_exp_of_the_pairwise_likelihoods(xp, device):
    """log p_hat(x) = log (1/S) sum_s p(x|z_s), computed stably, chunk by chunk."""
    model = _model(xp, device)
    rng = np.random.default_rng(5)
    x, z = xp.asarray(rng.standard_normal((7, 3))), xp.asarray(rng.standard_normal((50, 2)))
    pair = as_numpy(model.pairwise_log_prob(x, z))
    assert pair.shape == (7, 50)
    np.testing.assert_allclose(pair[2, 10], as_numpy(model.log_prob(x[2:3], z[10:11]))[0], rtol=1e-13)
    expected = np.log(np.exp(pair).mean(axis=1))
    np.testing.assert_allclose(as_numpy(model.log_marginal(x, z=z, chunk=3)), expected, rtol=1e-13)


def test_grid_density_integrates_to_one(xp, device):
    """Sum over a fine 2-D grid of p_hat(x) dx ~ 1: with the same z_s for every grid point,
    the estimate is an average of S normalized Gaussians, so only the grid's truncation and
    the Riemann sum's error remain. Every mean lies in (0, 1) and every standard deviation in
    (1, sqrt(e)), so the grid [-8.5, 9.5]^2 reaches over 5.1 standard deviations from every
    mean (tail mass below 3e-7), and a spacing of 0.2 leaves a Riemann error
    of order exp(-2 pi^2 / 0.2^2), nothing."""
    model = DeepLVM.random(x_dim=2, z_dim=1, scale=1.5, seed=2, device=device)
    x1 = xp.linspace(-8.5, 9.5, 91)
    grid = as_numpy(model.grid_log_marginal(x1, x1, n_samples=300, rng=np.random.default_rng(6)))
    assert grid.shape == (91, 91)
    total = np.exp(grid).sum() * 0.2 ** 2
    assert total == pytest.approx(1.0, abs=1e-6)


def test_grid_rows_follow_the_second_coordinate(xp, device):
    """grid_log_marginal(x1, x2)[i, j] is log p_hat at the point (x1[j], x2[i])."""
    model = DeepLVM.random(x_dim=2, z_dim=1, seed=3, device=device)
    x1, x2 = xp.asarray([-1.0, 0.0, 2.0]), xp.asarray([0.5, 1.5])
    z = np.random.default_rng(7).standard_normal((40, 1))
    grid = as_numpy(model.grid_log_marginal(x1, x2, n_samples=40, rng=np.random.default_rng(7)))
    point = as_numpy(model.log_marginal(xp.asarray([[2.0, 0.5]]), z=xp.asarray(z)))[0]
    assert grid.shape == (2, 3) and grid[0, 2] == pytest.approx(point, rel=1e-13)


def test_grid_needs_two_dimensions():
    """A heat map of p(x) needs x_dim = 2."""
    with pytest.raises(ValueError, match="x_dim = 2"):
        DeepLVM.random(x_dim=3).grid_log_marginal(np.zeros(2), np.zeros(2))


def test_mean_stays_in_unit_interval_and_variance_in_1_to_e(xp, device):
    """mu(z) = sigmoid(.) lies in (0, 1); exp(sigmoid(.)) lies in (1, e): the notes' choice."""
    model = _model(xp, device)
    z = xp.asarray(np.random.default_rng(8).normal(0, 10, (100, 2)))
    mu, logvar = (as_numpy(a) for a in model.likelihood_params(z))
    assert (mu >= 0).all() and (mu <= 1).all() and (logvar >= 0).all() and (logvar <= 1).all()
    np.testing.assert_allclose(mu, as_numpy(sigmoid(z @ model.params["A"].T + model.params["c"])), rtol=1e-14)
