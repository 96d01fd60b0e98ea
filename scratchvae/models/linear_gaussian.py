"""A linear-Gaussian latent model: the one continuous case where everything is exact.

    z ~ N(0, I_Z),   x | z ~ N(W z + b, s^2 I_D)        (probabilistic PCA, Tipping & Bishop 1999)

Marginal and posterior are Gaussian in closed form (Bishop 2006, sections 2.3.3 and 12.2):

    p(x)   = N(x; b, W W^T + s^2 I)
    p(z|x) = N(z; m, Sigma),   Sigma = (I + W^T W / s^2)^{-1},   m = Sigma W^T (x - b) / s^2

For a diagonal Gaussian q(z) = N(mu, diag(v)), v = exp(logvar), every term of the ELBO is
closed form, because E_q[(x - W z - b)^2] only needs the mean and variance of z:

    E_q[log p(x|z)] = -D/2 log(2 pi s^2) - 1/(2 s^2) [|x - W mu - b|^2 + sum_j v_j |W_:j|^2]
    L(q) = E_q[log p(x|z)] - KL(q || p(z))                          (note 003)
         = E_q[log p(x, z) - log q(z)]                               (its definition, note 001)
    ln p(x) = L(q) + KL(q || p(z|x))                                  for every q

so the decomposition of note 001 can be checked to round-off. Rows are examples: ``x`` is
(N, D), ``mu`` and ``logvar`` (N, Z), and ``W z`` is written ``z @ W.T``.
"""
import math

import numpy as np

from .. import validation
from ..backend import get_array_module
from ..distributions import (LOG_2PI, gaussian_log_density, gaussian_log_density_grad, kl_standard_normal,
                             reparameterize, standard_normal_log_density)
from .mixture import mvn_log_density


