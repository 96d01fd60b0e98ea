"""Mixture of Gaussians: the shallow latent-variable model of note 000, fitted by EM (note 001).

The model, with K components in D dimensions:

    z ~ Categorical(pi),   x | z = k ~ N(mu_k, Sigma_k)
    p(x, z = k) = pi_k N(x; mu_k, Sigma_k)                       (= p(x|z) p(z))
    p(x)        = sum_k pi_k N(x; mu_k, Sigma_k)                 (computed by logsumexp)
    p(z = k | x) = p(x, z = k) / p(x)                            (the responsibilities)

For any distribution q(Z) over the latent labels of a data set X (note 001):

    ln p(X) = L(q, theta) + KL(q || p(Z|X, theta))
    L(q, theta)        = sum_n sum_k q_nk [ln p(x_n, z_n = k) - ln q_nk]
    KL(q || p(Z|X))    = sum_n sum_k q_nk [ln q_nk - ln p(z_n = k | x_n)]  >= 0

EM alternates the two ways of raising L: the E-step sets q to the posterior (KL = 0, so
L = ln p), the M-step maximizes L over theta with q held fixed (ln p rises by at least as
much as L, since KL >= 0 again). :func:`fit_em` records both quantities after each step.

Covariances are ``'full'`` (K, D, D) or ``'diag'`` (K, D) variances. All arrays may be NumPy
or CuPy (EM included: it needs only Cholesky, solve and searchsorted, which both provide).
"""
import math
from collections import namedtuple

import numpy as np

from .. import validation
from ..backend import get_array_module
from ..distributions import LOG_2PI, gaussian_log_density, logsumexp

COVARIANCES = ("full", "diag")


def mvn_log_density(x, mu, cov):
    """log N(x; mu, Sigma) per row of ``x`` (N, D), with a full covariance ``cov`` (D, D):

        -1/2 [D log 2pi + log det Sigma + (x - mu)^T Sigma^{-1} (x - mu)]

    through the Cholesky factor Sigma = C C^T: log det Sigma = 2 sum_i log C_ii and the
    quadratic form is |C^{-1} (x - mu)|^2 (no explicit inverse)."""
    xp = get_array_module(x, mu, cov)
    chol = _cholesky("cov", cov)
    y = xp.linalg.solve(chol, (x - mu).T)                 # (D, N): C^{-1} (x - mu)
    log_det = 2.0 * xp.log(xp.diagonal(chol)).sum()
    return -0.5 * (x.shape[-1] * LOG_2PI + log_det + (y * y).sum(axis=0))


def _cholesky(name, cov):
    """C with C C^T = cov, or a ValueError naming ``name`` when cov is not symmetric positive definite."""
    xp = get_array_module(cov)
    if not bool(xp.allclose(cov, cov.T, rtol=1e-10, atol=1e-12)):
        raise ValueError(f"{name} must be symmetric")
    try:
        chol = xp.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        chol = None
    if chol is None or not bool(xp.isfinite(chol).all()):  # CuPy returns NaN instead of raising
        raise ValueError(f"{name} must be positive definite")
    return chol


def component_log_densities(x, mu, cov):
    """(N, K) matrix of log N(x_n; mu_k, Sigma_k): ``cov`` holds full covariances (K, D, D) or
    the variances of diagonal ones (K, D)."""
    xp = get_array_module(x, mu, cov)
    if cov.ndim == 2:
        return gaussian_log_density(x[:, None, :], mu[None], xp.log(cov)[None])
    return xp.stack([mvn_log_density(x, mu[k], cov[k]) for k in range(mu.shape[0])], axis=1)


def e_step(x, pi, mu, cov):
    """The E-step: the responsibilities r_nk = p(z_n = k | x_n) of K components for the
    points ``x`` (N, D), by Bayes' rule

        r_nk = pi_k N(x_n; mu_k, Sigma_k) / sum_j pi_j N(x_n; mu_j, Sigma_j)

    computed in log space, log r_nk = log p(x_n, z_n = k) - logsumexp_j log p(x_n, z_n = j),
    so that a point far from every component (where each density underflows to 0) still gets
    finite responsibilities. ``pi`` (K,), ``mu`` (K, D), ``cov`` full (K, D, D) or diagonal
    variances (K, D); :func:`component_log_densities` gives log N(x_n; mu_k, Sigma_k).
    Returns r (N, K), each row summing to 1."""
    xp = get_array_module(x, pi, mu, cov)
    log_joint = xp.log(pi) + component_log_densities(x, mu, cov)
    return xp.exp(log_joint - logsumexp(log_joint, axis=1)[:, None])


