"""Every derivation of the lecture notes, checked numerically: one function per derivation.

Each function returns a :class:`Check` (what was compared, the worst discrepancy found,
the threshold it must stay under, and a line of details), and :func:`run_all` returns them
all in the order of the notes. ``scratchvae gradcheck`` prints them as a table; the tests assert
on the same functions, so the checking logic lives here once.

Three kinds of threshold, each stated in the check:

- ``GRAD`` (gradcheck.THRESHOLD = 1e-7): the relative error |a - n| / (|a| + |n|) between an
  analytic gradient and central differences in float64 (see :mod:`scratchvae.gradcheck`).
- ``EXACT`` = 1e-10: the relative error between two float64 routes to the same number (a
  closed form against scipy or quadrature, two sides of an identity). Round-off puts them
  1e-16 to 1e-13 apart; an algebra mistake puts them 1e-3 or more apart.
- Monte Carlo checks report the worst |estimate - exact| / SE over m comparisons, with the
  standard error SE estimated from the same samples. The threshold is the two-sided
  Bonferroni bound ``z_bound(m)`` = Phi^{-1}(1 - alpha / (2 m)) with alpha = 1e-4: a correct
  implementation exceeds it with probability below 1e-4 (the estimates being averages of
  thousands of samples, hence close to normal), while the bugs these checks target
  shift the estimate by hundreds of standard errors. Seeds are fixed, so every run agrees.

Every check takes ``xp`` (NumPy, or CuPy for the same check on a GPU); the data are drawn on
the host with NumPy and moved, so both devices check the same numbers (except the ancestral
samples, which come from the device's own generator). Some take the function
under test as a keyword, so the tests can show that a planted bug makes the check fail.
"""
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.integrate
import scipy.special
import scipy.stats

from .. import distributions as D
from ..activations import ACTIVATIONS
from ..backend import as_numpy, device_of, make_rng
from ..models.deep_lvm import DeepLVM
from ..gradcheck import THRESHOLD as GRAD
from ..gradcheck import check_directional, check_gradients, rel_error
from ..layers import MLP, Linear
from ..models.linear_gaussian import LinearGaussian
from ..models.mixture import GaussianMixture, fit_em
from ..optim import SGD, Adagrad, Adam
from ..vae import VAE

EXACT = 1e-10
ALPHA = 1e-4
REL = "relative error"
ZSCORE = "|z| (standard errors)"


def z_bound(m, alpha=ALPHA, dof=None):
    """Phi^{-1}(1 - alpha / (2 m)): the largest |z| among m standard normals exceeds it with
    probability at most alpha (e.g. 4.42 for m = 10, 4.89 for m = 100). With ``dof``, the
    Student-t quantile instead, for a standard error estimated from only dof + 1 values."""
    law = scipy.stats.norm if dof is None else scipy.stats.t(dof)
    return float(law.isf(alpha / (2 * m)))


@dataclass
class Check:
    """The outcome of one derivation check."""
    name: str
    note: str             # which lecture note the derivation comes from
    formula: str          # the identity, in one line
    worst: float          # worst relative error, or worst |z| for a Monte Carlo check
    threshold: float
    measure: str          # REL or ZSCORE: what ``worst`` is
    details: str
    passed: bool = field(init=False)   # worst is finite and below threshold

    def __post_init__(self):
        self.passed = bool(np.isfinite(self.worst)) and self.worst < self.threshold


def _check(name, note, formula, worst, threshold, measure, details, extra_ok=True):
    """A Check whose ``worst`` is forced to inf when a side condition (``extra_ok``) fails."""
    return Check(name, note, formula, float(worst) if extra_ok else math.inf, threshold, measure, details)


def _max_rel(a, b):
    return float(rel_error(a, b).max())


def _per_tensor(reports):
    return ", ".join(f"{r.name} {r.worst:.1e}" for r in reports)


def _z_scores(estimate, exact, se):
    """|estimate - exact| / se elementwise, on the host."""
    return np.abs(as_numpy(estimate) - as_numpy(exact)) / as_numpy(se)


def _mean_and_se(samples, axis=0):
    """Sample mean and its standard error sd / sqrt(n) along ``axis``."""
    n = samples.shape[axis]
    return samples.mean(axis=axis), samples.std(axis=axis, ddof=1) / math.sqrt(n)


def _device(xp):
    return device_of(xp.zeros(1))


def _mixture(xp, covariance="full"):
    """A 3-component mixture in 2-D with unequal weights and correlated components."""
    pi = np.array([0.2, 0.3, 0.5])
    mu = np.array([[-3.0, 0.0], [2.0, 2.0], [1.0, -2.5]])
    if covariance == "full":
        cov = np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.5, -0.2], [-0.2, 1.2]], [[1.5, 0.0], [0.0, 0.3]]])
    else:
        cov = np.array([[1.0, 0.8], [0.5, 1.2], [1.5, 0.3]])
    return GaussianMixture(xp.asarray(pi), xp.asarray(mu), xp.asarray(cov))


