"""Note 001's derivations (ln p(X) = L(q) + KL(q || p(Z|X)), EM), one test per check of
``scratchvae.derivations.note001``, where the formula, the oracle and the threshold are written."""
from scratchvae.derivations import note001


def test_decomposition_discrete(xp):
    """ln p(X) = L(q) + KL(q || p(Z|X)) for any q; L <= ln p(X), with equality at the posterior."""
    check = note001.decomposition_discrete(xp)
    assert check.passed, check


def test_em_decomposition(xp):
    """EM: ln p = L + KL after each step, KL = 0 after each E-step, ln p never decreases."""
    check = note001.em_decomposition(xp)
    assert check.passed, check


def test_decomposition_linear_gaussian(xp):
    """ln p(x) = L(q) + KL(q || p(z|x)) with the exact Gaussian posterior; L <= ln p(x), equal at q = p(z|x)."""
    check = note001.decomposition_linear_gaussian(xp)
    assert check.passed, check


def test_elbo_kl_form(xp):
    """E_q[log p(x, z) - log q(z)] = E_q[log p(x|z)] - KL(q || p(z)), both in closed form."""
    check = note001.elbo_kl_form(xp)
    assert check.passed, check


def test_elbo_monte_carlo(xp):
    """The closed-form ELBO equals the Monte Carlo mean of log p(x, z) - log q(z), z ~ q."""
    check = note001.elbo_monte_carlo(xp)
    assert check.passed, check