class GaussianMixture:
    """p(x) = sum_k pi_k N(x; mu_k, Sigma_k).

    Args:
        pi: (K,) mixing proportions, positive, summing to 1.
        mu: (K, D) component means.
        cov: (K, D, D) full covariances, or (K, D) variances of diagonal ones.
    The arrays are kept as given (NumPy or CuPy, float64 recommended).
    """

    def __init__(self, pi, mu, cov):
        validation.float_array("pi", pi, ndim=1)
        K = pi.shape[0]
        validation.float_array("mu", mu, shape=(K, None))
        Dx = mu.shape[1]
        xp = get_array_module(pi, mu, cov)
        if bool((pi <= 0).any()) or abs(float(pi.sum()) - 1.0) > 1e-8:
            raise ValueError(f"pi must be positive and sum to 1, got sum {float(pi.sum())}")
        validation.float_array("cov", cov)
        if cov.shape == (K, Dx, Dx):
            self.covariance = "full"
            self.chol = xp.stack([_cholesky(f"cov[{k}]", cov[k]) for k in range(K)])
        elif cov.shape == (K, Dx):
            self.covariance = "diag"
            if bool((cov <= 0).any()):
                raise ValueError("cov (diagonal variances) must be positive")
            self.chol = None
        else:
            raise ValueError(f"cov must have shape (K, D, D) = ({K}, {Dx}, {Dx}) or (K, D) = "
                             f"({K}, {Dx}); got {tuple(cov.shape)}")
        self.pi, self.mu, self.cov = pi, mu, cov

    @property
    def n_components(self):
        return self.pi.shape[0]

    @property
    def x_dim(self):
        return self.mu.shape[1]

    def _check_x(self, x):
        return validation.float_array("x", x, shape=(None, self.x_dim))

    # -- densities ---------------------------------------------------------------------
    def component_log_density(self, x):
        """(N, K) matrix of log N(x_n; mu_k, Sigma_k)."""
        self._check_x(x)
        return component_log_densities(x, self.mu, self.cov)

    def log_joint(self, x):
        """(N, K) matrix of log p(x_n, z_n = k) = log pi_k + log N(x_n; mu_k, Sigma_k)."""
        xp = get_array_module(x, self.pi)
        return xp.log(self.pi) + self.component_log_density(x)

    def log_prob(self, x):
        """log p(x_n) = logsumexp_k log p(x_n, z_n = k), per row: stays finite far from every
        component, where sum_k pi_k N(x; mu_k, Sigma_k) underflows to 0."""
        return logsumexp(self.log_joint(x), axis=1)

    def log_responsibilities(self, x):
        """(N, K) matrix of log p(z_n = k | x_n) = log p(x_n, k) - log p(x_n)."""
        log_joint = self.log_joint(x)
        return log_joint - logsumexp(log_joint, axis=1)[:, None]

    def responsibilities(self, x):
        """(N, K) matrix r_nk = p(z_n = k | x_n); each row sums to 1 (:func:`e_step`)."""
        self._check_x(x)
        return e_step(x, self.pi, self.mu, self.cov)

    # -- the decomposition of note 001 ---------------------------------------------------
    def _check_q(self, q, n):
        validation.float_array("q", q, shape=(n, self.n_components))
        if bool((q < 0).any()) or not bool(get_array_module(q).allclose(q.sum(axis=1), 1.0, atol=1e-8)):
            raise ValueError("q must be a distribution over the K labels for each row "
                             "(non-negative, rows summing to 1)")

    def lower_bound(self, x, q):
        """L(q, theta) = sum_n sum_k q_nk [ln p(x_n, z_n = k) - ln q_nk]  (with 0 ln 0 = 0)."""
        self._check_q(q, x.shape[0])
        xp = get_array_module(x, q)
        terms = q * (self.log_joint(x) - xp.log(xp.where(q > 0, q, 1.0)))
        return float(xp.where(q > 0, terms, 0.0).sum())

    def kl_to_posterior(self, x, q):
        """KL(q || p(Z|X, theta)) = sum_n sum_k q_nk [ln q_nk - ln p(z_n = k | x_n)]  (>= 0)."""
        self._check_q(q, x.shape[0])
        xp = get_array_module(x, q)
        terms = q * (xp.log(xp.where(q > 0, q, 1.0)) - self.log_responsibilities(x))
        return float(xp.where(q > 0, terms, 0.0).sum())

    # -- moments and sampling ------------------------------------------------------------
    def mean(self):
        """E[x] = sum_k pi_k mu_k."""
        return self.pi @ self.mu

    def covariance_matrix(self):
        """Cov[x] = sum_k pi_k (Sigma_k + mu_k mu_k^T) - E[x] E[x]^T  (law of total covariance)."""
        xp = get_array_module(self.mu)
        cov = self.cov if self.covariance == "full" else xp.stack([xp.diag(c) for c in self.cov])
        second = (self.pi[:, None, None] * (cov + self.mu[:, :, None] * self.mu[:, None, :])).sum(axis=0)
        m = self.mean()
        return second - xp.outer(m, m)

    def sample(self, n, rng):
        """Ancestral sampling: z_n ~ Categorical(pi), then x_n ~ N(mu_z, Sigma_z).

        ``rng`` is a generator from :func:`scratchvae.make_rng` on the device of the
        parameters. Returns ``(x, z)``: (n, D) points and their (n,) component labels."""
        n = validation.positive_int("n", n)
        xp = get_array_module(self.mu)
        u = xp.asarray(rng.random(n))
        # inverse CDF of the categorical; the min() guards against cumsum(pi)[-1] < 1 by round-off
        z = xp.minimum(xp.searchsorted(xp.cumsum(self.pi), u, side="right"), self.n_components - 1)
        eps = xp.asarray(rng.standard_normal((n, self.x_dim)), dtype=self.mu.dtype)
        if self.covariance == "diag":
            return self.mu[z] + xp.sqrt(self.cov[z]) * eps, z
        return self.mu[z] + xp.einsum("nij,nj->ni", self.chol[z], eps), z

    def __repr__(self):
        return f"GaussianMixture(K={self.n_components}, D={self.x_dim}, covariance={self.covariance!r})"