class LinearGaussian:
    """z ~ N(0, I), x | z ~ N(W z + b, s^2 I).  ``W`` (D, Z), ``b`` (D,), ``s`` > 0."""

    def __init__(self, W, b, s):
        validation.float_array("W", W, ndim=2)
        validation.float_array("b", b, shape=(W.shape[0],))
        if validation.real_number("s", s) <= 0:
            raise ValueError(f"s (the noise standard deviation) must be a positive number, got {s!r}")
        self.W, self.b, self.s = W, b, float(s)

    @classmethod
    def random(cls, x_dim=3, z_dim=2, s=0.5, seed=0):
        """A model with W and b drawn from N(0, 1) on the host, in float64."""
        rng = np.random.default_rng(validation.seed("seed", seed))
        x_dim = validation.positive_int("x_dim", x_dim)
        z_dim = validation.positive_int("z_dim", z_dim)
        return cls(rng.standard_normal((x_dim, z_dim)), rng.standard_normal(x_dim), s)

    @property
    def x_dim(self):
        return self.W.shape[0]

    @property
    def z_dim(self):
        return self.W.shape[1]

    def _check(self, x=None, z=None, mu=None, logvar=None):
        if x is not None:
            validation.float_array("x", x, shape=(None, self.x_dim))
        for name, a in (("z", z), ("mu", mu), ("logvar", logvar)):
            if a is not None:
                validation.float_array(name, a, shape=(None if x is None else x.shape[0], self.z_dim))

    # -- the model -----------------------------------------------------------------------
    def log_likelihood(self, x, z):
        """log p(x|z) = log N(x; W z + b, s^2 I), per row."""
        self._check(x, z)
        xp = get_array_module(x, z)
        logvar = xp.full_like(x, 2.0 * math.log(self.s))
        return gaussian_log_density(x, z @ self.W.T + self.b, logvar)

    def log_likelihood_grad(self, x, z):
        """Gradients of sum_n log p(x_n|z_n): with r = (x - W z - b) / s^2,
        dz = W^T r,  dW = sum_n r_n z_n^T,  db = sum_n r_n.  Returns ``(dz, dW, db)``."""
        self._check(x, z)
        xp = get_array_module(x, z)
        dmean, _, _ = gaussian_log_density_grad(x, z @ self.W.T + self.b,
                                                  xp.full_like(x, 2.0 * math.log(self.s)))
        return dmean @ self.W, dmean.T @ z, dmean.sum(axis=0)

    def log_joint(self, x, z):
        """log p(x, z) = log p(x|z) + log N(z; 0, I), per row."""
        return self.log_likelihood(x, z) + standard_normal_log_density(z)

    def marginal(self):
        """p(x) = N(b, C) with C = W W^T + s^2 I: returns ``(b, C)``."""
        xp = get_array_module(self.W)
        return self.b, self.W @ self.W.T + self.s ** 2 * xp.eye(self.x_dim)

    def log_marginal(self, x):
        """ln p(x) = log N(x; b, W W^T + s^2 I), per row."""
        self._check(x)
        mean, cov = self.marginal()
        return mvn_log_density(x, mean, cov)

    def posterior(self, x):
        """p(z|x) = N(m, Sigma): returns ``(m, Sigma)``, m (N, Z) one mean per row, Sigma (Z, Z) shared."""
        self._check(x)
        xp = get_array_module(x, self.W)
        Sigma = xp.linalg.inv(xp.eye(self.z_dim) + self.W.T @ self.W / self.s ** 2)
        return (x - self.b) @ self.W @ Sigma / self.s ** 2, Sigma

    def sample(self, n, rng):
        """Ancestral sampling: z ~ N(0, I), then x = W z + b + s eps. Returns ``(x, z)``."""
        n = validation.positive_int("n", n)
        xp = get_array_module(self.W)
        z = xp.asarray(rng.standard_normal((n, self.z_dim)))
        return z @ self.W.T + self.b + self.s * xp.asarray(rng.standard_normal((n, self.x_dim))), z

    # -- the ELBO for q(z) = N(mu, diag(exp(logvar))) -------------------------------------
    def expected_log_likelihood(self, x, mu, logvar):
        """E_q[log p(x|z)] = -D/2 log(2 pi s^2) - (|x - W mu - b|^2 + sum_j v_j |W_:j|^2) / (2 s^2)."""
        self._check(x, mu=mu, logvar=logvar)
        xp = get_array_module(x, mu, logvar)
        r = x - mu @ self.W.T - self.b
        spread = xp.exp(logvar) @ (self.W * self.W).sum(axis=0)
        return (-0.5 * self.x_dim * (LOG_2PI + 2.0 * math.log(self.s))
                - ((r * r).sum(axis=1) + spread) / (2.0 * self.s ** 2))

    def expected_log_likelihood_grad(self, x, mu, logvar):
        """Gradients of sum_n E_q[log p(x_n|z)] in closed form, with r = x - W mu - b:

            dmu = W^T r / s^2,   dlogvar_j = -v_j |W_:j|^2 / (2 s^2),
            dW = (sum_n r_n mu_n^T - W diag(sum_n v_n)) / s^2,   db = sum_n r_n / s^2

        Returns ``(dmu, dlogvar, dW, db)``."""
        self._check(x, mu=mu, logvar=logvar)
        xp = get_array_module(x, mu, logvar)
        s2 = self.s ** 2
        r = x - mu @ self.W.T - self.b
        v = xp.exp(logvar)
        dlogvar = -v * (self.W * self.W).sum(axis=0) / (2.0 * s2)
        dW = (r.T @ mu - self.W * v.sum(axis=0)) / s2
        return r @ self.W / s2, dlogvar, dW, r.sum(axis=0) / s2

    def elbo(self, x, mu, logvar):
        """L(q) = E_q[log p(x|z)] - KL(q || N(0, I)), per row (the VAE's form)."""
        return self.expected_log_likelihood(x, mu, logvar) - kl_standard_normal(mu, logvar)

    def elbo_definition(self, x, mu, logvar):
        """L(q) = E_q[log p(x, z)] - E_q[log q(z)], per row, term by term in closed form:

            E_q[log p(z)]  = -1/2 sum_j [log 2pi + mu_j^2 + v_j]
            -E_q[log q(z)] =  1/2 sum_j [log 2pi + 1 + logvar_j]      (the entropy of q)
        """
        xp = get_array_module(mu, logvar)
        cross = -0.5 * (LOG_2PI + mu * mu + xp.exp(logvar)).sum(axis=1)
        entropy = 0.5 * (LOG_2PI + 1.0 + logvar).sum(axis=1)
        return self.expected_log_likelihood(x, mu, logvar) + cross + entropy

    def elbo_samples(self, x, mu, logvar, eps):
        """Single-sample estimates log p(x, z) - log q(z) at z = mu + exp(logvar/2) eps,
        for ``eps`` (S, N, Z): an (S, N) array whose mean over S estimates L(q)."""
        self._check(x, mu=mu, logvar=logvar)
        z = reparameterize(mu, logvar, eps)
        S, N = eps.shape[:2]
        zf = z.reshape(S * N, self.z_dim)
        xf = get_array_module(x).broadcast_to(x, (S, *x.shape)).reshape(S * N, self.x_dim)
        log_q = gaussian_log_density(z, mu, logvar).reshape(S * N)
        return (self.log_joint(xf, zf) - log_q).reshape(S, N)

    def kl_to_posterior(self, x, mu, logvar):
        """KL(q || p(z|x)) between N(mu, diag(v)) and N(m, Sigma), per row:

            1/2 [tr(Sigma^{-1} diag v) + (m - mu)^T Sigma^{-1} (m - mu) - Z + log det Sigma - sum_j logvar_j]
        """
        self._check(x, mu=mu, logvar=logvar)
        xp = get_array_module(x, mu, logvar)
        m, Sigma = self.posterior(x)
        P = xp.linalg.inv(Sigma)                # the posterior precision I + W^T W / s^2
        diff = m - mu
        _, log_det_Sigma = xp.linalg.slogdet(Sigma)
        return 0.5 * (xp.exp(logvar) @ xp.diag(P) + ((diff @ P) * diff).sum(axis=1)
                      - self.z_dim + float(log_det_Sigma) - logvar.sum(axis=1))

    def __repr__(self):
        return f"LinearGaussian(x_dim={self.x_dim}, z_dim={self.z_dim}, s={self.s})"
