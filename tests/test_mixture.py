"""Mixture of Gaussians: densities, responsibilities, ancestral sampling and EM."""
import numpy as np
import pytest
import scipy.special
import scipy.stats

from scratchvae.backend import as_numpy, make_rng
from scratchvae.derivations.checks import example_mixture, z_bound
from scratchvae.models.mixture import GaussianMixture, e_step, fit_em, m_step, mvn_log_density


def _model(xp, covariance="full"):
    return example_mixture(xp, covariance)


def test_mvn_log_density_matches_scipy(xp):
    """log N(x; mu, Sigma) through the Cholesky factor equals scipy.stats.multivariate_normal.logpdf."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    cov, mu, x = A @ A.T + 0.3 * np.eye(4), rng.standard_normal(4), rng.standard_normal((7, 4))
    ours = as_numpy(mvn_log_density(xp.asarray(x), xp.asarray(mu), xp.asarray(cov)))
    np.testing.assert_allclose(ours, scipy.stats.multivariate_normal(mu, cov).logpdf(x), rtol=1e-12)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_log_prob_is_logsumexp_of_log_joint(xp, covariance):
    """log p(x) = logsumexp_k log p(x, z=k), with p(x, z=k) = pi_k N(x; mu_k, Sigma_k) from scipy."""
    model = _model(xp, covariance)
    x = np.random.default_rng(1).normal(0, 3, (40, 2))
    pi, mu, cov = (as_numpy(a) for a in (model.pi, model.mu, model.cov))
    covs = cov if covariance == "full" else [np.diag(c) for c in cov]
    log_joint = np.log(pi) + np.stack([scipy.stats.multivariate_normal(mu[k], covs[k]).logpdf(x)
                                       for k in range(3)], axis=1)
    np.testing.assert_allclose(as_numpy(model.log_joint(xp.asarray(x))), log_joint, rtol=1e-12)
    np.testing.assert_allclose(as_numpy(model.log_prob(xp.asarray(x))),
                               scipy.special.logsumexp(log_joint, axis=1), rtol=1e-12)


def test_responsibilities_are_bayes_rule(xp):
    """p(z=k|x) = pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j); rows sum to 1."""
    model = _model(xp)
    x = np.random.default_rng(2).normal(0, 2, (30, 2))
    r = as_numpy(model.responsibilities(xp.asarray(x)))
    joint = np.exp(as_numpy(model.log_joint(xp.asarray(x))))
    np.testing.assert_allclose(r, joint / joint.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_e_step_is_the_responsibilities_of_the_mixture(xp, covariance):
    """e_step(x, pi, mu, cov) is what GaussianMixture.responsibilities returns (bit for bit), for
    full and diagonal covariances: Bayes' rule, each row summing to 1."""
    model = _model(xp, covariance)
    x = xp.asarray(np.random.default_rng(9).normal(0, 2, (25, 2)))
    r = as_numpy(e_step(x, model.pi, model.mu, model.cov))
    np.testing.assert_array_equal(r, as_numpy(model.responsibilities(x)))
    joint = np.exp(as_numpy(model.log_joint(x)))
    np.testing.assert_allclose(r, joint / joint.sum(axis=1, keepdims=True), rtol=1e-12)


def test_far_point_keeps_a_finite_log_density_and_a_hard_assignment(xp):
    """Far from every component p(x) underflows, but log p(x) is finite and the responsibilities
    pick the component whose log-density is highest."""
    model = _model(xp)
    x = xp.asarray(np.array([[200.0, 0.0]]))
    assert np.isfinite(as_numpy(model.log_prob(x))).all()
    r = as_numpy(model.responsibilities(x))[0]
    assert np.isfinite(r).all() and r.sum() == pytest.approx(1.0)
    assert r.argmax() == as_numpy(model.log_joint(x))[0].argmax()


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_moments_match_the_law_of_total_covariance(xp, covariance):
    """E[x] = sum_k pi_k mu_k, Cov[x] = sum_k pi_k (Sigma_k + mu_k mu_k^T) - E[x] E[x]^T, against
    a 5x5-point Gauss-Hermite product rule per component (exact for quadratics)."""
    model = _model(xp, covariance)
    pi, mu, cov = (as_numpy(a) for a in (model.pi, model.mu, model.cov))
    covs = cov if covariance == "full" else [np.diag(c) for c in cov]
    t, w = np.polynomial.hermite_e.hermegauss(5)
    w = w / np.sqrt(2 * np.pi)
    grid = np.stack(np.meshgrid(t, t), -1).reshape(-1, 2)
    wg = np.outer(w, w).reshape(-1)
    m1, m2 = np.zeros(2), np.zeros((2, 2))
    for k in range(3):
        pts = mu[k] + grid @ np.linalg.cholesky(covs[k]).T
        m1 += pi[k] * wg @ pts
        m2 += pi[k] * (wg[:, None, None] * pts[:, :, None] * pts[:, None, :]).sum(axis=0)
    np.testing.assert_allclose(as_numpy(model.mean()), m1, rtol=1e-12)
    np.testing.assert_allclose(as_numpy(model.covariance_matrix()), m2 - np.outer(m1, m1), rtol=1e-11, atol=1e-12)


