"""Note 002: the reparameterization trick, z = mu + sigma eps with eps ~ N(0, I).

Its two claims: z so drawn has the distribution N(mu, sigma^2), and the gradient flows back
to mu and logvar through it, with eps held fixed.
"""
import numpy as np

from ..backend import as_numpy
from ..distributions import reparameterize, reparameterize_backward
from ..gradcheck import check_gradients
from .checks import GRAD, REL, ZSCORE, make_check, mean_z_scores, per_tensor, z_bound


def reparameterization_moments(xp=np, n=20000, reparameterize=reparameterize):
    """z = mu + exp(logvar/2) eps with eps ~ N(0, I) has mean mu and variance exp(logvar).

    logvar is kept away from 0 (where variance and standard deviation coincide), so using
    exp(logvar) as the standard deviation (variance exp(2 logvar)) is caught."""
    mu = np.array([[0.5, -1.0, 2.0, 0.0]])
    logvar = np.array([[-2.0, -0.7, 0.8, 1.5]])
    eps = np.random.default_rng(12).standard_normal((n, 1, 4))
    z = as_numpy(reparameterize(xp.asarray(mu), xp.asarray(logvar), xp.asarray(eps)))[:, 0]
    zs_mean = mean_z_scores(z, mu[0])
    zs_var = mean_z_scores((z - z.mean(axis=0)) ** 2, np.exp(logvar[0]))
    zs = np.concatenate([zs_mean, zs_var])
    return make_check("reparameterization_moments", "002",
                      "z = mu + exp(logvar/2) eps  =>  E z = mu, Var z = exp(logvar)",
                      zs.max(), z_bound(zs.size), ZSCORE,
                      f"n = {n}; worst |z| of the means {zs_mean.max():.2f}, "
                      f"of the variances {zs_var.max():.2f}")


def reparameterization_gradient(xp=np, backward=reparameterize_backward):
    """Backward of z = mu + exp(logvar/2) eps with eps frozen, S = 3 samples:
    dmu = sum_s dz_s,  dlogvar = sum_s dz_s eps_s exp(logvar/2) / 2."""
    rng = np.random.default_rng(13)
    mu, logvar = xp.asarray(rng.standard_normal((4, 3))), xp.asarray(rng.standard_normal((4, 3)))
    eps, dz = xp.asarray(rng.standard_normal((3, 4, 3))), xp.asarray(rng.standard_normal((3, 4, 3)))
    dmu, dlogvar = backward(dz, logvar, eps)
    f = lambda: float((dz * reparameterize(mu, logvar, eps)).sum())  # noqa: E731
    reports = check_gradients(f, {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})
    worst = max(r.worst for r in reports)
    return make_check("reparameterization_gradient", "002",
                      "dmu = sum_s dz_s,  dlogvar = sum_s dz_s eps_s sigma / 2",
                      worst, GRAD, REL, per_tensor(reports))


CHECKS = (reparameterization_moments, reparameterization_gradient)
