"""Log-densities, KL and reparameterization: scipy.stats as a second oracle for values,
central differences and scipy.optimize.approx_fprime for gradients."""
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats

from scratchvae import distributions as D
from scratchvae.backend import as_numpy
from scratchvae.gradcheck import THRESHOLD, check_gradients


def _arrays(xp, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [xp.asarray(rng.standard_normal(s)) for s in shapes]


def _approx_fprime(f, x):
    """scipy.optimize.approx_fprime (forward differences, step sqrt(machine eps)) of f at host x."""
    return scipy.optimize.approx_fprime(x.ravel(), lambda v: f(v.reshape(x.shape)), 1.5e-8).reshape(x.shape)


# -- diagonal Gaussian ---------------------------------------------------------------------
def test_gaussian_log_density_matches_scipy(xp):
    """log N(x; mu, diag(exp(logvar))) = sum_d norm.logpdf(x_d, mu_d, exp(logvar_d / 2)), in nats."""
    x, mu, logvar = _arrays(xp, (6, 4), (6, 4), (6, 4))
    ref = scipy.stats.norm.logpdf(as_numpy(x), as_numpy(mu), np.exp(as_numpy(logvar) / 2)).sum(axis=1)
    np.testing.assert_allclose(as_numpy(D.gaussian_log_density(x, mu, logvar)), ref, rtol=1e-13)
    mvn = scipy.stats.multivariate_normal(as_numpy(mu)[0], np.diag(np.exp(as_numpy(logvar)[0])))
    first = float(D.gaussian_log_density(x, mu, logvar)[0])
    assert first == pytest.approx(mvn.logpdf(as_numpy(x)[0]), rel=1e-13)


def test_gaussian_log_density_broadcasts_over_sample_axes(xp):
    """A leading sample axis on x broadcasts against (B, D) parameters: one value per (L, B)."""
    x, mu, logvar = _arrays(xp, (3, 5, 2), (5, 2), (5, 2))
    out = D.gaussian_log_density(x, mu, logvar)
    assert out.shape == (3, 5)
    np.testing.assert_allclose(as_numpy(out[1]), as_numpy(D.gaussian_log_density(x[1], mu, logvar)), rtol=1e-15)


def test_standard_normal_log_density(xp):
    """log N(z; 0, I) = -1/2 sum_j (log 2 pi + z_j^2) equals the general density at mu = 0, logvar = 0."""
    (z,) = _arrays(xp, (5, 3))
    np.testing.assert_allclose(as_numpy(D.standard_normal_log_density(z)),
                               scipy.stats.norm.logpdf(as_numpy(z)).sum(axis=1), rtol=1e-14)


def test_gaussian_log_density_gradient_two_oracles(xp):
    """dmu = (x - mu)/sigma^2, dlogvar = ((x - mu)^2/sigma^2 - 1)/2, dx = -dmu, against central
    differences and scipy.optimize.approx_fprime."""
    x, mu, logvar = _arrays(xp, (3, 4), (3, 4), (3, 4), seed=1)
    dmu, dlogvar, dx = D.gaussian_log_density_grad(x, mu, logvar)
    reports = check_gradients(lambda: float(D.gaussian_log_density(x, mu, logvar).sum()),
                              {"x": x, "mu": mu, "logvar": logvar}, {"x": dx, "mu": dmu, "logvar": dlogvar})
    assert max(r.worst for r in reports) < THRESHOLD
    xh, muh, lvh = (as_numpy(a) for a in (x, mu, logvar))
    f = lambda lv: D.gaussian_log_density(xh, muh, lv).sum()  # noqa: E731
    np.testing.assert_allclose(as_numpy(dlogvar), _approx_fprime(f, lvh), rtol=1e-5, atol=1e-6)
    f = lambda m: D.gaussian_log_density(xh, m, lvh).sum()  # noqa: E731
    np.testing.assert_allclose(as_numpy(dmu), _approx_fprime(f, muh), rtol=1e-5, atol=1e-6)


# -- Bernoulli ---------------------------------------------------------------------------------
def test_bernoulli_log_likelihood_matches_scipy(xp):
    """sum_d [x_d l_d - softplus(l_d)] = sum_d bernoulli.logpmf(x_d, sigmoid(l_d)) for binary x."""
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 4, (5, 7))
    x = (rng.random((5, 7)) < 0.4).astype(float)
    ref = scipy.stats.bernoulli.logpmf(x, scipy.special.expit(logits)).sum(axis=1)
    ours = as_numpy(D.bernoulli_log_likelihood(xp.asarray(x), xp.asarray(logits)))
    np.testing.assert_allclose(ours, ref, rtol=1e-13)


