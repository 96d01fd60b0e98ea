"""The derivations of the lecture notes, one test each, in the order of the notes.

Each test runs the check of the same name in ``scratchvae.derivations`` (where the
formula, the oracle and the threshold are documented) and asserts that it passed;
the last tests plant the classic bugs and show that the checks catch them.
"""
import numpy as np
import pytest

from scratchvae import derivations as dv
from scratchvae import distributions as D
from scratchvae.backend import get_array_module


def _passes(check):
    assert check.passed, (f"{check.name}: {check.worst:.3e} >= {check.threshold:.3e} "
                          f"({check.measure}); {check.details}")
    return check


# -- note 000 ----------------------------------------------------------------------------
def test_joint_factorization(xp):
    """p(x, z) = p(x|z) p(z) and sum_z p(x, z) = int p(x|z) p(z) dz = p(x)."""
    _passes(dv.joint_factorization(xp))


def test_ancestral_sampling(xp):
    """z ~ p(z), x ~ p(x|z): label frequencies -> pi, sample mean and covariance -> the model's."""
    _passes(dv.ancestral_sampling(xp))


def test_mog_log_likelihood(xp):
    """log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)] equals scipy.stats, and
    stays finite where the plain sum of densities underflows."""
    check = _passes(dv.mog_log_likelihood(xp))
    assert "underflows to log 0 at 4 of" in check.details   # the far points really underflow


def test_deep_lvm_gradient(xp):
    """d log N(x; sigmoid(A z + c), diag(exp(sigmoid(B z + d)))) / d(A, B, c, d, z)."""
    _passes(dv.deep_lvm_gradient(xp))


def test_deep_lvm_marginal(xp):
    """p(x) = E_{z ~ N(0, I)} p(x|z), by log-mean-exp over samples vs quadrature."""
    _passes(dv.deep_lvm_marginal(xp))


# -- note 001 ----------------------------------------------------------------------------
def test_decomposition_discrete(xp):
    """ln p(X) = L(q) + KL(q || p(Z|X)) for any q; L <= ln p(X), with equality at the posterior."""
    _passes(dv.decomposition_discrete(xp))


def test_em_decomposition(xp):
    """EM: ln p = L + KL after each step, KL = 0 after each E-step, ln p never decreases."""
    _passes(dv.em_decomposition(xp))


def test_decomposition_linear_gaussian(xp):
    """ln p(x) = L(q) + KL(q || p(z|x)) with the exact Gaussian posterior; L <= ln p(x), equal at q = p(z|x)."""
    _passes(dv.decomposition_linear_gaussian(xp))


def test_elbo_kl_form(xp):
    """E_q[log p(x, z) - log q(z)] = E_q[log p(x|z)] - KL(q || p(z)), both in closed form."""
    _passes(dv.elbo_kl_form(xp))


def test_elbo_monte_carlo(xp):
    """The closed-form ELBO equals the Monte Carlo mean of log p(x, z) - log q(z), z ~ q."""
    _passes(dv.elbo_monte_carlo(xp))


# -- notes 002 and 003 ---------------------------------------------------------------------
def test_reparameterization_moments(xp):
    """z = mu + exp(logvar / 2) eps has mean mu and variance exp(logvar)."""
    _passes(dv.reparameterization_moments(xp))


def test_reparameterization_gradient(xp):
    """dmu = sum_l dz_l, dlogvar = sum_l dz_l eps_l exp(logvar / 2) / 2."""
    _passes(dv.reparameterization_gradient(xp))


def test_expected_log_likelihood_gradient(xp):
    """Gradient of the closed-form E_q[log p(x|z)] of the linear-Gaussian model w.r.t. mu, logvar, W, b."""
    _passes(dv.expected_log_likelihood_gradient(xp))


def test_pathwise_gradient(xp):
    """d/dtheta E_q[log p(x|z)] = E_eps[d/dtheta log p(x | mu + sigma eps)]."""
    _passes(dv.pathwise_gradient(xp))


def test_kl_closed_form(xp):
    """KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - log sigma^2) / 2, vs numerical integration."""
    _passes(dv.kl_closed_form(xp))


def test_kl_monte_carlo(xp):
    """Closed-form KL(q || N(0, I)) equals the Monte Carlo mean of log q(z) - log p(z), z ~ q."""
    _passes(dv.kl_monte_carlo(xp))


def test_kl_gradient(xp):
    """dKL/dmu = mu, dKL/dlogvar = (exp(logvar) - 1) / 2."""
    _passes(dv.kl_gradient(xp))


def test_gaussian_nll(xp):
    """-log N(x; mu, sigma^2) = sum_j log(2 pi sigma_j^2) / 2 + (x_j - mu_j)^2 / (2 sigma_j^2), vs scipy.stats."""
    _passes(dv.gaussian_nll(xp))


def test_gaussian_nll_gradient(xp):
    """d log N / dmu = (x - mu) / sigma^2, d/dlogvar = ((x - mu)^2 / sigma^2 - 1) / 2, d/dx = -(x - mu) / sigma^2."""
    _passes(dv.gaussian_nll_gradient(xp))


