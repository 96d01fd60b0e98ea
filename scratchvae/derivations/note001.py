"""Note 001: ln p(X) = L(q) + KL(q || p(Z|X)) for every q, and EM, which climbs it.

Checked on two models whose every term is exact: a mixture of Gaussians (discrete Z, where
EM runs) and a linear-Gaussian model (continuous z, posterior and evidence in closed form),
and the note's last step, L(q) = E_q[log p(X|Z)] - KL(q(Z) || p(Z)).
"""
import numpy as np

from ..backend import as_numpy, make_rng
from ..models.mixture import fit_em
from .checks import (EXACT, REL, ZSCORE, device_name, example_linear_gaussian, example_mixture, make_check,
                     max_rel, mean_and_se, z_bound, z_scores)


def decomposition_discrete(xp=np, n_q=20):
    """ln p(X) = L(q) + KL(q || p(Z|X)) for arbitrary q over the labels of a mixture, with
    L(q) <= ln p(X), and L = ln p(X) (KL = 0) when q is the posterior p(Z|X)."""
    model = example_mixture(xp)
    rng = np.random.default_rng(6)
    x = xp.asarray(rng.normal(0.0, 2.0, (30, 2)))
    log_p = float(model.log_prob(x).sum())
    errors, bounded = [], True
    for _ in range(n_q):
        q = xp.asarray(rng.dirichlet(np.ones(3), 30))
        L, kl = model.lower_bound(x, q), model.kl_to_posterior(x, q)
        errors.append(abs(log_p - (L + kl)) / abs(log_p))
        bounded &= L <= log_p and kl > 0
    post = model.responsibilities(x)
    at_post = abs(model.lower_bound(x, post) - log_p) / abs(log_p)
    return make_check("decomposition_discrete", "001",
                      "ln p(X) = L(q) + KL(q||p(Z|X));  L <= ln p, = at q = p(Z|X)",
                      max(max(errors), at_post), EXACT, REL,
                      f"{n_q} random q: identity {max(errors):.1e}, all L < ln p: {bounded}; "
                      f"q = posterior: |L - ln p| / |ln p| = {at_post:.1e}", extra_ok=bounded)


def em_decomposition(xp=np, n_iter=15):
    """Along EM on a mixture: ln p(X) = L(q, theta) + KL(q || p(Z|X, theta)) after every
    step, KL = 0 right after each E-step, and ln p(X) never decreases."""
    model = example_mixture(xp)
    x, _ = model.sample(500, make_rng(7, device_name(xp)))
    _, history = fit_em(x, 3, "full", n_iter=n_iter, seed=1, reg_covar=0.0)
    identity = max(abs(step.log_lik - step.lower_bound - step.kl) / abs(step.log_lik) for step in history)
    e_steps = max(abs(step.kl) / abs(step.log_lik) for step in history if step.stage == "E")
    lls = [step.log_lik for step in history]
    monotone = all(b >= a - EXACT * abs(a) for a, b in zip(lls, lls[1:]))
    kl_m = [step.kl for step in history if step.stage == "M"]
    return make_check("em_decomposition", "001",
                      "EM: ln p = L + KL at every step; KL = 0 after E; ln p non-decreasing",
                      max(identity, e_steps), EXACT, REL,
                      f"{n_iter} iterations: identity {identity:.1e}, E-step KL {e_steps:.1e}, "
                      f"ln p {lls[0]:.2f} -> {lls[-1]:.2f} monotone: {monotone}; KL after M-steps "
                      f"{max(kl_m):.2e} .. {min(kl_m):.2e}", extra_ok=monotone)


