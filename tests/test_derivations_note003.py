"""Note 003's derivations (the ELBO's terms: KL, the Gaussian and Bernoulli decoders, the
pathwise gradient), one test per check of ``scratchvae.derivations.note003``, and the classic
bugs each check must catch."""
import numpy as np

from scratchvae.derivations import note003
from scratchvae.distributions import bernoulli_log_likelihood_grad, gaussian_log_density_grad


def test_expected_log_likelihood_gradient(xp):
    """Gradient of the closed-form E_q[log p(x|z)] of the linear-Gaussian model w.r.t. mu, logvar, W, b."""
    check = note003.expected_log_likelihood_gradient(xp)
    assert check.passed, check


def test_pathwise_gradient(xp):
    """d/dtheta E_q[log p(x|z)] = E_eps[d/dtheta log p(x | mu + sigma eps)]."""
    check = note003.pathwise_gradient(xp)
    assert check.passed, check


def test_kl_closed_form(xp):
    """KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - log sigma^2) / 2, vs numerical integration."""
    check = note003.kl_closed_form(xp)
    assert check.passed, check


def test_kl_monte_carlo(xp):
    """Closed-form KL(q || N(0, I)) equals the Monte Carlo mean of log q(z) - log p(z), z ~ q."""
    check = note003.kl_monte_carlo(xp)
    assert check.passed, check


def test_kl_gradient(xp):
    """dKL/dmu = mu, dKL/dlogvar = (exp(logvar) - 1) / 2."""
    check = note003.kl_gradient(xp)
    assert check.passed, check


def test_gaussian_nll(xp):
    """-log N(x; mu, sigma^2) = sum_j log(2 pi sigma_j^2) / 2 + (x_j - mu_j)^2 / (2 sigma_j^2), vs scipy.stats."""
    check = note003.gaussian_nll(xp)
    assert check.passed, check


def test_gaussian_nll_gradient(xp):
    """d log N / dmu = (x - mu) / sigma^2, d/dlogvar = ((x - mu)^2 / sigma^2 - 1) / 2, d/dx = -(x - mu) / sigma^2."""
    check = note003.gaussian_nll_gradient(xp)
    assert check.passed, check


def test_least_squares(xp):
    """Constant variance: -log N(x; mu, sigma^2 I) = |x - mu|^2 / (2 sigma^2) + D log(2 pi sigma^2) / 2."""
    check = note003.least_squares(xp)
    assert check.passed, check


def test_bernoulli_nll(xp):
    """-log Bern(x; sigmoid(l)) = softplus(l) - x l, vs scipy.stats and exact at float32 logits +-1e4."""
    check = note003.bernoulli_nll(xp)
    assert check.passed, check


def test_bernoulli_nll_gradient(xp):
    """d(-log Bern(x; sigmoid(l)))/dl = sigmoid(l) - x, exact at float32 logits +-1e4."""
    check = note003.bernoulli_nll_gradient(xp)
    assert check.passed, check


def test_kl_gradient_catches_wrong_factor():
    """dKL/dlogvar = exp(logvar) - 1 (without the 1/2) fails."""
    def buggy(mu, logvar):
        return mu, np.exp(logvar) - 1
    assert not note003.kl_gradient(grad=buggy).passed


def test_kl_closed_form_catches_std_for_variance():
    """KL written with sigma in place of sigma^2 fails against numerical integration."""
    def buggy(mu, logvar):
        return 0.5 * (mu * mu + np.exp(logvar / 2) - 1 - logvar).sum(axis=-1)
    assert not note003.kl_closed_form(kl=buggy).passed


def test_gaussian_nll_gradient_catches_wrong_dlogvar():
    """d/dlogvar = (x - mu)^2 / sigma^2 - 1 (without the 1/2) fails."""
    def buggy(x, mu, logvar):
        dmu, dlogvar, dx = gaussian_log_density_grad(x, mu, logvar)
        return dmu, 2 * dlogvar, dx
    assert not note003.gaussian_nll_gradient(grad=buggy).passed


def test_bernoulli_gradient_catches_sign_error():
    """x - sigmoid(l) used as the gradient of the *negative* log-likelihood fails."""
    def buggy(x, logits):
        return -bernoulli_log_likelihood_grad(x, logits)
    assert not note003.bernoulli_nll_gradient(grad=buggy).passed
