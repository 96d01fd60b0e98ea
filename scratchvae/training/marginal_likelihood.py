"""The marginal likelihood p(x) from posterior samples: the estimator of Kingma & Welling (2013), appendix D.

For one datapoint x:

    1. draw z_1..z_S from the posterior p(z|x) with HMC (:mod:`scratchvae.models.hmc`);
    2. fit a density q(z) to them (here a Gaussian with full covariance);
    3. draw S new values z_s from the posterior and take

           1 / p(x) ~ (1/S) sum_s q(z_s) / p(x, z_s),     p(x, z) = p(z) p(x|z)

Step 3 holds because E_{p(z|x)}[q(z) / p(x, z)] = int q(z) / p(x) dz = 1 / p(x) for any
normalized q. The ratio's variance is E_p[q^2 / p(z|x)^2] / p(x)^2 - 1/p(x)^2, finite only if
q(z)^2 / p(z|x) is integrable: q must have lighter tails than the posterior. For a Gaussian
posterior N(m, Sigma) and q = N(m, C) that means C < 2 Sigma, so a Gaussian fitted to posterior
samples is safe, and a heavy-tailed q (a Student-t, a kernel estimate with a wide bandwidth)
would not be. (The authors' code, `hmc_est.py` in the public anglepy repository, likewise
fits q to the first half of one chain's samples and averages over the second half.)

Everything is in log space: with a_s = log q(z_s) - log p(x, z_s),

    log p(x) ~ -log mean_s exp(a_s)        (log-mean-exp; exp(a_s) is around e^{+100} on MNIST)

and its standard error, by the delta method, is std_s(exp(a_s)) / (sqrt(S) mean_s exp(a_s)),
computed after subtracting max_s a_s. The samples come from a Markov chain, so neighbours
are correlated and this error is a lower bound on the true one.

The paper found the estimate unreliable above a few latent dimensions; asking for it with
more than 5 without ``high_dim_ok=True`` warns.
"""
import math
import warnings

import numpy as np

from .. import validation
from ..backend import as_numpy, device_of, get_array_module, make_rng
from ..distributions import LOG_2PI, log_mean_exp
from ..models import hmc

MAX_RELIABLE_Z = 5


def fit_gaussian(z, ridge=1e-6):
    """Mean (B, Z) and covariance (B, Z, Z) of samples ``z`` (S, B, Z), one Gaussian per row b
    (divisor S - 1), with ``ridge`` times the average variance (plus 1e-12) added to the diagonal
    so that a chain that rarely moved still gives an invertible covariance."""
    xp = get_array_module(z)
    S, _, Z = z.shape
    if S < 2:
        raise ValueError(f"fitting a Gaussian needs at least 2 samples per chain, got {S}")
    mean = z.mean(axis=0)
    d = (z - mean).transpose(1, 2, 0)                               # (B, Z, S)
    cov = d @ d.transpose(0, 2, 1) / (S - 1)
    added = ridge * xp.trace(cov, axis1=1, axis2=2) / Z + 1e-12
    return mean, cov + added[:, None, None] * xp.eye(Z, dtype=z.dtype)


def gaussian_log_density_full(z, mean, cov):
    """log N(z; mean_b, cov_b) for ``z`` (S, B, Z): an (S, B) array.

        -1/2 [Z log 2pi + log det cov + (z - mean)^T cov^{-1} (z - mean)]"""
    xp = get_array_module(z, mean, cov)
    Z = z.shape[-1]
    d = (z - mean).transpose(1, 2, 0)                               # (B, Z, S)
    maha = (d * xp.linalg.solve(cov, d)).sum(axis=1)                # (B, S)
    _, logdet = xp.linalg.slogdet(cov)
    return (-0.5 * (Z * LOG_2PI + logdet[:, None] + maha)).T


def log_marginal_from_samples(z_fit, z_est, log_joint_est, ridge=1e-6):
    """Steps 2 and 3 of appendix D for every row b: fit q to ``z_fit`` (S1, B, Z), evaluate it at
    the independent samples ``z_est`` (S2, B, Z) whose log p(x, z) is ``log_joint_est`` (S2, B);
    ``ridge`` as in :func:`fit_gaussian`.

    Returns ``(log_px, stderr)``, each (B,)."""
    mean, cov = fit_gaussian(z_fit, ridge)
    a = gaussian_log_density_full(z_est, mean, cov) - log_joint_est          # log q - log p(x, z)
    log_px = -log_mean_exp(a, axis=0)
    xp = get_array_module(a)
    w = xp.exp(a - a.max(axis=0))                                          # in (0, 1]
    S = a.shape[0]
    stderr = w.std(axis=0, ddof=1) / (math.sqrt(S) * w.mean(axis=0))
    return log_px, stderr