def decomposition_linear_gaussian(xp=np, n_q=20):
    """ln p(x) = L(q) + KL(q || p(z|x)) for arbitrary diagonal Gaussian q, with ln p(x) from
    N(b, W W^T + s^2 I), L in closed form and KL to the exact Gaussian posterior; L <= ln p,
    with equality at q = p(z|x) (W with orthogonal columns, so the posterior is diagonal)."""
    model = example_linear_gaussian(xp)
    rng = np.random.default_rng(9)
    x = xp.asarray(rng.normal(0.0, 2.0, (10, 4)))
    log_p = model.log_marginal(x)
    errors, bounded = [], True
    for _ in range(n_q):
        mu = xp.asarray(rng.normal(0.0, 1.0, (10, 2)))
        logvar = xp.asarray(rng.normal(-1.0, 1.0, (10, 2)))
        L, kl = model.elbo(x, mu, logvar), model.kl_to_posterior(x, mu, logvar)
        errors.append(max_rel(log_p, L + kl))
        bounded &= bool((L < log_p).all()) and bool((kl > 0).all())
    ortho = example_linear_gaussian(xp, orthogonal=True)
    m, Sigma = ortho.posterior(x)
    logvar_post = xp.broadcast_to(xp.log(xp.diag(Sigma)), m.shape)
    at_post = max_rel(ortho.elbo(x, m, logvar_post), ortho.log_marginal(x))
    return make_check("decomposition_linear_gaussian", "001",
                      "ln p(x) = L(q) + KL(q||p(z|x)), p(z|x) = N(Sigma W^T (x-b)/s^2, (I + W^T W/s^2)^-1)",
                      max(max(errors), at_post), EXACT, REL,
                      f"{n_q} random diagonal q: identity {max(errors):.1e}, all L < ln p: {bounded}; "
                      f"q = posterior: L vs ln p {at_post:.1e}", extra_ok=bounded)


def elbo_kl_form(xp=np):
    """L(q) = E_q[log p(x|z)] - KL(q || p(z)) equals its definition E_q[log p(x,z) - log q(z)]
    = E_q[log p(x|z)] + E_q[log p(z)] + H[q], every term in closed form (linear-Gaussian).
    (Note 001 ends with "+ KL(q(Z) || p(Z))"; the sign is minus, since
    sum_Z q ln(p(Z)/q(Z)) = -KL(q || p).)"""
    model = example_linear_gaussian(xp)
    rng = np.random.default_rng(10)
    x, mu = xp.asarray(rng.normal(0, 2, (10, 4))), xp.asarray(rng.normal(0, 1, (10, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (10, 2)))
    err = max_rel(model.elbo(x, mu, logvar), model.elbo_definition(x, mu, logvar))
    return make_check("elbo_kl_form", "001", "E_q[log p(x,z) - log q(z)] = E_q[log p(x|z)] - KL(q||p(z))",
                      err, EXACT, REL,
                      f"10 rows, closed-form cross-entropy and entropy vs closed-form KL: {err:.1e}")


def elbo_monte_carlo(xp=np, n_samples=20000):
    """The closed-form L(q) = E_q[log p(x|z)] - KL(q || p(z)) against the Monte Carlo average
    of its definition, log p(x, z) - log q(z) at z = mu + exp(logvar/2) eps (linear-Gaussian)."""
    model = example_linear_gaussian(xp)
    rng = np.random.default_rng(11)
    x, mu = xp.asarray(rng.normal(0, 2, (6, 4))), xp.asarray(rng.normal(0, 1, (6, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (6, 2)))
    eps = xp.asarray(rng.standard_normal((n_samples, 6, 2)))
    estimate, se = mean_and_se(as_numpy(model.elbo_samples(x, mu, logvar, eps)))
    zs = z_scores(estimate, model.elbo(x, mu, logvar), se)
    return make_check("elbo_monte_carlo", "001", "L(q) = E_q[log p(x,z) - log q(z)] ~ mean over z ~ q",
                      zs.max(), z_bound(zs.size), ZSCORE, f"{zs.size} rows, S = {n_samples} samples each")


CHECKS = (decomposition_discrete, em_decomposition, decomposition_linear_gaussian, elbo_kl_form,
          elbo_monte_carlo)
