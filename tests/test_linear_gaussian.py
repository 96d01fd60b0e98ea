"""The linear-Gaussian latent model: exact marginal, exact posterior, closed-form ELBO."""
import math

import numpy as np
import scipy.stats

from scratchvae.backend import as_numpy, make_rng
from scratchvae.derivations.checks import example_linear_gaussian, z_bound
from scratchvae.gradcheck import THRESHOLD, check_gradients
from scratchvae.models.linear_gaussian import LinearGaussian


def _model(xp, orthogonal=False):
    return example_linear_gaussian(xp, orthogonal)


def _q(xp, n, seed):
    rng = np.random.default_rng(seed)
    return (xp.asarray(rng.normal(0, 2, (n, 4))), xp.asarray(rng.normal(0, 1, (n, 2))),
            xp.asarray(rng.normal(-1, 1, (n, 2))))


def test_marginal_matches_scipy(xp):
    """ln p(x) = log N(x; b, W W^T + s^2 I), against scipy.stats.multivariate_normal."""
    model = _model(xp)
    x, _, _ = _q(xp, 6, 0)
    W, b = as_numpy(model.W), as_numpy(model.b)
    ref = scipy.stats.multivariate_normal(b, W @ W.T + model.s ** 2 * np.eye(4)).logpdf(as_numpy(x))
    np.testing.assert_allclose(as_numpy(model.log_marginal(x)), ref, rtol=1e-12)


def test_posterior_is_bayes_rule(xp):
    """log N(z; m, Sigma) = log p(x|z) + log p(z) - log p(x) at arbitrary z (Bayes' rule, pointwise)."""
    model = _model(xp)
    x, _, _ = _q(xp, 5, 1)
    z = np.random.default_rng(1).standard_normal((5, 2))
    m, Sigma = (as_numpy(a) for a in model.posterior(x))
    ours = np.array([scipy.stats.multivariate_normal(m[n], Sigma).logpdf(z[n]) for n in range(5)])
    bayes = as_numpy(model.log_joint(x, xp.asarray(z)) - model.log_marginal(x))
    np.testing.assert_allclose(ours, bayes, rtol=1e-12)


def test_elbo_equals_log_marginal_minus_kl_to_posterior(xp):
    """L(q) = ln p(x) - KL(q || p(z|x)) row by row, for random diagonal q (note 001)."""
    model = _model(xp)
    x, mu, logvar = _q(xp, 8, 2)
    np.testing.assert_allclose(as_numpy(model.elbo(x, mu, logvar)),
                               as_numpy(model.log_marginal(x) - model.kl_to_posterior(x, mu, logvar)), rtol=1e-12)


def test_elbo_is_maximized_at_the_posterior(xp):
    """With W's columns orthogonal the posterior is diagonal: there L = ln p(x), and moving
    mu or logvar away from it only lowers L."""
    model = _model(xp, orthogonal=True)
    x, _, _ = _q(xp, 4, 3)
    m, Sigma = model.posterior(x)
    assert abs(float(Sigma[0, 1])) < 1e-15
    logvar = xp.broadcast_to(xp.log(xp.diag(Sigma)), m.shape)
    best = as_numpy(model.elbo(x, m, logvar))
    np.testing.assert_allclose(best, as_numpy(model.log_marginal(x)), rtol=1e-13)
    for dmu, dlv in ((0.1, 0.0), (0.0, 0.2), (-0.3, -0.3)):
        assert (as_numpy(model.elbo(x, m + dmu, logvar + dlv)) < best).all()


def test_kl_to_posterior_matches_monte_carlo(xp):
    """KL(N(mu, diag v) || N(m, Sigma)) equals E_q[log q - log p] by Monte Carlo within the
    Bonferroni bound (alpha = 1e-4) of the standard error."""
    model = _model(xp)
    x, mu, logvar = _q(xp, 3, 4)
    m, Sigma = (as_numpy(a) for a in model.posterior(x))
    mu_h, v = as_numpy(mu), np.exp(as_numpy(logvar))
    eps = np.random.default_rng(4).standard_normal((20000, 3, 2))
    z = mu_h + np.sqrt(v) * eps
    zs = []
    for n in range(3):
        ratio = (scipy.stats.multivariate_normal(mu_h[n], np.diag(v[n])).logpdf(z[:, n])
                 - scipy.stats.multivariate_normal(m[n], Sigma).logpdf(z[:, n]))
        se = ratio.std(ddof=1) / math.sqrt(len(ratio))
        zs.append(abs(ratio.mean() - float(as_numpy(model.kl_to_posterior(x, mu, logvar))[n])) / se)
    assert max(zs) < z_bound(3)


def test_expected_log_likelihood_is_the_average_over_q(xp):
    """E_q[log p(x|z)] in closed form equals the Monte Carlo mean of log p(x | mu + sigma eps)."""
    model = _model(xp)
    x, mu, logvar = _q(xp, 4, 5)
    eps = xp.asarray(np.random.default_rng(5).standard_normal((20000, 4, 2)))
    z = mu + xp.exp(logvar / 2) * eps
    samples = as_numpy(model.log_likelihood(xp.broadcast_to(x, (20000, 4, 4)).reshape(-1, 4),
                                            z.reshape(-1, 2))).reshape(20000, 4)
    zs = np.abs(samples.mean(axis=0) - as_numpy(model.expected_log_likelihood(x, mu, logvar)))
    zs /= samples.std(axis=0, ddof=1) / math.sqrt(20000)
    assert zs.max() < z_bound(4)


def test_log_likelihood_gradient(xp):
    """dz = W^T r, dW = sum r z^T, db = sum r with r = (x - W z - b) / s^2, against central differences."""
    model = _model(xp)
    rng = np.random.default_rng(6)
    x, z = xp.asarray(rng.standard_normal((5, 4))), xp.asarray(rng.standard_normal((5, 2)))
    dz, dW, db = model.log_likelihood_grad(x, z)
    reports = check_gradients(lambda: float(model.log_likelihood(x, z).sum()),
                              {"z": z, "W": model.W, "b": model.b}, {"z": dz, "W": dW, "b": db})
    assert max(r.worst for r in reports) < THRESHOLD


def test_ancestral_samples_have_the_marginal_covariance(xp, device):
    """x = W z + b + s eps with z ~ N(0, I) has mean b and covariance W W^T + s^2 I."""
    model = _model(xp)
    x, z = model.sample(20000, make_rng(7, device))
    x = as_numpy(x)
    b, C = (as_numpy(a) for a in model.marginal())
    n = x.shape[0]
    z_mean = np.abs(x.mean(axis=0) - b) / (x.std(axis=0, ddof=1) / math.sqrt(n))
    c = x - x.mean(axis=0)
    prod = (c[:, :, None] * c[:, None, :]).reshape(n, 16)
    z_cov = np.abs(prod.mean(axis=0) - C.ravel()) / (prod.std(axis=0, ddof=1) / math.sqrt(n))
    zs = np.concatenate([z_mean, z_cov])
    assert zs.max() < z_bound(zs.size)
    assert z.shape == (20000, 2)


def test_random_model_shapes():
    """LinearGaussian.random(x_dim, z_dim, s) has W (x_dim, z_dim), b (x_dim,), noise s."""
    model = LinearGaussian.random(x_dim=5, z_dim=3, s=0.2, seed=1)
    assert model.W.shape == (5, 3) and model.b.shape == (5,) and model.s == 0.2
    assert (model.x_dim, model.z_dim) == (5, 3)
    assert "x_dim=5" in repr(model)