# ---------------------------------------------------------------------------------------
# EM
# ---------------------------------------------------------------------------------------
EMStep = namedtuple("EMStep", ["iteration", "stage", "log_lik", "lower_bound", "kl"])
EMStep.__doc__ = ("ln p(X|theta), L(q, theta) and KL(q || p(Z|X, theta)) after the E-step "
                  "(stage 'E') or the M-step (stage 'M') of one EM iteration.")


def m_step(x, q, covariance="full", reg_covar=1e-6):
    """theta maximizing L(q, theta) for fixed responsibilities q (N, K):

        N_k = sum_n q_nk,   pi_k = N_k / N,   mu_k = sum_n q_nk x_n / N_k,
        Sigma_k = sum_n q_nk (x_n - mu_k)(x_n - mu_k)^T / N_k  [+ reg_covar I]

    ``covariance`` is ``'full'`` (Sigma_k (D, D)) or ``'diag'`` (only the diagonal of each
    Sigma_k, as (K, D) variances). ``reg_covar`` keeps a component that collapses onto one point
    invertible; with ``reg_covar = 0`` this is the exact maximizer, so ln p(X) never decreases.
    Returns the :class:`GaussianMixture` of these parameters."""
    xp = get_array_module(x, q)
    Nk = q.sum(axis=0)
    pi = Nk / x.shape[0]
    mu = (q.T @ x) / Nk[:, None]
    if covariance == "diag":
        var = (q[:, :, None] * (x[:, None, :] - mu[None]) ** 2).sum(axis=0) / Nk[:, None]
        return GaussianMixture(pi, mu, var + reg_covar)
    covs = []
    for k in range(q.shape[1]):
        diff = x - mu[k]
        covs.append((q[:, k, None] * diff).T @ diff / Nk[k] + reg_covar * xp.eye(x.shape[1]))
    return GaussianMixture(pi, mu, xp.stack(covs))


def init_mixture(x, n_components, covariance="full", seed=0):
    """A starting point for EM: K distinct data points as means, the data's (co)variance
    for every component, equal proportions."""
    xp = get_array_module(x)
    K = validation.positive_int("n_components", n_components)
    if K > x.shape[0]:
        raise ValueError(f"n_components must be at most the number of points {x.shape[0]}, got {K}")
    idx = np.random.default_rng(validation.seed("seed", seed)).choice(x.shape[0], K, replace=False)
    mu = x[xp.asarray(idx)]
    centered = x - x.mean(axis=0)
    cov = centered.T @ centered / x.shape[0]
    if covariance == "diag":
        cov = xp.diag(cov)
    return GaussianMixture(xp.full(K, 1.0 / K), mu, xp.stack([cov] * K))


def fit_em(x, n_components, covariance="full", n_iter=50, init=None, seed=0, reg_covar=1e-6):
    """Fit a mixture to ``x`` (N, D) by EM; returns ``(model, history)``.

    ``history`` holds two :class:`EMStep` per iteration: after the E-step (q = posterior,
    so kl = 0 and lower_bound = log_lik) and after the M-step (same q, new theta, so
    log_lik = lower_bound + kl with kl >= 0). ``init`` is a starting
    :class:`GaussianMixture` (default :func:`init_mixture` with ``seed``)."""
    validation.float_array("x", x, ndim=2)
    validation.choice("covariance", covariance, COVARIANCES)
    n_iter = validation.positive_int("n_iter", n_iter)
    if not (math.isfinite(reg_covar) and reg_covar >= 0):
        raise ValueError(f"reg_covar must be a finite number >= 0, got {reg_covar}")
    model = init_mixture(x, n_components, covariance, seed) if init is None else init
    history = []
    for t in range(1, n_iter + 1):
        q = model.responsibilities(x)                                     # E-step
        history.append(EMStep(t, "E", float(model.log_prob(x).sum()),
                              model.lower_bound(x, q), model.kl_to_posterior(x, q)))
        model = m_step(x, q, covariance, reg_covar)                       # M-step
        history.append(EMStep(t, "M", float(model.log_prob(x).sum()),
                              model.lower_bound(x, q), model.kl_to_posterior(x, q)))
    return model, history
