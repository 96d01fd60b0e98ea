"""Note 003: the ELBO's two terms and their gradients, as a VAE computes them.

The pathwise (reparameterization) gradient of E_q[log p(x|z)]; the closed-form
-KL(q || N(0, I)) = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2); the Gaussian decoder's
-log p(x|z), which is least squares when the variance is constant; and the Bernoulli decoder's,
the cross-entropy of the pixels.
"""
import math

import numpy as np
import scipy.integrate
import scipy.special
import scipy.stats

from ..backend import as_numpy
from ..distributions import (bernoulli_log_likelihood, bernoulli_log_likelihood_grad, gaussian_log_density,
                             gaussian_log_density_grad, kl_standard_normal, kl_standard_normal_grad,
                             reparameterize, reparameterize_backward, standard_normal_log_density)
from ..gradcheck import check_gradients, rel_error
from .checks import (EXACT, GRAD, REL, ZSCORE, example_linear_gaussian, make_check, max_rel, mean_and_se,
                     per_tensor, z_bound, z_scores)


def expected_log_likelihood_gradient(xp=np):
    """The closed-form E_q[log p(x|z)] of the linear-Gaussian model, differentiated by hand
    with respect to mu, logvar, W and b, against central differences."""
    model = example_linear_gaussian(xp)
    rng = np.random.default_rng(14)
    x, mu = xp.asarray(rng.normal(0, 2, (5, 4))), xp.asarray(rng.normal(0, 1, (5, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (5, 2)))
    dmu, dlogvar, dW, db = model.expected_log_likelihood_grad(x, mu, logvar)
    f = lambda: float(model.expected_log_likelihood(x, mu, logvar).sum())  # noqa: E731
    reports = check_gradients(f, {"mu": mu, "logvar": logvar, "W": model.W, "b": model.b},
                              {"mu": dmu, "logvar": dlogvar, "W": dW, "b": db})
    return make_check("expected_log_likelihood_gradient", "003",
                      "d/d(mu,logvar,W,b) of -(|x-W mu-b|^2 + sum_j v_j |W_j|^2) / 2s^2",
                      max(r.worst for r in reports), GRAD, REL, per_tensor(reports))


def pathwise_gradient(xp=np, n_samples=40000, n_batches=40):
    """d/dtheta E_q[log p(x|z)] = E_eps[d/dtheta log p(x | mu + sigma eps)] (the
    reparameterization gradient) for theta = (mu, logvar, W, b) of the linear-Gaussian model,
    against the analytic gradient of the closed-form expectation.

    The pathwise estimate chains log p(x|z)'s gradient dz through the reparameterization's
    backward. Its standard error comes from ``n_batches`` independent batch means, so the
    bound is Student-t's rather than the normal one."""
    model = example_linear_gaussian(xp)
    rng = np.random.default_rng(15)
    x, mu = xp.asarray(rng.normal(0, 2, (2, 4))), xp.asarray(rng.normal(0, 1, (2, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (2, 2)))
    per = n_samples // n_batches
    batches = []
    for _ in range(n_batches):
        eps = xp.asarray(rng.standard_normal((per, 2, 2)))
        z = reparameterize(mu, logvar, eps).reshape(per * 2, 2)
        dz, dW, db = model.log_likelihood_grad(xp.broadcast_to(x, (per, 2, 4)).reshape(per * 2, 4), z)
        dmu, dlogvar = reparameterize_backward(dz.reshape(per, 2, 2), logvar, eps)
        batches.append(np.concatenate([as_numpy(a).ravel() / per for a in (dmu, dlogvar, dW, db)]))
    estimate, se = mean_and_se(np.stack(batches))
    exact = np.concatenate([as_numpy(a).ravel() for a in model.expected_log_likelihood_grad(x, mu, logvar)])
    zs = z_scores(estimate, exact, se)
    return make_check("pathwise_gradient", "003",
                      "d/dtheta E_q[log p(x|z)] = E_eps[d/dtheta log p(x|mu + sigma eps)]",
                      zs.max(), z_bound(zs.size, dof=n_batches - 1), ZSCORE,
                      f"{zs.size} coordinates (mu, logvar, W, b), S = {n_samples} in {n_batches} batch "
                      f"means (Student-t bound, {n_batches - 1} degrees of freedom)")


def kl_closed_form(xp=np, kl=kl_standard_normal):
    """KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2) per dimension,
    summed over dimensions, against scipy.integrate.quad of q log(q / p)."""
    mu, logvar = np.array([[0.0, 1.3, -2.0, 0.4]]), np.array([[0.0, -1.5, 0.7, 2.0]])
    closed = float(as_numpy(kl(xp.asarray(mu), xp.asarray(logvar)))[0])
    total = 0.0
    for m, lv in zip(mu[0], logvar[0]):
        q = scipy.stats.norm(m, math.exp(lv / 2))
        total += scipy.integrate.quad(lambda t: q.pdf(t) * (q.logpdf(t) - scipy.stats.norm.logpdf(t)),
                                      -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
    err = float(rel_error(closed, total))
    return make_check("kl_closed_form", "003",
                      "-KL(q||p) = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)",
                      err, EXACT, REL,
                      f"4 dimensions vs numerical integration: {closed:.12f} vs {total:.12f}")


def kl_monte_carlo(xp=np, n_samples=20000):
    """The closed-form KL(q || N(0, I)) against the Monte Carlo average of
    log q(z) - log p(z) over z ~ q (the definition of KL)."""
    rng = np.random.default_rng(16)
    mu, logvar = rng.normal(0, 1, (5, 3)), rng.normal(0, 1, (5, 3))
    eps = xp.asarray(rng.standard_normal((n_samples, 5, 3)))
    mu_x, logvar_x = xp.asarray(mu), xp.asarray(logvar)
    z = reparameterize(mu_x, logvar_x, eps)
    log_ratio = gaussian_log_density(z, mu_x, logvar_x) - standard_normal_log_density(z)
    estimate, se = mean_and_se(as_numpy(log_ratio))
    zs = z_scores(estimate, kl_standard_normal(mu_x, logvar_x), se)
    return make_check("kl_monte_carlo", "003", "KL(q||p) = E_q[log q(z) - log p(z)] ~ mean over z ~ q",
                      zs.max(), z_bound(zs.size), ZSCORE, f"{zs.size} rows of 3 dimensions, S = {n_samples}")


def kl_gradient(xp=np, grad=kl_standard_normal_grad):
    """dKL/dmu = mu,  dKL/dlogvar = (exp(logvar) - 1) / 2, against central differences."""
    rng = np.random.default_rng(17)
    mu, logvar = xp.asarray(rng.standard_normal((4, 3))), xp.asarray(rng.standard_normal((4, 3)))
    dmu, dlogvar = grad(mu, logvar)
    f = lambda: float(kl_standard_normal(mu, logvar).sum())  # noqa: E731
    reports = check_gradients(f, {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})
    return make_check("kl_gradient", "003", "dKL/dmu = mu,  dKL/dlogvar = (exp(logvar) - 1) / 2",
                      max(r.worst for r in reports), GRAD, REL, per_tensor(reports))


def gaussian_nll(xp=np):
    """-log p(x|z) = sum_j [1/2 log(2 pi sigma_j^2) + (x_j - mu_j)^2 / (2 sigma_j^2)] (in nats,
    with the 2 pi), against scipy.stats.norm.logpdf summed over dimensions."""
    rng = np.random.default_rng(18)
    x, mu, logvar = rng.normal(0, 1, (8, 5)), rng.uniform(0, 1, (8, 5)), rng.normal(-1, 1.5, (8, 5))
    ours = as_numpy(gaussian_log_density(xp.asarray(x), xp.asarray(mu), xp.asarray(logvar)))
    ref = scipy.stats.norm.logpdf(x, mu, np.exp(logvar / 2)).sum(axis=1)
    err = max_rel(ours, ref)
    return make_check("gaussian_nll", "003",
                      "-log N(x; mu, sigma^2) = sum_j 1/2 log 2 pi sigma_j^2 + (x_j-mu_j)^2 / 2 sigma_j^2",
                      err, EXACT, REL, f"8 rows of 5 dimensions vs scipy.stats.norm: {err:.1e}")


def gaussian_nll_gradient(xp=np, grad=gaussian_log_density_grad):
    """d/dmu = (x - mu)/sigma^2, d/dlogvar = ((x - mu)^2/sigma^2 - 1)/2, d/dx = -(x - mu)/sigma^2
    of log N(x; mu, diag(exp(logvar))), against central differences."""
    rng = np.random.default_rng(19)
    x, mu, logvar = (xp.asarray(rng.standard_normal((4, 5))) for _ in range(3))
    dmu, dlogvar, dx = grad(x, mu, logvar)
    f = lambda: float(gaussian_log_density(x, mu, logvar).sum())  # noqa: E731
    reports = check_gradients(f, {"x": x, "mu": mu, "logvar": logvar},
                              {"x": dx, "mu": dmu, "logvar": dlogvar})
    return make_check("gaussian_nll_gradient", "003",
                      "d log N / dmu = (x-mu)/sigma^2,  d/dlogvar = ((x-mu)^2/sigma^2 - 1)/2",
                      max(r.worst for r in reports), GRAD, REL, per_tensor(reports))


def least_squares(xp=np):
    """With a constant variance sigma^2 the Gaussian NLL is least squares up to constants:
    -log p(x|z) - |x - mu|^2 / (2 sigma^2) = D/2 log(2 pi sigma^2) for every mu."""
    rng = np.random.default_rng(20)
    sigma2 = 0.3
    x, mu = rng.normal(0, 1, (10, 6)), rng.normal(0, 2, (10, 6))
    logvar = np.full_like(x, math.log(sigma2))
    nll = -as_numpy(gaussian_log_density(xp.asarray(x), xp.asarray(mu), xp.asarray(logvar)))
    rest = nll - ((x - mu) ** 2).sum(axis=1) / (2 * sigma2)
    err = max_rel(rest, np.full(10, 3 * math.log(2 * math.pi * sigma2)))
    return make_check("least_squares", "003",
                      "-log N(x; mu, sigma^2 I) = |x - mu|^2 / 2 sigma^2 + D/2 log 2 pi sigma^2",
                      err, EXACT, REL, f"10 different mu: the remainder is the constant to {err:.1e}")


def bernoulli_nll(xp=np):
    """-log p(x|l) = sum_d [softplus(l_d) - x_d l_d] = -sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)],
    p = sigmoid(l): against scipy.stats.bernoulli for binary x and the cross-entropy for grey
    x, and in float32 at logits +-1e4 (finite and exact: 0 or 1e4 per pixel)."""
    rng = np.random.default_rng(21)
    logits = rng.normal(0, 3, (6, 8))
    binary = (rng.random((6, 8)) < 0.5).astype(float)
    grey = rng.random((6, 8))
    p = scipy.special.expit(logits)
    ours_b = as_numpy(bernoulli_log_likelihood(xp.asarray(binary), xp.asarray(logits)))
    ours_g = as_numpy(bernoulli_log_likelihood(xp.asarray(grey), xp.asarray(logits)))
    err_b = max_rel(ours_b, scipy.stats.bernoulli.logpmf(binary, p).sum(axis=1))
    err_g = max_rel(ours_g, (grey * np.log(p) + (1 - grey) * np.log1p(-p)).sum(axis=1))
    big = xp.asarray(np.array([[1e4, -1e4, 1e4, -1e4]], dtype=np.float32))
    x32 = xp.asarray(np.array([[1.0, 0.0, 0.0, 1.0]], dtype=np.float32))
    extreme = as_numpy(bernoulli_log_likelihood(x32, big))
    err_x = max_rel(extreme, [-2e4]) if np.isfinite(extreme).all() else math.inf
    return make_check("bernoulli_nll", "003",
                      "-log Bern(x; sigmoid(l)) = softplus(l) - x l", max(err_b, err_g, err_x),
                      EXACT, REL, f"binary vs scipy {err_b:.1e}, grey vs cross-entropy {err_g:.1e}, "
                      f"float32 logits +-1e4: {extreme[0]:.1f} (exact -20000)")


def bernoulli_nll_gradient(xp=np, grad=bernoulli_log_likelihood_grad):
    """d(-log p(x|l))/dl = sigmoid(l) - x, against central differences in float64, and
    exact (0 or -+1) in float32 at logits +-1e4."""
    rng = np.random.default_rng(22)
    logits = xp.asarray(rng.normal(0, 3, (4, 6)))
    x = xp.asarray(rng.random((4, 6)))
    dnll = -grad(x, logits)
    f = lambda: -float(bernoulli_log_likelihood(x, logits).sum())  # noqa: E731
    (report,) = check_gradients(f, {"logits": logits}, {"logits": dnll})
    big = xp.asarray(np.array([[1e4, -1e4, 1e4, -1e4]], dtype=np.float32))
    x32 = xp.asarray(np.array([[1.0, 0.0, 0.0, 1.0]], dtype=np.float32))
    extreme = -as_numpy(grad(x32, big))[0]
    ok = bool(np.array_equal(extreme, [0.0, 0.0, 1.0, -1.0]))
    return make_check("bernoulli_nll_gradient", "003", "d(-log Bern(x; sigmoid(l)))/dl = sigmoid(l) - x",
                      report.worst, GRAD, REL, f"float64 vs central differences {report.worst:.1e}; "
                      f"float32 at +-1e4: {extreme.tolist()} (exact [0, 0, 1, -1]): {ok}", extra_ok=ok)


CHECKS = (expected_log_likelihood_gradient, pathwise_gradient, kl_closed_form, kl_monte_carlo, kl_gradient,
          gaussian_nll, gaussian_nll_gradient, least_squares, bernoulli_nll, bernoulli_nll_gradient)