def test_sample_is_reproducible_and_labels_in_range(xp, device):
    """The same seed gives the same ancestral samples; labels lie in 0..K-1; shapes (n, D), (n,)."""
    model = _model(xp)
    x1, z1 = model.sample(100, make_rng(3, device))
    x2, z2 = model.sample(100, make_rng(3, device))
    assert x1.shape == (100, 2) and z1.shape == (100,)
    np.testing.assert_array_equal(as_numpy(x1), as_numpy(x2))
    assert set(as_numpy(z1).tolist()) <= {0, 1, 2}


def test_samples_of_each_component_have_its_moments(xp, device):
    """Given z = k, ancestral samples are N(mu_k, Sigma_k): per-component sample means within
    the Bonferroni bound of standard errors (alpha = 1e-4)."""
    model = _model(xp)
    x, z = (as_numpy(a) for a in model.sample(20000, make_rng(4, device)))
    mu = as_numpy(model.mu)
    zs = []
    for k in range(3):
        xk = x[z == k]
        zs.append(np.abs(xk.mean(axis=0) - mu[k]) / (xk.std(axis=0, ddof=1) / np.sqrt(len(xk))))
    zs = np.concatenate(zs)
    assert zs.max() < z_bound(zs.size)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_decomposition_at_every_step(xp, covariance, device):
    """ln p(X) = L(q, theta) + KL(q || p(Z|X, theta)) after every E- and M-step; KL = 0 after each
    E-step and > 0 after an M-step that moved theta; ln p(X) non-decreasing (reg_covar = 0)."""
    model = _model(xp, covariance)
    x, _ = model.sample(400, make_rng(5, device))
    _, history = fit_em(x, 3, covariance, n_iter=10, seed=0, reg_covar=0.0)
    assert [step.stage for step in history] == ["E", "M"] * 10
    for step in history:
        assert step.log_lik == pytest.approx(step.lower_bound + step.kl, rel=1e-12)
        if step.stage == "E":
            assert abs(step.kl) < 1e-10 * abs(step.log_lik)
    assert history[1].kl > 1e-3                                  # the first M-step moves a lot
    lls = np.array([step.log_lik for step in history])
    assert (np.diff(lls) >= -1e-10 * np.abs(lls[1:])).all()


def test_em_recovers_well_separated_components(xp, device):
    """On 3000 samples of well-separated components EM finds pi and mu within a few standard errors."""
    pi, mu = np.array([0.3, 0.7]), np.array([[-5.0, 0.0], [5.0, 1.0]])
    cov = np.array([np.eye(2), np.diag([0.5, 2.0])])
    true = GaussianMixture(xp.asarray(pi), xp.asarray(mu), xp.asarray(cov))
    x, _ = true.sample(3000, make_rng(6, device))
    fitted, history = fit_em(x, 2, "full", n_iter=30, seed=0)
    order = np.argsort(as_numpy(fitted.mu)[:, 0])
    pi_hat, mu_hat = as_numpy(fitted.pi)[order], as_numpy(fitted.mu)[order]
    se_pi = np.sqrt(pi * (1 - pi) / 3000)
    se_mu = np.sqrt(np.array([np.diag(c) for c in cov]) / (pi[:, None] * 3000))
    zs = np.concatenate([np.abs(pi_hat - pi) / se_pi, (np.abs(mu_hat - mu) / se_mu).ravel()])
    assert zs.max() < z_bound(zs.size)
    assert history[-1].log_lik >= history[0].log_lik


def test_m_step_is_the_weighted_maximum_likelihood(xp):
    """With hard responsibilities (one-hot q) the M-step gives each group's fraction, mean and
    (biased) covariance, as numpy computes them directly."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((60, 2))
    labels = np.arange(60) % 3
    q = np.eye(3)[labels]
    model = m_step(xp.asarray(x), xp.asarray(q), "full", reg_covar=0.0)
    for k in range(3):
        xk = x[labels == k]
        assert float(as_numpy(model.pi)[k]) == pytest.approx(1 / 3)
        np.testing.assert_allclose(as_numpy(model.mu)[k], xk.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(as_numpy(model.cov)[k], np.cov(xk.T, bias=True), rtol=1e-12)
    diag = m_step(xp.asarray(x), xp.asarray(q), "diag", reg_covar=0.0)
    np.testing.assert_allclose(as_numpy(diag.cov)[0], x[labels == 0].var(axis=0), rtol=1e-12)


def test_lower_bound_and_kl_handle_zero_probabilities(xp):
    """q with exact zeros: 0 ln 0 = 0, so L and KL stay finite and ln p = L + KL still holds."""
    model = _model(xp)
    x = xp.asarray(np.random.default_rng(8).normal(0, 2, (5, 2)))
    q = xp.asarray(np.eye(3)[[0, 1, 2, 0, 1]])
    L, kl = model.lower_bound(x, q), model.kl_to_posterior(x, q)
    assert np.isfinite(L) and np.isfinite(kl) and kl >= 0
    assert float(model.log_prob(x).sum()) == pytest.approx(L + kl, rel=1e-12)