def _hermite(n=100):
    """Nodes t and weights w with sum_i w_i f(t_i) ~ E_{z ~ N(0,1)} f(z) (Gauss-Hermite)."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    return t, w / math.sqrt(2 * math.pi)


# =======================================================================================
# Note 000: latent-variable models
# =======================================================================================
def joint_factorization(xp=np):
    """p(x, z) = p(x|z) p(z), and summing (integrating) z out gives p(x).

    Discrete z (mixture): p(x, z=k) from the model against pi_k times scipy's density, and
    sum_k p(x, z=k) against exp(log p(x)). Continuous z (linear-Gaussian, one latent):
    E_{z~N(0,1)} p(x|z) by 100-point Gauss-Hermite quadrature against the closed-form
    N(x; b, W W^T + s^2 I)."""
    model = _mixture(xp)
    x = np.random.default_rng(0).normal(0.0, 2.0, (20, 2))
    joint = np.exp(as_numpy(model.log_joint(xp.asarray(x))))
    ref = np.stack([as_numpy(model.pi)[k] * scipy.stats.multivariate_normal(
        as_numpy(model.mu)[k], as_numpy(model.cov)[k]).pdf(x) for k in range(3)], axis=1)
    err_joint = _max_rel(joint, ref)
    err_sum = _max_rel(joint.sum(axis=1), np.exp(as_numpy(model.log_prob(xp.asarray(x)))))

    lg = LinearGaussian.random(x_dim=3, z_dim=1, s=0.5, seed=1)
    lg = LinearGaussian(xp.asarray(lg.W), xp.asarray(lg.b), lg.s)
    xs = np.random.default_rng(1).normal(0.0, 1.5, (5, 3))
    t, w = _hermite()
    lik = np.stack([np.exp(as_numpy(lg.log_likelihood(xp.asarray(np.repeat(xi[None], t.size, 0)),
                                                      xp.asarray(t[:, None])))) for xi in xs])
    err_int = _max_rel(lik @ w, np.exp(as_numpy(lg.log_marginal(xp.asarray(xs)))))
    return _check("joint_factorization", "000",
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
    device = _device(xp)
    model = _mixture(xp)
    x, z = model.sample(n, make_rng(0, device))
    x, z = as_numpy(x), as_numpy(z)
    onehot = (z[:, None] == np.arange(3)).astype(float)
    zs = [_z_scores(*_swap(_mean_and_se(onehot), as_numpy(model.pi)))]
    zs.append(_z_scores(*_swap(_mean_and_se(x), as_numpy(model.mean()))))
    centered = x - x.mean(axis=0)
    products = (centered[:, :, None] * centered[:, None, :]).reshape(n, 4)[:, [0, 1, 3]]
    cov = as_numpy(model.covariance_matrix()).reshape(4)[[0, 1, 3]]
    zs.append(_z_scores(*_swap(_mean_and_se(products), cov)))

    lvm = DeepLVM.random(x_dim=2, z_dim=1, scale=1.5, seed=2, device=device)
    xl, _ = lvm.sample(n, make_rng(1, device))
    xl = as_numpy(xl)
    t, w = _hermite()
    mu_t, logvar_t = (as_numpy(a) for a in lvm.likelihood_params(xp.asarray(t[:, None])))
    mean = w @ mu_t
    var = w @ np.exp(logvar_t) + w @ (mu_t - mean) ** 2
    zs.append(_z_scores(*_swap(_mean_and_se(xl), mean)))
    zs.append(_z_scores(*_swap(_mean_and_se((xl - xl.mean(axis=0)) ** 2), var)))
    zs = np.concatenate(zs)
    return _check("ancestral_sampling", "000", "z ~ p(z), x ~ p(x|z)  =>  sample moments -> model moments",
                  zs.max(), z_bound(zs.size), ZSCORE,
                  f"{zs.size} moments from n = {n} samples (mixture: label frequencies, mean, covariance; "
                  f"deep LVM: mean, variance); Bonferroni bound for alpha = {ALPHA}")


def _swap(mean_se, exact):
    """(estimate, se), exact -> (estimate, exact, se) for :func:`_z_scores`."""
    return mean_se[0], exact, mean_se[1]


def mog_log_likelihood(xp=np):
    """log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)], full and diagonal
    covariances, against scipy.stats densities combined by scipy.special.logsumexp.

    Includes points so far from every component that sum_k pi_k N(x; mu_k, Sigma_k)
    underflows to 0 in float64: the logsumexp form must stay finite and exact there."""
    x = np.random.default_rng(3).normal(0.0, 3.0, (50, 2))
    x = np.concatenate([x, [[60.0, -60.0], [-80.0, 5.0]]])   # density ~ exp(-2000): underflows
    errors, underflow = [], 0
    for covariance in ("full", "diag"):
        model = _mixture(xp, covariance)
        pi, mu, cov = (as_numpy(a) for a in (model.pi, model.mu, model.cov))
        covs = cov if covariance == "full" else [np.diag(c) for c in cov]
        logpdf = np.stack([scipy.stats.multivariate_normal(mu[k], covs[k]).logpdf(x) for k in range(3)],
                          axis=1)
        ref = scipy.special.logsumexp(logpdf, b=pi, axis=1)
        with np.errstate(divide="ignore"):
            underflow += int(np.isinf(np.log(np.exp(logpdf) @ pi)).sum())
        errors.append(_max_rel(model.log_prob(xp.asarray(x)), ref))
    return _check("mog_log_likelihood", "000", "log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)]",
                  max(errors), EXACT, REL,
                  f"vs scipy.stats: full {errors[0]:.1e}, diag {errors[1]:.1e}; the direct sum "
                  f"underflows to log 0 at {underflow} of {2 * len(x)} points, logsumexp at none")


def deep_lvm_gradient(xp=np):
    """d/dtheta sum_n g_n log p(x_n|z_n) for theta = (A, B, c, d), and d/dz, against central
    differences, with p(x|z) = N(sigmoid(A z + c), diag(exp(sigmoid(B z + d))))."""
    model = DeepLVM.random(x_dim=3, z_dim=2, scale=1.0, seed=4, device=_device(xp))
    rng = np.random.default_rng(4)
    x, z, g = (xp.asarray(rng.standard_normal(s)) for s in ((6, 3), (6, 2), (6,)))
    model.log_prob(x, z)
    dz = model.backward(g)
    grads = {**{k: v.copy() for k, v in model.grads.items()}, "z": dz}
    params = {**model.params, "z": z}
    f = lambda: float((model.log_prob(x, z) * g).sum())  # noqa: E731
    reports = check_gradients(f, params, grads)
    directional, _, _ = check_directional(f, params, grads)
    worst = max(reports, key=lambda r: r.worst)
    return _check("deep_lvm_gradient", "000",
                  "d log N(x; sigmoid(Az+c), diag exp sigmoid(Bz+d)) / d(A,B,c,d,z)",
                  max(worst.worst, directional), GRAD, REL,
                  _per_tensor(reports) + f"; directional {directional:.1e}")


def deep_lvm_marginal(xp=np, n_samples=20000):
    """p(x) = E_{z~N(0,I)} p(x|z): the Monte Carlo average (1/S) sum_s p(x|z_s) behind
    ``log_marginal`` (log-mean-exp) against Gauss-Hermite quadrature over a 1-D latent."""
    model = DeepLVM.random(x_dim=2, z_dim=1, scale=1.5, seed=2, device=_device(xp))
    x = np.array([[0.5, 0.5], [0.0, 1.0], [1.5, -1.0], [-2.0, 2.5], [3.0, 3.0]])
    z = np.random.default_rng(5).standard_normal((n_samples, 1))
    lik = np.exp(as_numpy(model.pairwise_log_prob(xp.asarray(x), xp.asarray(z))))     # (5, S)
    estimate, se = _mean_and_se(lik, axis=1)
    log_est = as_numpy(model.log_marginal(xp.asarray(x), z=xp.asarray(z)))
    t, w = _hermite()
    exact = np.exp(as_numpy(model.pairwise_log_prob(xp.asarray(x), xp.asarray(t[:, None])))) @ w
    zs = _z_scores(estimate, exact, se)
    same = _max_rel(np.exp(log_est), estimate)
    return _check("deep_lvm_marginal", "000", "p(x) = E_{z~N(0,I)} p(x|z) ~ (1/S) sum_s p(x|z_s)",
                  zs.max(), z_bound(zs.size), ZSCORE,
                  f"{zs.size} points, S = {n_samples}; log-mean-exp vs plain mean {same:.1e}",
                  extra_ok=same < EXACT)


# =======================================================================================
# Note 001: ln p(X) = L(q) + KL(q || p(Z|X))
# =======================================================================================
def decomposition_discrete(xp=np, n_q=20):
    """ln p(X) = L(q) + KL(q || p(Z|X)) for arbitrary q over the labels of a mixture, with
    L(q) <= ln p(X), and L = ln p(X) (KL = 0) when q is the posterior p(Z|X)."""
    model = _mixture(xp)
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
    return _check("decomposition_discrete", "001",
                  "ln p(X) = L(q) + KL(q||p(Z|X));  L <= ln p, = at q = p(Z|X)",
                  max(max(errors), at_post), EXACT, REL,
                  f"{n_q} random q: identity {max(errors):.1e}, all L < ln p: {bounded}; "
                  f"q = posterior: |L - ln p| / |ln p| = {at_post:.1e}", extra_ok=bounded)


def em_decomposition(xp=np, n_iter=15):
    """Along EM on a mixture: ln p(X) = L(q, theta) + KL(q || p(Z|X, theta)) after every
    step, KL = 0 right after each E-step, and ln p(X) never decreases."""
    model = _mixture(xp)
    x, _ = model.sample(500, make_rng(7, _device(xp)))
    _, history = fit_em(x, 3, "full", n_iter=n_iter, seed=1, reg_covar=0.0)
    identity = max(abs(h.log_lik - h.lower_bound - h.kl) / abs(h.log_lik) for h in history)
    e_steps = max(abs(h.kl) / abs(h.log_lik) for h in history if h.stage == "E")
    lls = [h.log_lik for h in history]
    monotone = all(b >= a - EXACT * abs(a) for a, b in zip(lls, lls[1:]))
    kl_m = [h.kl for h in history if h.stage == "M"]
    return _check("em_decomposition", "001",
                  "EM: ln p = L + KL at every step; KL = 0 after E; ln p non-decreasing",
                  max(identity, e_steps), EXACT, REL,
                  f"{n_iter} iterations: identity {identity:.1e}, E-step KL {e_steps:.1e}, "
                  f"ln p {lls[0]:.2f} -> {lls[-1]:.2f} monotone: {monotone}; KL after M-steps "
                  f"{max(kl_m):.2e} .. {min(kl_m):.2e}", extra_ok=monotone)


def _linear_gaussian(xp, orthogonal=False):
    """x_dim 4, z_dim 2; with ``orthogonal`` W has orthogonal columns, so that p(z|x) is diagonal."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((4, 2))
    if orthogonal:
        W = np.linalg.qr(W)[0] * np.array([1.5, 0.7])
    return LinearGaussian(xp.asarray(W), xp.asarray(rng.standard_normal(4)), 0.6)