def test_bernoulli_grey_values_are_the_cross_entropy(xp):
    """For x in [0, 1]: x log p + (1 - x) log(1 - p), the cross-entropy form."""
    rng = np.random.default_rng(3)
    logits, x = rng.normal(0, 2, (4, 6)), rng.random((4, 6))
    p = scipy.special.expit(logits)
    ref = (scipy.special.xlogy(x, p) + scipy.special.xlog1py(1 - x, -p)).sum(axis=1)
    ours = as_numpy(D.bernoulli_log_likelihood(xp.asarray(x), xp.asarray(logits)))
    np.testing.assert_allclose(ours, ref, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_extreme_logits_are_finite_and_exact(xp, dtype):
    """At logits +-1e4: log-likelihood 0 when the pixel agrees, -1e4 when it does not (exactly),
    gradient x - sigmoid(l) exactly 0 or +-1, all finite, dtype kept."""
    logits = xp.asarray(np.array([[1e4, -1e4, 1e4, -1e4]], dtype=dtype))
    x = xp.asarray(np.array([[1, 0, 0, 1]], dtype=dtype))
    per_pixel = [float(D.bernoulli_log_likelihood(x[:, i:i + 1], logits[:, i:i + 1])[0]) for i in range(4)]
    assert per_pixel == [0.0, 0.0, -1e4, -1e4]
    grad = D.bernoulli_log_likelihood_grad(x, logits)
    assert grad.dtype == dtype and as_numpy(grad).tolist() == [[0.0, 0.0, -1.0, 1.0]]
    assert D.bernoulli_log_likelihood(x, logits).dtype == dtype


def test_bernoulli_gradient_two_oracles(xp):
    """d/dl sum_d [x_d l_d - softplus(l_d)] = x - sigmoid(l): central differences and approx_fprime."""
    rng = np.random.default_rng(4)
    logits, x = xp.asarray(rng.normal(0, 2, (3, 5))), xp.asarray(rng.random((3, 5)))
    grad = D.bernoulli_log_likelihood_grad(x, logits)
    f = lambda: float(D.bernoulli_log_likelihood(x, logits).sum())  # noqa: E731
    (report,) = check_gradients(f, {"l": logits}, {"l": grad})
    assert report.worst < THRESHOLD
    xh = as_numpy(x)
    approx = _approx_fprime(lambda l: D.bernoulli_log_likelihood(xh, l).sum(), as_numpy(logits))
    np.testing.assert_allclose(as_numpy(grad), approx, rtol=1e-5, atol=1e-6)


# -- KL -----------------------------------------------------------------------------------------
def test_kl_matches_numerical_integration():
    """KL(N(mu, sigma^2) || N(0, 1)) = int q log(q/p), by scipy.integrate.quad, per dimension."""
    for mu, logvar in ((0.0, 0.0), (1.5, -2.0), (-0.7, 1.2)):
        q = scipy.stats.norm(mu, math.exp(logvar / 2))
        ref = scipy.integrate.quad(lambda t: q.pdf(t) * (q.logpdf(t) - scipy.stats.norm.logpdf(t)),
                                   -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0]
        ours = float(D.kl_standard_normal(np.array([[mu]]), np.array([[logvar]]))[0])
        assert ours == pytest.approx(ref, rel=1e-10, abs=1e-14)


def test_kl_is_zero_only_at_the_prior(xp):
    """KL = 0 exactly at mu = 0, logvar = 0, and positive elsewhere."""
    assert float(D.kl_standard_normal(xp.zeros((1, 3)), xp.zeros((1, 3)))[0]) == 0.0
    mu, logvar = _arrays(xp, (20, 3), (20, 3), seed=5)
    assert (as_numpy(D.kl_standard_normal(mu, logvar)) > 0).all()


def test_kl_gradient_two_oracles(xp):
    """dKL/dmu = mu, dKL/dlogvar = (exp(logvar) - 1)/2: central differences and approx_fprime."""
    mu, logvar = _arrays(xp, (4, 3), (4, 3), seed=6)
    dmu, dlogvar = D.kl_standard_normal_grad(mu, logvar)
    reports = check_gradients(lambda: float(D.kl_standard_normal(mu, logvar).sum()),
                              {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})
    assert max(r.worst for r in reports) < THRESHOLD
    muh = as_numpy(mu)
    approx = _approx_fprime(lambda lv: D.kl_standard_normal(muh, lv).sum(), as_numpy(logvar))
    np.testing.assert_allclose(as_numpy(dlogvar), approx, rtol=1e-5, atol=1e-6)
    assert dmu is not mu     # a copy: callers may write into it


# -- reparameterization -------------------------------------------------------------------------
def test_reparameterize_uses_the_standard_deviation(xp):
    """z = mu + exp(logvar / 2) eps, elementwise; a (L, B, Z) eps gives (L, B, Z) samples."""
    mu, logvar, eps = _arrays(xp, (4, 2), (4, 2), (3, 4, 2), seed=7)
    z = D.reparameterize(mu, logvar, eps)
    assert z.shape == (3, 4, 2)
    expected = as_numpy(mu) + np.sqrt(np.exp(as_numpy(logvar))) * as_numpy(eps)
    np.testing.assert_allclose(as_numpy(z), expected, rtol=1e-14)


def test_reparameterize_backward_sums_over_samples(xp):
    """With L samples, dmu = sum_l dz_l and dlogvar = sum_l dz_l eps_l exp(logvar/2)/2;
    without a sample axis the shapes are (B, Z) unchanged."""
    dz, logvar, eps = _arrays(xp, (3, 4, 2), (4, 2), (3, 4, 2), seed=8)
    dmu, dlogvar = D.reparameterize_backward(dz, logvar, eps)
    assert dmu.shape == (4, 2) and dlogvar.shape == (4, 2)
    np.testing.assert_allclose(as_numpy(dmu), as_numpy(dz).sum(axis=0), rtol=1e-14)
    expected = (as_numpy(dz) * as_numpy(eps)).sum(axis=0) * np.exp(as_numpy(logvar) / 2) / 2
    np.testing.assert_allclose(as_numpy(dlogvar), expected, rtol=1e-13)
    dmu1, dlogvar1 = D.reparameterize_backward(dz[0], logvar, eps[0])
    expected1 = as_numpy(dz[0] * eps[0]) * np.exp(as_numpy(logvar) / 2) / 2
    np.testing.assert_allclose(as_numpy(dlogvar1), expected1, rtol=1e-13)
    assert dmu1.shape == (4, 2)


# -- log-space reductions -----------------------------------------------------------------------
def test_logsumexp_matches_scipy_including_extremes(xp):
    """log sum exp against scipy.special.logsumexp, with huge, tiny and -inf entries; an all -inf
    row gives -inf (no NaN)."""
    a = np.array([[1000.0, 1000.0, -5.0], [-1000.0, -1001.0, -1002.0], [0.0, -np.inf, 2.0],
                  [-np.inf, -np.inf, -np.inf]])
    with np.errstate(divide="ignore"):   # log 0 = -inf is the right answer for the last row
        ours = as_numpy(D.logsumexp(xp.asarray(a), axis=1))
        ref = scipy.special.logsumexp(a, axis=1)
    np.testing.assert_allclose(ours[:3], ref[:3], rtol=1e-14)
    assert ours[3] == -np.inf
    np.testing.assert_allclose(as_numpy(D.logsumexp(xp.asarray(a[:3]), axis=0)),
                               scipy.special.logsumexp(a[:3], axis=0), rtol=1e-14)


def test_log_mean_exp(xp):
    """log (1/k) sum_i exp(a_i) = logsumexp(a) - log k, finite where exp(a) underflows."""
    a = np.array([[-2000.0, -2001.0, -2002.0, -2003.0]])
    expected = -2000.0 + np.log(np.exp(-np.arange(4.0)).mean())
    assert float(D.log_mean_exp(xp.asarray(a))[0]) == pytest.approx(expected, rel=1e-14)
