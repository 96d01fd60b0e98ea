"""Note 000's derivations (latent variable models), one test per check of
``scratchvae.derivations.note000``, where the formula, the oracle and the threshold are written."""
from scratchvae.derivations import note000


def test_joint_factorization(xp):
    """p(x, z) = p(x|z) p(z) and sum_z p(x, z) = int p(x|z) p(z) dz = p(x)."""
    check = note000.joint_factorization(xp)
    assert check.passed, check


def test_ancestral_sampling(xp):
    """z ~ p(z), x ~ p(x|z): label frequencies -> pi, sample mean and covariance -> the model's."""
    check = note000.ancestral_sampling(xp)
    assert check.passed, check


def test_mog_log_likelihood(xp):
    """log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)] equals scipy.stats, and
    stays finite where the plain sum of densities underflows."""
    check = note000.mog_log_likelihood(xp)
    assert check.passed, check
    assert "underflows to log 0 at 4 of" in check.details   # the far points really underflow


def test_deep_lvm_gradient(xp):
    """d log N(x; sigmoid(A z + c), diag(exp(sigmoid(B z + d)))) / d(A, B, c, d, z)."""
    check = note000.deep_lvm_gradient(xp)
    assert check.passed, check


def test_deep_lvm_marginal(xp):
    """p(x) = E_{z ~ N(0, I)} p(x|z), by log-mean-exp over samples vs quadrature."""
    check = note000.deep_lvm_marginal(xp)
    assert check.passed, check