def decomposition_linear_gaussian(xp=np, n_q=20):
    """ln p(x) = L(q) + KL(q || p(z|x)) for arbitrary diagonal Gaussian q, with ln p(x) from
    N(b, W W^T + s^2 I), L in closed form and KL to the exact Gaussian posterior; L <= ln p,
    with equality at q = p(z|x) (W with orthogonal columns, so the posterior is diagonal)."""
    model = _linear_gaussian(xp)
    rng = np.random.default_rng(9)
    x = xp.asarray(rng.normal(0.0, 2.0, (10, 4)))
    log_p = model.log_marginal(x)
    errors, bounded = [], True
    for _ in range(n_q):
        mu = xp.asarray(rng.normal(0.0, 1.0, (10, 2)))
        logvar = xp.asarray(rng.normal(-1.0, 1.0, (10, 2)))
        L, kl = model.elbo(x, mu, logvar), model.kl_to_posterior(x, mu, logvar)
        errors.append(_max_rel(log_p, L + kl))
        bounded &= bool((L < log_p).all()) and bool((kl > 0).all())
    ortho = _linear_gaussian(xp, orthogonal=True)
    m, S = ortho.posterior(x)
    logvar_post = xp.broadcast_to(xp.log(xp.diag(S)), m.shape)
    at_post = _max_rel(ortho.elbo(x, m, logvar_post), ortho.log_marginal(x))
    return _check("decomposition_linear_gaussian", "001",
                  "ln p(x) = L(q) + KL(q||p(z|x)), p(z|x) = N(S W^T (x-b)/s^2, (I + W^T W/s^2)^-1)",
                  max(max(errors), at_post), EXACT, REL,
                  f"{n_q} random diagonal q: identity {max(errors):.1e}, all L < ln p: {bounded}; "
                  f"q = posterior: L vs ln p {at_post:.1e}", extra_ok=bounded)


