"""Note 002's derivations (the reparameterization trick), one test per check of
``scratchvae.derivations.note002``, and the classic bugs each check must catch."""
import numpy as np

from scratchvae.derivations import note002
from scratchvae.distributions import reparameterize_backward


def test_reparameterization_moments(xp):
    """z = mu + exp(logvar / 2) eps has mean mu and variance exp(logvar)."""
    check = note002.reparameterization_moments(xp)
    assert check.passed, check


def test_reparameterization_gradient(xp):
    """dmu = sum_s dz_s, dlogvar = sum_s dz_s eps_s exp(logvar / 2) / 2."""
    check = note002.reparameterization_gradient(xp)
    assert check.passed, check


def test_reparameterization_moments_catches_variance_as_std():
    """z = mu + exp(logvar) eps (variance used as a standard deviation) fails the moment check."""
    def buggy(mu, logvar, eps):
        return mu + np.exp(logvar) * eps
    check = note002.reparameterization_moments(reparameterize=buggy)
    assert not check.passed and check.worst > 100


def test_reparameterization_gradient_catches_missing_half():
    """dlogvar = dz eps sigma (the 1/2 of d sigma / d logvar forgotten) fails the gradient check."""
    def buggy(dz, logvar, eps):
        dmu, dlogvar = reparameterize_backward(dz, logvar, eps)
        return dmu, 2 * dlogvar
    assert not note002.reparameterization_gradient(backward=buggy).passed
