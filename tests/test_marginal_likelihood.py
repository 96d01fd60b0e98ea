"""The appendix-D estimator of log p(x): its pieces against scipy and exact identities, its
value on the linear-Gaussian model, L_k below it on a trained VAE, and bad input."""
import math
import warnings

import numpy as np
import pytest
import scipy.stats

from scratchvae import VAE, Adagrad, importance_sampled_bound
from scratchvae.data import load_dataset
from scratchvae.data.datasets import binarize
from scratchvae.derivations import hmc as dh
from scratchvae.training import marginal_likelihood as ml


def test_fitted_gaussian_is_the_sample_mean_and_covariance():
    z = np.random.default_rng(0).normal(size=(30, 4, 3))
    mean, cov = ml.fit_gaussian(z)
    for b in range(4):
        np.testing.assert_allclose(mean[b], z[:, b].mean(0), rtol=1e-12)
        np.testing.assert_allclose(cov[b], np.cov(z[:, b].T), rtol=1e-5)   # up to the 1e-6 ridge


def test_full_covariance_density_matches_scipy():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 2))
    A = rng.normal(size=(3, 2, 2))
    cov = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(2)
    z = rng.normal(size=(5, 3, 2))
    got = ml.gaussian_log_density_full(z, mean, cov)
    for b in range(3):
        ref = scipy.stats.multivariate_normal(mean[b], cov[b]).logpdf(z[:, b])
        np.testing.assert_allclose(got[:, b], ref, rtol=1e-12)


def test_the_estimate_is_exact_when_q_is_the_posterior():
    """With q = p(z|x), q(z) / p(x, z) = 1 / p(x) for every z: any samples give log p(x) exactly.
    Samples recoloured to the posterior's exact mean and covariance make the fitted q exact."""
    model = dh._lg(np)
    x = np.array([[0.5, -1.0, 2.0, 0.3]])
    m, Sigma = model.posterior(x)
    w = np.random.default_rng(2).normal(size=(40, 2))
    w = (w - w.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(w.T)).T)     # mean 0, cov I exactly
    z_fit = (m + w @ np.linalg.cholesky(Sigma).T)[:, None, :]
    z_est = np.random.default_rng(3).normal(size=(25, 1, 2)) * 3.0              # anywhere at all
    log_joint = model.log_joint(np.repeat(x, 25, 0), z_est[:, 0]).reshape(25, 1)
    log_px, se = ml.log_marginal_from_samples(z_fit, z_est, log_joint, ridge=0.0)
    assert abs(log_px[0] - model.log_marginal(x)[0]) < 1e-8      # the 1e-12 floor of the ridge, far out
    assert se[0] < 1e-8


def test_log_space_survives_likelihoods_far_below_the_float_range():
    """log p(x, z) near -2000 (exp underflows to 0 in float64): the estimate stays finite."""
    z = np.random.default_rng(4).normal(size=(20, 2, 1))
    log_joint = -2000.0 - 0.5 * z[..., 0] ** 2
    log_px, _ = ml.log_marginal_from_samples(z, z, log_joint)
    assert np.isfinite(log_px).all() and (log_px < -1990).all()


def test_the_estimator_recovers_the_exact_evidence_and_a_biased_one_does_not():
    def biased(*args, **kwargs):
        """0.15 nats too low, about ten of the check's standard errors (a bias of the size
        that, e.g., averaging log-ratios instead of ratios brings): the check must see it."""
        r = ml.log_marginal_hmc(*args, **kwargs)
        r["log_px"] = r["log_px"] - 0.15
        return r
    assert dh.appendix_d_estimator(np).passed
    assert not dh.appendix_d_estimator(np, estimator=biased).passed


