"""Note 000: latent variable models, from a mixture of Gaussians to the deep latent variable model.

The note defines p(x, z) = p(x|z) p(z), the mixture p(x) = sum_k pi_k N(x; mu_k, Sigma_k) and
the deep LVM p(x|z) = N(sigmoid(A z + c), diag(exp(sigmoid(B z + d)))) with z ~ N(0, I) (the
note writes N(0, l)), whose p(x) is an integral over z. Each function checks one of these.
"""
import math

import numpy as np
import scipy.special
import scipy.stats

from ..backend import as_numpy, make_rng
from ..gradcheck import check_directional, check_gradients
from ..models.deep_lvm import DeepLVM
from ..models.linear_gaussian import LinearGaussian
from .checks import (ALPHA, EXACT, GRAD, REL, ZSCORE, device_name, example_mixture, make_check, max_rel,
                     mean_and_se, mean_z_scores, per_tensor, z_bound, z_scores)


def _hermite(n=100):
    """Nodes t and weights w with sum_i w_i f(t_i) ~ E_{z ~ N(0,1)} f(z) (Gauss-Hermite)."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    return t, w / math.sqrt(2 * math.pi)


def joint_factorization(xp=np):
    """p(x, z) = p(x|z) p(z), and summing (integrating) z out gives p(x).

    Discrete z (mixture): p(x, z=k) from the model against pi_k times scipy's density, and
    sum_k p(x, z=k) against exp(log p(x)). Continuous z (linear-Gaussian, one latent):
    E_{z~N(0,1)} p(x|z) by 100-point Gauss-Hermite quadrature against the closed-form
    N(x; b, W W^T + s^2 I)."""
    model = example_mixture(xp)
    x = np.random.default_rng(0).normal(0.0, 2.0, (20, 2))
    joint = np.exp(as_numpy(model.log_joint(xp.asarray(x))))
    ref = np.stack([as_numpy(model.pi)[k] * scipy.stats.multivariate_normal(
        as_numpy(model.mu)[k], as_numpy(model.cov)[k]).pdf(x) for k in range(3)], axis=1)
    err_joint = max_rel(joint, ref)
    err_sum = max_rel(joint.sum(axis=1), np.exp(as_numpy(model.log_prob(xp.asarray(x)))))

    lg = LinearGaussian.random(x_dim=3, z_dim=1, s=0.5, seed=1)
    lg = LinearGaussian(xp.asarray(lg.W), xp.asarray(lg.b), lg.s)
    xs = np.random.default_rng(1).normal(0.0, 1.5, (5, 3))
    t, w = _hermite()
    lik = np.stack([np.exp(as_numpy(lg.log_likelihood(xp.asarray(np.repeat(xi[None], t.size, 0)),
                                                      xp.asarray(t[:, None])))) for xi in xs])
    err_int = max_rel(lik @ w, np.exp(as_numpy(lg.log_marginal(xp.asarray(xs)))))
    return make_check("joint_factorization", "000",
                      "p(x,z) = p(x|z) p(z);  sum_z p(x,z) = int p(x|z)p(z) dz = p(x)",
                      max(err_joint, err_sum, err_int), EXACT, REL,
                      f"mixture joint vs scipy {err_joint:.1e}, sum over z {err_sum:.1e}; "
                      f"linear-Gaussian quadrature vs closed form {err_int:.1e}")


def ancestral_sampling(xp=np, n=20000):
    """Ancestral samples (z first, then x given z) have the model's statistics.

    Mixture: the frequency of each label is pi_k, the sample mean is sum_k pi_k mu_k and the
    sample covariance is sum_k pi_k (Sigma_k + mu_k mu_k^T) - E[x] E[x]^T. Deep LVM (one
    latent): the mean of x is E_z[mu(z)] and its variance E_z[exp(logvar(z))] + Var_z[mu(z)],
    both by Gauss-Hermite quadrature. Standard errors from the samples."""
    device = device_name(xp)
    model = example_mixture(xp)
    x, z = model.sample(n, make_rng(0, device))
    x, z = as_numpy(x), as_numpy(z)
    onehot = (z[:, None] == np.arange(3)).astype(float)
    zs = [mean_z_scores(onehot, as_numpy(model.pi))]
    zs.append(mean_z_scores(x, as_numpy(model.mean())))
    centered = x - x.mean(axis=0)
    products = (centered[:, :, None] * centered[:, None, :]).reshape(n, 4)[:, [0, 1, 3]]
    cov = as_numpy(model.covariance_matrix()).reshape(4)[[0, 1, 3]]
    zs.append(mean_z_scores(products, cov))

    lvm = DeepLVM.random(x_dim=2, z_dim=1, scale=1.5, seed=2, device=device)
    xl, _ = lvm.sample(n, make_rng(1, device))
    xl = as_numpy(xl)
    t, w = _hermite()
    mu_t, logvar_t = (as_numpy(a) for a in lvm.likelihood_params(xp.asarray(t[:, None])))
    mean = w @ mu_t
    var = w @ np.exp(logvar_t) + w @ (mu_t - mean) ** 2
    zs.append(mean_z_scores(xl, mean))
    zs.append(mean_z_scores((xl - xl.mean(axis=0)) ** 2, var))
    zs = np.concatenate(zs)
    return make_check("ancestral_sampling", "000",
                      "z ~ p(z), x ~ p(x|z)  =>  sample moments -> model moments",
                      zs.max(), z_bound(zs.size), ZSCORE,
                      f"{zs.size} moments from n = {n} samples (mixture: label frequencies, mean, "
                      f"covariance; deep LVM: mean, variance); Bonferroni bound for alpha = {ALPHA}")


def mog_log_likelihood(xp=np):
    """log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)], full and diagonal
    covariances, against scipy.stats densities combined by scipy.special.logsumexp.

    Includes points so far from every component that sum_k pi_k N(x; mu_k, Sigma_k)
    underflows to 0 in float64: the logsumexp form must stay finite and exact there."""
    x = np.random.default_rng(3).normal(0.0, 3.0, (50, 2))
    x = np.concatenate([x, [[60.0, -60.0], [-80.0, 5.0]]])   # density ~ exp(-2000): underflows
    errors, underflow = [], 0
    for covariance in ("full", "diag"):
        model = example_mixture(xp, covariance)
        pi, mu, cov = (as_numpy(a) for a in (model.pi, model.mu, model.cov))
        covs = cov if covariance == "full" else [np.diag(c) for c in cov]
        logpdf = np.stack([scipy.stats.multivariate_normal(mu[k], covs[k]).logpdf(x) for k in range(3)],
                          axis=1)
        ref = scipy.special.logsumexp(logpdf, b=pi, axis=1)
        with np.errstate(divide="ignore"):
            underflow += int(np.isinf(np.log(np.exp(logpdf) @ pi)).sum())
        errors.append(max_rel(model.log_prob(xp.asarray(x)), ref))
    return make_check("mog_log_likelihood", "000",
                      "log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)]",
                      max(errors), EXACT, REL,
                      f"vs scipy.stats: full {errors[0]:.1e}, diag {errors[1]:.1e}; the direct sum "
                      f"underflows to log 0 at {underflow} of {2 * len(x)} points, logsumexp at none")


def deep_lvm_gradient(xp=np):
    """d/dtheta sum_n dlogp_n log p(x_n|z_n) for theta = (A, B, c, d), and d/dz, against central
    differences, with p(x|z) = N(sigmoid(A z + c), diag(exp(sigmoid(B z + d))))."""
    model = DeepLVM.random(x_dim=3, z_dim=2, scale=1.0, seed=4, device=device_name(xp))
    rng = np.random.default_rng(4)
    x, z, dlogp = (xp.asarray(rng.standard_normal(s)) for s in ((6, 3), (6, 2), (6,)))
    model.log_prob(x, z)
    dz = model.backward(dlogp)
    grads = {**{k: v.copy() for k, v in model.grads.items()}, "z": dz}
    params = {**model.params, "z": z}
    f = lambda: float((model.log_prob(x, z) * dlogp).sum())  # noqa: E731
    reports = check_gradients(f, params, grads)
    directional, _, _ = check_directional(f, params, grads)
    worst = max(reports, key=lambda r: r.worst)
    return make_check("deep_lvm_gradient", "000",
                      "d log N(x; sigmoid(Az+c), diag exp sigmoid(Bz+d)) / d(A,B,c,d,z)",
                      max(worst.worst, directional), GRAD, REL,
                      per_tensor(reports) + f"; directional {directional:.1e}")


def deep_lvm_marginal(xp=np, n_samples=20000):
    """p(x) = E_{z~N(0,I)} p(x|z): the Monte Carlo average (1/S) sum_s p(x|z_s) behind
    ``log_marginal`` (log-mean-exp) against Gauss-Hermite quadrature over a 1-D latent."""
    model = DeepLVM.random(x_dim=2, z_dim=1, scale=1.5, seed=2, device=device_name(xp))
    x = np.array([[0.5, 0.5], [0.0, 1.0], [1.5, -1.0], [-2.0, 2.5], [3.0, 3.0]])
    z = np.random.default_rng(5).standard_normal((n_samples, 1))
    lik = np.exp(as_numpy(model.pairwise_log_prob(xp.asarray(x), xp.asarray(z))))     # (5, S)
    estimate, se = mean_and_se(lik, axis=1)
    log_est = as_numpy(model.log_marginal(xp.asarray(x), z=xp.asarray(z)))
    t, w = _hermite()
    exact = np.exp(as_numpy(model.pairwise_log_prob(xp.asarray(x), xp.asarray(t[:, None])))) @ w
    zs = z_scores(estimate, exact, se)
    same = max_rel(np.exp(log_est), estimate)
    return make_check("deep_lvm_marginal", "000", "p(x) = E_{z~N(0,I)} p(x|z) ~ (1/S) sum_s p(x|z_s)",
                      zs.max(), z_bound(zs.size), ZSCORE,
                      f"{zs.size} points, S = {n_samples}; log-mean-exp vs plain mean {same:.1e}",
                      extra_ok=same < EXACT)


CHECKS = (joint_factorization, ancestral_sampling, mog_log_likelihood, deep_lvm_gradient, deep_lvm_marginal)