def test_least_squares(xp):
    """Constant variance: -log N(x; mu, sigma^2 I) = |x - mu|^2 / (2 sigma^2) + D log(2 pi sigma^2) / 2."""
    _passes(dv.least_squares(xp))


def test_bernoulli_nll(xp):
    """-log Bern(x; sigmoid(l)) = softplus(l) - x l, vs scipy.stats and exact at float32 logits +-1e4."""
    _passes(dv.bernoulli_nll(xp))


def test_bernoulli_nll_gradient(xp):
    """d(-log Bern(x; sigmoid(l)))/dl = sigmoid(l) - x, exact at float32 logits +-1e4."""
    _passes(dv.bernoulli_nll_gradient(xp))


# -- the implementation ------------------------------------------------------------------------
def test_layer_backward(xp):
    """Linear: dW = x^T dy, db = sum dy, dx = dy W^T; activations: da = dy f'(a); MLPs."""
    _passes(dv.layer_backward(xp))


def test_vae_gradient(xp):
    """d(-ELBO + lambda/2 |theta|^2)/dtheta for every tensor, both decoders, eps frozen."""
    check = _passes(dv.vae_gradient(xp))
    assert "bernoulli: 8 tensors" in check.details and "gaussian: 8 tensors" in check.details


def test_optimizers(xp):
    """SGD with momentum, Adagrad and Adam equal the textbook updates written out in plain Python."""
    _passes(dv.optimizers(xp))


# -- the catalogue ----------------------------------------------------------------------------
def test_run_all_in_notes_order():
    """run_all returns one passing Check per derivation, in the order of CHECKS, notes ascending."""
    checks = dv.run_all()
    assert [c.name for c in checks] == [f.__name__ for f in dv.CHECKS]
    assert len({c.name for c in checks}) == len(checks)
    notes = [c.note for c in checks if c.note != "-"]
    assert notes == sorted(notes)
    for c in checks:
        assert c.passed and c.formula and c.details and c.measure in (dv.REL, dv.ZSCORE)
    table = dv.format_table(checks)
    assert all(c.name in table for c in checks) and " NO" not in table


def test_z_bound_is_bonferroni():
    """z_bound(m) = Phi^{-1}(1 - alpha / (2 m)): 3.89 for one comparison at alpha = 1e-4, growing with m."""
    assert dv.z_bound(1) == pytest.approx(3.8906, abs=1e-4)
    assert dv.z_bound(10) == pytest.approx(4.4172, abs=1e-4)
    assert dv.z_bound(100) > dv.z_bound(10)
    assert dv.z_bound(10, dof=39) > dv.z_bound(10)          # a t quantile: heavier tails


def test_check_fails_on_nan():
    """A check whose error is NaN or infinite is reported as failed."""
    assert not dv.Check("x", "000", "f", float("nan"), 1.0, dv.REL, "").passed
    assert not dv.Check("x", "000", "f", float("inf"), 1.0, dv.REL, "").passed


# -- planted bugs: each check must be able to fail ----------------------------------------------
def test_reparameterization_moments_catches_variance_as_std():
    """z = mu + exp(logvar) eps (variance used as a standard deviation) fails the moment check."""
    def buggy(mu, logvar, eps):
        return mu + get_array_module(logvar).exp(logvar) * eps
    check = dv.reparameterization_moments(reparameterize=buggy)
    assert not check.passed and check.worst > 100


def test_reparameterization_gradient_catches_missing_half():
    """dlogvar = dz eps sigma (the 1/2 of d sigma / d logvar forgotten) fails the gradient check."""
    def buggy(dz, logvar, eps):
        dmu, dlogvar = D.reparameterize_backward(dz, logvar, eps)
        return dmu, 2 * dlogvar
    assert not dv.reparameterization_gradient(backward=buggy).passed


def test_kl_gradient_catches_wrong_factor():
    """dKL/dlogvar = exp(logvar) - 1 (without the 1/2) fails."""
    def buggy(mu, logvar):
        return mu, np.exp(logvar) - 1
    assert not dv.kl_gradient(grad=buggy).passed


def test_kl_closed_form_catches_std_for_variance():
    """KL written with sigma in place of sigma^2 fails against numerical integration."""
    def buggy(mu, logvar):
        return 0.5 * (mu * mu + np.exp(logvar / 2) - 1 - logvar).sum(axis=-1)
    assert not dv.kl_closed_form(kl=buggy).passed


def test_gaussian_nll_gradient_catches_wrong_dlogvar():
    """d/dlogvar = (x - mu)^2 / sigma^2 - 1 (without the 1/2) fails."""
    def buggy(x, mu, logvar):
        dmu, dlogvar, dx = D.gaussian_log_density_grad(x, mu, logvar)
        return dmu, 2 * dlogvar, dx
    assert not dv.gaussian_nll_gradient(grad=buggy).passed


def test_bernoulli_gradient_catches_sign_error():
    """x - sigmoid(l) used as the gradient of the *negative* log-likelihood fails."""
    def buggy(x, logits):
        return -D.bernoulli_log_likelihood_grad(x, logits)
    assert not dv.bernoulli_nll_gradient(grad=buggy).passed