def check_latent_size(z_dim, high_dim_ok=False):
    if z_dim > MAX_RELIABLE_Z and not high_dim_ok:
        warnings.warn(f"z_dim = {z_dim}: the posterior-sampling estimate of p(x) becomes unreliable "
                      f"above about {MAX_RELIABLE_Z} latent dimensions (Kingma & Welling 2013, "
                      "Figure 3); pass high_dim_ok=True to ask for it anyway", stacklevel=3)


def log_marginal_hmc(target, z0, n_samples=50, n_burnin=100, n_leapfrog=4, step_size=0.1,
                     target_accept=0.9, seed=0, high_dim_ok=False):
    """The appendix-D estimate of log p(x) for every row, from one HMC chain per row started at
    ``z0`` (B, Z) on ``target`` (``z -> (log p(x, z), d/dz log p(x, z))``).

    After ``n_burnin`` tuning transitions, ``n_samples`` samples fit q and ``n_samples`` further
    samples of the same chain estimate 1/p(x). Returns a dict of host arrays and numbers:
    ``log_px`` (B,), ``stderr`` (B,), ``accept_rate``, ``step_size`` (B,)."""
    n_samples = validation.positive_int("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (a Gaussian is fitted to them), got {n_samples}")
    validation.float_array("z0", z0, ndim=2)
    check_latent_size(z0.shape[1], high_dim_ok)
    rng = make_rng(seed, device_of(z0))
    run = hmc.sample(target, z0, 2 * n_samples, n_burnin=n_burnin, n_leapfrog=n_leapfrog,
                     step_size=step_size, target_accept=target_accept, rng=rng)
    z, logp = run["z"], run["logp"]
    log_px, stderr = log_marginal_from_samples(z[:n_samples], z[n_samples:], logp[n_samples:])
    return {"log_px": as_numpy(log_px).astype("float64"), "stderr": as_numpy(stderr).astype("float64"),
            "accept_rate": run["accept_rate"], "step_size": as_numpy(run["step_size"])}


def best_prior_draw(target, x, z_dim, n_draws, rng):
    """For each row of ``x``, the best of ``n_draws`` draws z ~ N(0, I) by log p(x, z): a start
    for the chains near the posterior's bulk, found without an encoder (the same for every method)."""
    xp = get_array_module(x)
    best_z = best = None
    for _ in range(n_draws):
        z = rng.standard_normal((x.shape[0], z_dim), dtype=x.dtype)
        logp, _ = target(z)
        if best is None:
            best_z, best = z, logp
        else:
            better = logp > best
            best_z, best = xp.where(better[:, None], z, best_z), xp.where(better, logp, best)
    return best_z


def better_start(target, z0, guess):
    """Per row, ``guess`` where its log p(x, z) beats that of ``z0``, else ``z0``."""
    better = target(guess)[0] > target(z0)[0]
    return get_array_module(z0).where(better[:, None], guess, z0)


def estimate_log_marginal(decoder, z_dim, x, n_samples=50, n_burnin=100, n_leapfrog=4,
                          target_accept=0.9, n_init=64, batch_size=1000, seed=0, high_dim_ok=False,
                          z_start=None):
    """log p(x) per row of ``x`` for a model with a N(0, I) prior on ``z_dim`` latents and the
    scratchvae ``decoder`` (a VAE's ``model.decoder``, or an MCEM model's). The chains start
    at the best of ``n_init`` prior draws, or at the row of ``z_start`` (N, Z) where that is
    better by log p(x, z) (a model's own guess: an encoder's mean, MCEM's kept z). A sharp
    posterior with several modes can hold a chain in a minor mode for good, and the estimate
    then falls short of log p(x): a start in the main mode matters. Rows go through in batches
    of ``batch_size``.

    Returns a dict: ``log_px`` (N,) host array, ``stderr`` (N,), ``accept_rate`` (mean)."""
    z_dim = validation.positive_int("z_dim", z_dim)
    n_init = validation.positive_int("n_init", n_init)
    batch_size = validation.positive_int("batch_size", batch_size)
    validation.positive_int("n_samples", n_samples)
    validation.positive_int("n_leapfrog", n_leapfrog)
    hmc.check_target_accept(target_accept)
    validation.float_array("x", x, ndim=2)
    if z_start is not None:
        validation.float_array("z_start", z_start, shape=(x.shape[0], z_dim))
    check_latent_size(z_dim, high_dim_ok)
    rng = make_rng(seed, device_of(x))
    out, err, acc = [], [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        target = hmc.decoder_log_joint(decoder, xb)
        z0 = best_prior_draw(target, xb, z_dim, n_init, rng)
        if z_start is not None:
            z0 = better_start(target, z0, z_start[start:start + batch_size].astype(xb.dtype))
        r = log_marginal_hmc(target, z0, n_samples, n_burnin, n_leapfrog, 0.1, target_accept,
                             seed=seed + 1 + start, high_dim_ok=True)
        out.append(r["log_px"])
        err.append(r["stderr"])
        acc.append(r["accept_rate"] * xb.shape[0])
    return {"log_px": np.concatenate(out), "stderr": np.concatenate(err),
            "accept_rate": float(sum(acc) / x.shape[0])}