def elbo_kl_form(xp=np):
    """L(q) = E_q[log p(x|z)] - KL(q || p(z)) equals its definition E_q[log p(x,z) - log q(z)]
    = E_q[log p(x|z)] + E_q[log p(z)] + H[q], every term in closed form (linear-Gaussian).
    (Note 001 ends with "+ KL(q(Z) || p(Z))"; the sign is minus, since
    sum_Z q ln(p(Z)/q(Z)) = -KL(q || p).)"""
    model = _linear_gaussian(xp)
    rng = np.random.default_rng(10)
    x, mu = xp.asarray(rng.normal(0, 2, (10, 4))), xp.asarray(rng.normal(0, 1, (10, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (10, 2)))
    err = _max_rel(model.elbo(x, mu, logvar), model.elbo_definition(x, mu, logvar))
    return _check("elbo_kl_form", "001", "E_q[log p(x,z) - log q(z)] = E_q[log p(x|z)] - KL(q||p(z))",
                  err, EXACT, REL,
                  f"10 rows, closed-form cross-entropy and entropy vs closed-form KL: {err:.1e}")


def elbo_monte_carlo(xp=np, n_samples=20000):
    """The closed-form L(q) = E_q[log p(x|z)] - KL(q || p(z)) against the Monte Carlo average
    of its definition, log p(x, z) - log q(z) at z = mu + exp(logvar/2) eps (linear-Gaussian)."""
    model = _linear_gaussian(xp)
    rng = np.random.default_rng(11)
    x, mu = xp.asarray(rng.normal(0, 2, (6, 4))), xp.asarray(rng.normal(0, 1, (6, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (6, 2)))
    eps = xp.asarray(rng.standard_normal((n_samples, 6, 2)))
    estimate, se = _mean_and_se(as_numpy(model.elbo_samples(x, mu, logvar, eps)))
    zs = _z_scores(estimate, model.elbo(x, mu, logvar), se)
    return _check("elbo_monte_carlo", "001", "L(q) = E_q[log p(x,z) - log q(z)] ~ mean over z ~ q",
                  zs.max(), z_bound(zs.size), ZSCORE, f"{zs.size} rows, S = {n_samples} samples each")


# =======================================================================================
# Notes 002-003: the VAE's pieces
# =======================================================================================
def reparameterization_moments(xp=np, n=20000, reparameterize=D.reparameterize):
    """z = mu + exp(logvar/2) eps with eps ~ N(0, I) has mean mu and variance exp(logvar).

    logvar is kept away from 0 (where variance and standard deviation coincide), so using
    exp(logvar) as the standard deviation (variance exp(2 logvar)) is caught."""
    mu = np.array([[0.5, -1.0, 2.0, 0.0]])
    logvar = np.array([[-2.0, -0.7, 0.8, 1.5]])
    eps = np.random.default_rng(12).standard_normal((n, 1, 4))
    z = as_numpy(reparameterize(xp.asarray(mu), xp.asarray(logvar), xp.asarray(eps)))[:, 0]
    zs_mean = _z_scores(*_swap(_mean_and_se(z), mu[0]))
    zs_var = _z_scores(*_swap(_mean_and_se((z - z.mean(axis=0)) ** 2), np.exp(logvar[0])))
    zs = np.concatenate([zs_mean, zs_var])
    return _check("reparameterization_moments", "002",
                  "z = mu + exp(logvar/2) eps  =>  E z = mu, Var z = exp(logvar)",
                  zs.max(), z_bound(zs.size), ZSCORE,
                  f"n = {n}; worst |z| of the means {zs_mean.max():.2f}, of the variances {zs_var.max():.2f}")


def reparameterization_gradient(xp=np, backward=D.reparameterize_backward):
    """Backward of z = mu + exp(logvar/2) eps with eps frozen, L = 3 samples:
    dmu = sum_l dz_l,  dlogvar = sum_l dz_l eps_l exp(logvar/2) / 2."""
    rng = np.random.default_rng(13)
    mu, logvar = xp.asarray(rng.standard_normal((4, 3))), xp.asarray(rng.standard_normal((4, 3)))
    eps, G = xp.asarray(rng.standard_normal((3, 4, 3))), xp.asarray(rng.standard_normal((3, 4, 3)))
    dmu, dlogvar = backward(G, logvar, eps)
    f = lambda: float((G * D.reparameterize(mu, logvar, eps)).sum())  # noqa: E731
    reports = check_gradients(f, {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})
    worst = max(r.worst for r in reports)
    return _check("reparameterization_gradient", "002",
                  "dmu = sum_l dz_l,  dlogvar = sum_l dz_l eps_l sigma / 2",
                  worst, GRAD, REL, _per_tensor(reports))


def expected_log_likelihood_gradient(xp=np):
    """The closed-form E_q[log p(x|z)] of the linear-Gaussian model, differentiated by hand
    with respect to mu, logvar, W and b, against central differences."""
    model = _linear_gaussian(xp)
    rng = np.random.default_rng(14)
    x, mu = xp.asarray(rng.normal(0, 2, (5, 4))), xp.asarray(rng.normal(0, 1, (5, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (5, 2)))
    dmu, dlogvar, dW, db = model.expected_log_likelihood_grad(x, mu, logvar)
    f = lambda: float(model.expected_log_likelihood(x, mu, logvar).sum())  # noqa: E731
    reports = check_gradients(f, {"mu": mu, "logvar": logvar, "W": model.W, "b": model.b},
                              {"mu": dmu, "logvar": dlogvar, "W": dW, "b": db})
    return _check("expected_log_likelihood_gradient", "003",
                  "d/d(mu,logvar,W,b) of -(|x-W mu-b|^2 + sum_j v_j |W_j|^2) / 2s^2",
                  max(r.worst for r in reports), GRAD, REL, _per_tensor(reports))


def pathwise_gradient(xp=np, n_samples=40000, n_batches=40):
    """d/dtheta E_q[log p(x|z)] = E_eps[d/dtheta log p(x | mu + sigma eps)] (the
    reparameterization gradient) for theta = (mu, logvar, W, b) of the linear-Gaussian model,
    against the analytic gradient of the closed-form expectation.

    The pathwise estimate chains log p(x|z)'s gradient dz through the reparameterization's
    backward. Its standard error comes from ``n_batches`` independent batch means, so the
    bound is Student-t's rather than the normal one."""
    model = _linear_gaussian(xp)
    rng = np.random.default_rng(15)
    x, mu = xp.asarray(rng.normal(0, 2, (2, 4))), xp.asarray(rng.normal(0, 1, (2, 2)))
    logvar = xp.asarray(rng.normal(-1, 1, (2, 2)))
    per = n_samples // n_batches
    batches = []
    for _ in range(n_batches):
        eps = xp.asarray(rng.standard_normal((per, 2, 2)))
        z = D.reparameterize(mu, logvar, eps).reshape(per * 2, 2)
        dz, dW, db = model.log_likelihood_grad(xp.broadcast_to(x, (per, 2, 4)).reshape(per * 2, 4), z)
        dmu, dlogvar = D.reparameterize_backward(dz.reshape(per, 2, 2), logvar, eps)
        batches.append(np.concatenate([as_numpy(a).ravel() / per for a in (dmu, dlogvar, dW, db)]))
    estimate, se = _mean_and_se(np.stack(batches))
    exact = np.concatenate([as_numpy(a).ravel() for a in model.expected_log_likelihood_grad(x, mu, logvar)])
    zs = _z_scores(estimate, exact, se)
    return _check("pathwise_gradient", "003",
                  "d/dtheta E_q[log p(x|z)] = E_eps[d/dtheta log p(x|mu + sigma eps)]",
                  zs.max(), z_bound(zs.size, dof=n_batches - 1), ZSCORE,
                  f"{zs.size} coordinates (mu, logvar, W, b), S = {n_samples} in {n_batches} batch "
                  f"means (Student-t bound, {n_batches - 1} degrees of freedom)")


def kl_closed_form(xp=np, kl=D.kl_standard_normal):
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
    return _check("kl_closed_form", "003", "-KL(q||p) = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)",
                  err, EXACT, REL, f"4 dimensions vs numerical integration: {closed:.12f} vs {total:.12f}")


def kl_monte_carlo(xp=np, n_samples=20000):
    """The closed-form KL(q || N(0, I)) against the Monte Carlo average of
    log q(z) - log p(z) over z ~ q (the definition of KL)."""
    rng = np.random.default_rng(16)
    mu, logvar = rng.normal(0, 1, (5, 3)), rng.normal(0, 1, (5, 3))
    eps = xp.asarray(rng.standard_normal((n_samples, 5, 3)))
    mu_x, logvar_x = xp.asarray(mu), xp.asarray(logvar)
    z = D.reparameterize(mu_x, logvar_x, eps)
    log_ratio = D.gaussian_log_density(z, mu_x, logvar_x) - D.standard_normal_log_density(z)
    estimate, se = _mean_and_se(as_numpy(log_ratio))
    zs = _z_scores(estimate, D.kl_standard_normal(mu_x, logvar_x), se)
    return _check("kl_monte_carlo", "003", "KL(q||p) = E_q[log q(z) - log p(z)] ~ mean over z ~ q",
                  zs.max(), z_bound(zs.size), ZSCORE, f"{zs.size} rows of 3 dimensions, S = {n_samples}")


def kl_gradient(xp=np, grad=D.kl_standard_normal_grad):
    """dKL/dmu = mu,  dKL/dlogvar = (exp(logvar) - 1) / 2, against central differences."""
    rng = np.random.default_rng(17)
    mu, logvar = xp.asarray(rng.standard_normal((4, 3))), xp.asarray(rng.standard_normal((4, 3)))
    dmu, dlogvar = grad(mu, logvar)
    f = lambda: float(D.kl_standard_normal(mu, logvar).sum())  # noqa: E731
    reports = check_gradients(f, {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})
    return _check("kl_gradient", "003", "dKL/dmu = mu,  dKL/dlogvar = (exp(logvar) - 1) / 2",
                  max(r.worst for r in reports), GRAD, REL, _per_tensor(reports))


def gaussian_nll(xp=np):
    """-log p(x|z) = sum_j [1/2 log(2 pi sigma_j^2) + (x_j - mu_j)^2 / (2 sigma_j^2)] (in nats,
    with the 2 pi), against scipy.stats.norm.logpdf summed over dimensions."""
    rng = np.random.default_rng(18)
    x, mu, logvar = rng.normal(0, 1, (8, 5)), rng.uniform(0, 1, (8, 5)), rng.normal(-1, 1.5, (8, 5))
    ours = as_numpy(D.gaussian_log_density(xp.asarray(x), xp.asarray(mu), xp.asarray(logvar)))
    ref = scipy.stats.norm.logpdf(x, mu, np.exp(logvar / 2)).sum(axis=1)
    err = _max_rel(ours, ref)
    return _check("gaussian_nll", "003",
                  "-log N(x; mu, sigma^2) = sum_j 1/2 log 2 pi sigma_j^2 + (x_j-mu_j)^2 / 2 sigma_j^2",
                  err, EXACT, REL, f"8 rows of 5 dimensions vs scipy.stats.norm: {err:.1e}")


def gaussian_nll_gradient(xp=np, grad=D.gaussian_log_density_grad):
    """d/dmu = (x - mu)/sigma^2, d/dlogvar = ((x - mu)^2/sigma^2 - 1)/2, d/dx = -(x - mu)/sigma^2
    of log N(x; mu, diag(exp(logvar))), against central differences."""
    rng = np.random.default_rng(19)
    x, mu, logvar = (xp.asarray(rng.standard_normal((4, 5))) for _ in range(3))
    dmu, dlogvar, dx = grad(x, mu, logvar)
    f = lambda: float(D.gaussian_log_density(x, mu, logvar).sum())  # noqa: E731
    reports = check_gradients(f, {"x": x, "mu": mu, "logvar": logvar},
                              {"x": dx, "mu": dmu, "logvar": dlogvar})
    return _check("gaussian_nll_gradient", "003",
                  "d log N / dmu = (x-mu)/sigma^2,  d/dlogvar = ((x-mu)^2/sigma^2 - 1)/2",
                  max(r.worst for r in reports), GRAD, REL, _per_tensor(reports))


def least_squares(xp=np):
    """With a constant variance sigma^2 the Gaussian NLL is least squares up to constants:
    -log p(x|z) - |x - mu|^2 / (2 sigma^2) = D/2 log(2 pi sigma^2) for every mu."""
    rng = np.random.default_rng(20)
    sigma2 = 0.3
    x, mu = rng.normal(0, 1, (10, 6)), rng.normal(0, 2, (10, 6))
    logvar = np.full_like(x, math.log(sigma2))
    nll = -as_numpy(D.gaussian_log_density(xp.asarray(x), xp.asarray(mu), xp.asarray(logvar)))
    rest = nll - ((x - mu) ** 2).sum(axis=1) / (2 * sigma2)
    err = _max_rel(rest, np.full(10, 3 * math.log(2 * math.pi * sigma2)))
    return _check("least_squares", "003",
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
    ours_b = as_numpy(D.bernoulli_log_likelihood(xp.asarray(binary), xp.asarray(logits)))
    ours_g = as_numpy(D.bernoulli_log_likelihood(xp.asarray(grey), xp.asarray(logits)))
    err_b = _max_rel(ours_b, scipy.stats.bernoulli.logpmf(binary, p).sum(axis=1))
    err_g = _max_rel(ours_g, (grey * np.log(p) + (1 - grey) * np.log1p(-p)).sum(axis=1))
    big = xp.asarray(np.array([[1e4, -1e4, 1e4, -1e4]], dtype=np.float32))
    x32 = xp.asarray(np.array([[1.0, 0.0, 0.0, 1.0]], dtype=np.float32))
    extreme = as_numpy(D.bernoulli_log_likelihood(x32, big))
    err_x = _max_rel(extreme, [-2e4]) if np.isfinite(extreme).all() else math.inf
    return _check("bernoulli_nll", "003",
                  "-log Bern(x; sigmoid(l)) = softplus(l) - x l", max(err_b, err_g, err_x),
                  EXACT, REL, f"binary vs scipy {err_b:.1e}, grey vs cross-entropy {err_g:.1e}, "
                  f"float32 logits +-1e4: {extreme[0]:.1f} (exact -20000)")


def bernoulli_nll_gradient(xp=np, grad=D.bernoulli_log_likelihood_grad):
    """d(-log p(x|l))/dl = sigmoid(l) - x, against central differences in float64, and
    exact (0 or -+1) in float32 at logits +-1e4."""
    rng = np.random.default_rng(22)
    logits = xp.asarray(rng.normal(0, 3, (4, 6)))
    x = xp.asarray(rng.random((4, 6)))
    dnll = -grad(x, logits)
    f = lambda: -float(D.bernoulli_log_likelihood(x, logits).sum())  # noqa: E731
    (report,) = check_gradients(f, {"logits": logits}, {"logits": dnll})
    big = xp.asarray(np.array([[1e4, -1e4, 1e4, -1e4]], dtype=np.float32))
    x32 = xp.asarray(np.array([[1.0, 0.0, 0.0, 1.0]], dtype=np.float32))
    extreme = -as_numpy(grad(x32, big))[0]
    ok = bool(np.array_equal(extreme, [0.0, 0.0, 1.0, -1.0]))
    return _check("bernoulli_nll_gradient", "003", "d(-log Bern(x; sigmoid(l)))/dl = sigmoid(l) - x",
                  report.worst, GRAD, REL, f"float64 vs central differences {report.worst:.1e}; "
                  f"float32 at +-1e4: {extreme.tolist()} (exact [0, 0, 1, -1]): {ok}", extra_ok=ok)


# =======================================================================================
# The implementation: layers, the whole VAE, optimizers
# =======================================================================================
def _module_errors(layer, x, G):
    """Worst relative errors of dx and of every parameter gradient of f = sum(G * layer(x))."""
    layer.forward(x)
    dx = layer.backward(G)
    grads = {**{k: g.copy() for k, g in layer.gradients().items()}, "x": dx}
    f = lambda: float((G * layer.forward(x)).sum())  # noqa: E731
    return check_gradients(f, {**layer.parameters(), "x": x}, grads)


def layer_backward(xp=np):
    """Every layer's backward against central differences of f = sum(G * layer(x)): Linear
    (dW = x^T G, db = sum G, dx = G W^T), each activation (dx = G f'(a)), and an MLP of
    each activation. ReLU's inputs are kept at least 0.1 from its kink."""
    device = _device(xp)
    rng = np.random.default_rng(23)
    x = xp.asarray(rng.standard_normal((5, 4)))
    away = xp.asarray(np.sign(rng.standard_normal((5, 4))) * rng.uniform(0.1, 2.0, (5, 4)))
    G3, G4 = xp.asarray(rng.standard_normal((5, 3))), xp.asarray(rng.standard_normal((5, 4)))
    worst = {}
    lin = Linear(4, 3, init="pytorch", rng=rng, dtype="float64", device=device)
    worst["Linear"] = max(r.worst for r in _module_errors(lin, x, G3))
    for name, cls in ACTIVATIONS.items():
        worst[cls.__name__] = max(r.worst for r in _module_errors(cls(), away if name == "relu" else x, G4))
    for act in ("tanh", "sigmoid", "softplus", "relu"):
        mlp = MLP([4, 6, 3], activation=act, init="pytorch", rng=np.random.default_rng(24),
                  dtype="float64", device=device)
        worst[f"MLP({act})"] = max(r.worst for r in _module_errors(mlp, x, G3))
    return _check("layer_backward", "-", "dW = x^T dy, db = sum dy, dx = dy W^T;  da = dy f'(a)",
                  max(worst.values()), GRAD, REL, ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


def vae_gradient(xp=np):
    """d/dtheta of -1/B sum_b [1/L sum_l log p(x_b|z_lb) - KL_b] + lambda/2 |theta|^2 for every
    parameter tensor of the encoder and decoder, Bernoulli and Gaussian decoders, L = 2, eps
    frozen, by manual backprop against central differences (and one directional check)."""
    device = _device(xp)
    rng = np.random.default_rng(25)
    x = xp.asarray(rng.uniform(0.05, 0.95, (6, 5)))
    eps = xp.asarray(rng.standard_normal((2, 6, 2)))
    parts, worst = [], 0.0
    for likelihood in ("bernoulli", "gaussian"):
        model = VAE(5, z_dim=2, hidden_dims=(4,), likelihood=likelihood, activation="tanh",
                    weight_decay=0.05, dtype="float64", device=device, seed=5)
        model.loss_and_grads(x, eps=eps)
        grads = {k: g.copy() for k, g in model.gradients().items()}
        f = lambda: model.loss(x, eps=eps)  # noqa: E731
        reports = check_gradients(f, model.parameters(), grads)
        directional, _, _ = check_directional(f, model.parameters(), grads)
        w = max(max(r.worst for r in reports), directional)
        worst = max(worst, w)
        parts.append(f"{likelihood}: {len(reports)} tensors, worst {w:.1e}")
    return _check("vae_gradient", "003", "d(-ELBO + lambda/2 |theta|^2)/dtheta, every tensor, eps frozen",
                  worst, GRAD, REL, "; ".join(parts))


def _reference_trajectory(kind, theta, a, steps, lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8):
    """Plain-Python steps on f(theta) = sum_i a_i theta_i^2 / 2 (gradient a_i theta_i), coordinate
    by coordinate, in the textbook form (Adam with explicit bias corrections)."""
    out = []
    for th, ai in zip(theta, a):
        v = h = m = s = 0.0
        for t in range(1, steps + 1):
            g = ai * th
            if kind == "sgd":
                v = momentum * v + g
                th -= lr * v
            elif kind == "adagrad":
                h += g * g
                th -= lr * g / (math.sqrt(h) + eps)
            else:
                m = betas[0] * m + (1 - betas[0]) * g
                s = betas[1] * s + (1 - betas[1]) * g * g
                m_hat, s_hat = m / (1 - betas[0] ** t), s / (1 - betas[1] ** t)
                th -= lr * m_hat / (math.sqrt(s_hat) + eps)
        out.append(th)
    return np.array(out)


def optimizers(xp=np, steps=5):
    """SGD with momentum, Adagrad and Adam, updating in place, against the same steps written
    out in plain Python on f(theta) = sum_i a_i theta_i^2 / 2."""
    theta0 = np.array([1.0, -2.0, 0.5, 3.0])
    a = np.array([1.0, 0.5, 4.0, 0.1])
    worst = {}
    for kind, cls, kwargs in (("sgd", SGD, dict(lr=0.1, momentum=0.9)), ("adagrad", Adagrad, dict(lr=0.5)),
                              ("adam", Adam, dict(lr=0.1))):
        theta, grad = xp.asarray(theta0.copy()), xp.zeros(4)
        opt = cls([("theta", theta, grad)], **kwargs)
        for _ in range(steps):
            grad[...] = xp.asarray(a) * theta
            opt.step()
        worst[kind] = _max_rel(theta, _reference_trajectory(kind, theta0, a, steps, kwargs["lr"]))
    return _check("optimizers", "-", "SGD: v = m v + g; Adagrad: h += g^2; Adam: m_hat/(sqrt(v_hat)+eps)",
                  max(worst.values()), EXACT, REL,
                  f"{steps} steps: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


CHECKS = (joint_factorization, ancestral_sampling, mog_log_likelihood, deep_lvm_gradient, deep_lvm_marginal,
          decomposition_discrete, em_decomposition, decomposition_linear_gaussian, elbo_kl_form,
          elbo_monte_carlo, reparameterization_moments, reparameterization_gradient,
          expected_log_likelihood_gradient, pathwise_gradient, kl_closed_form, kl_monte_carlo, kl_gradient,
          gaussian_nll, gaussian_nll_gradient, least_squares, bernoulli_nll, bernoulli_nll_gradient,
          layer_backward, vae_gradient, optimizers)
from .wake_sleep import CHECKS as WAKE_SLEEP_CHECKS  # noqa: E402  (it uses the helpers above)
CHECKS += WAKE_SLEEP_CHECKS
from .hmc import CHECKS as HMC_CHECKS  # noqa: E402  (posterior sampling, appendices D and E)
CHECKS += HMC_CHECKS


def run_all(xp=np):
    """Every check, in the order of the notes."""
    return [check(xp) for check in CHECKS]


def format_table(checks):
    """A plain-text table of checks: name, note, worst error, threshold, verdict."""
    lines = [f"{'check':<34}{'note':<6}{'worst':>10}{'threshold':>11}  {'measure':<22}{'ok':>4}"]
    for c in checks:
        lines.append(f"{c.name:<34}{c.note:<6}{c.worst:>10.2e}{c.threshold:>11.2e}  {c.measure:<22}"
                     f"{'yes' if c.passed else 'NO':>4}")
    return "\n".join(lines)