def test_importance_sampled_bound_stays_below_the_estimate_on_a_trained_vae():
    """L_k <= log p(x) in expectation: on a VAE trained briefly on the 8x8 digits (Z = 2), the
    mean L_1000 over 100 images is not above the appendix-D estimate beyond their errors, and
    the ELBO is below both."""
    data = load_dataset("digits", download=False)
    x = binarize(data.train[:500], np.random.default_rng(0)).astype(np.float64)
    model = VAE(64, z_dim=2, hidden_dims=(32,), activation="tanh", dtype="float64", seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    for i in range(400):
        model.loss_and_grads(x[(i % 5) * 100:(i % 5 + 1) * 100])
        opt.step()
    xe = x[:100]
    est = ml.estimate_log_marginal(model.decoder, 2, xe, n_samples=50, seed=1)
    lk = importance_sampled_bound(model, xe, k=1000, seed=2)
    diff = lk - est["log_px"]
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert diff.mean() < 3 * se, (diff.mean(), se)
    elbo = -model.loss(xe, n_samples=20) + model.weight_penalty()
    assert elbo < lk.mean() and est["accept_rate"] > 0.8


def test_a_latent_space_above_five_dimensions_warns_unless_asked():
    model = VAE(6, z_dim=6, hidden_dims=(4,), dtype="float64")
    x = np.full((2, 6), 0.5)
    with pytest.warns(UserWarning, match="z_dim = 6.*high_dim_ok"):
        ml.estimate_log_marginal(model.decoder, 6, x, n_samples=2, n_burnin=1, n_init=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ml.estimate_log_marginal(model.decoder, 6, x, n_samples=2, n_burnin=1, n_init=1, high_dim_ok=True)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_samples=0), "n_samples"), (dict(n_samples=1), "n_samples"), (dict(n_leapfrog=0), "n_leapfrog"),
    (dict(target_accept=1.0), "target_accept"), (dict(n_init=0), "n_init"), (dict(batch_size=0), "batch_size")])
def test_bad_estimator_arguments_are_named(kwargs, name):
    model = VAE(6, z_dim=2, hidden_dims=(4,), dtype="float64")
    with pytest.raises((ValueError, TypeError), match=name):
        ml.estimate_log_marginal(model.decoder, 2, np.full((2, 6), 0.5), **kwargs)


def _two_modes(z):
    """A normalized density on one latent: 0.9 N(5, 0.1^2) + 0.1 N(-5, 0.1^2), and its gradient
    (as ``target`` for one row per chain). Its log evidence is exactly 0."""
    comps = [(np.log(0.9), 5.0), (np.log(0.1), -5.0)]
    logs = np.stack([w - 0.5 * ((z[:, 0] - m) / 0.1) ** 2 - np.log(0.1 * np.sqrt(2 * np.pi))
                     for w, m in comps])
    logp = np.logaddexp(logs[0], logs[1])
    resp = np.exp(logs - logp)
    grad = sum(r * -(z[:, 0] - m) / 0.01 for r, (_, m) in zip(resp, comps))
    return logp, grad[:, None]


def test_a_chain_held_in_a_minor_mode_underestimates_and_a_start_in_the_main_mode_does_not():
    """The modes are too far apart for HMC to cross: a chain estimates the evidence of the mode
    it starts in (log 0.1 from the minor one, log 0.9 from the main one; exact: 0). Hence the
    estimator takes a model's own guess of z as a start where it beats the prior draws."""
    minor = ml.log_marginal_hmc(_two_modes, np.full((200, 1), -5.0), n_samples=50, seed=0)
    main = ml.log_marginal_hmc(_two_modes, np.full((200, 1), 5.0), n_samples=50, seed=0)
    assert abs(minor["log_px"].mean() - np.log(0.1)) < 0.05
    assert abs(main["log_px"].mean() - np.log(0.9)) < 0.05


def test_better_start_takes_the_guess_only_where_it_is_better():
    z0 = np.array([[-5.0], [5.0], [-5.0]])
    guess = np.array([[5.0], [-5.0], [4.95]])
    assert ml.better_start(_two_modes, z0, guess).ravel().tolist() == [5.0, 5.0, 4.95]


def test_the_estimator_starts_from_a_given_guess_where_it_is_better():
    model = VAE(6, z_dim=2, hidden_dims=(8,), activation="tanh", dtype="float64", seed=0)
    x = (np.random.default_rng(0).random((4, 6)) < 0.5).astype(np.float64)
    with pytest.raises(ValueError, match="z_start"):
        ml.estimate_log_marginal(model.decoder, 2, x, n_samples=2, n_burnin=1, n_init=1,
                                 z_start=np.zeros((3, 2)))
    r = ml.estimate_log_marginal(model.decoder, 2, x, n_samples=5, n_burnin=5, n_init=2,
                                 z_start=model.encode(x)[0])
    assert r["log_px"].shape == (4,) and np.isfinite(r["log_px"]).all()
