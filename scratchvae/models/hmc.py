"""Hybrid (Hamiltonian) Monte Carlo on the latent z of a trained decoder: p(z|x) sampled for real.

The posterior p(z|x) = p(x, z) / p(x) is known up to its normalizer p(x), and so is its
gradient in z, which is all HMC needs (Duane et al. 1987; Neal 2011):

    log p(x, z)        = log p(x|z) + log N(z; 0, I)
    d/dz log p(x, z)   = d/dz log p(x|z) - z

The first term is what the decoder's backward already computes (the VAE sends the same
gradient on to the encoder), so :func:`decoder_log_joint` asks the decoder for it with an
upstream gradient of one per row.

One HMC transition, for a potential U(z) = -log p(x, z) and a momentum p ~ N(0, I):

    H(z, p) = U(z) + |p|^2 / 2                         (energy)
    leapfrog, n times with step e:
        p <- p - e/2 dU(z);  z <- z + e p;  p <- p - e/2 dU(z)
    accept (z', p') with probability min(1, exp(H(z, p) - H(z', p')))

The leapfrog map is reversible (negate p, run it again, and you are back) and preserves
volume, so the Metropolis test with the energy alone leaves p(z|x) invariant; the energy
error it corrects shrinks as e^2. Every function here runs many independent chains at once:
``z`` is (B, Z), one row per chain (one chain per datapoint), and the step size may be one
number or one per chain.

The step size is tuned towards a target acceptance rate by :func:`tune_step_size`: the log of
the step moves up when a chain's acceptance probability is above the target, down when below,
so it settles where the average acceptance equals the target. Tuning while sampling would break
the chain's invariance, so :func:`sample` tunes during burn-in only.
"""
import math

from .. import validation
from ..backend import get_array_module
from ..distributions import standard_normal_log_density


def decoder_log_joint(decoder, x):
    """``target(z) -> (log p(x, z), d/dz log p(x, z))`` per row, for a scratchvae decoder and
    data ``x`` (B, D): row b of z is a latent for x_b.

    The decoder's backward with d(objective)/d(log p(x_b|z_b)) = 1 returns d/dz log p(x|z);
    the prior N(0, I) adds -z. (The backward also overwrites the decoder's weight gradients:
    callers that train the decoder compute those afterwards.)"""
    xp = get_array_module(x)

    def target(z):
        decoder.forward(z)
        log_lik = decoder.log_prob(x)
        dz = decoder.backward(xp.ones(x.shape[0], dtype=x.dtype))
        return log_lik + standard_normal_log_density(z), dz - z

    return target


def _per_chain(step_size):
    """True for one step per chain (a 1-D array), False for one number shared by all."""
    return getattr(step_size, "ndim", 0) == 1


def leapfrog(target, z, p, step_size, n_steps, grad=None):
    """``n_steps`` leapfrog steps of size ``step_size`` (a number or a (B,) array) from (z, p)
    for the potential U = -log target. Returns ``(z, p, logp, grad)`` at the end point, with
    ``logp`` and ``grad`` of the target there; ``grad`` at the start may be passed to save one
    evaluation. Inputs are not modified."""
    n_steps = validation.positive_int("n_steps", n_steps)
    e = step_size[:, None] if _per_chain(step_size) else step_size
    if grad is None:
        _, grad = target(z)
    p = p + 0.5 * e * grad                     # half step of momentum (dU = -grad)
    for i in range(n_steps):
        z = z + e * p                          # full step of position
        logp, grad = target(z)
        if i < n_steps - 1:
            p = p + e * grad                   # two half steps of momentum fused
    p = p + 0.5 * e * grad                     # closing half step
    return z, p, logp, grad


def energy(logp, p):
    """H(z, p) = -log p(x, z) + |p|^2 / 2, per row."""
    return -logp + 0.5 * (p * p).sum(axis=-1)


def hmc_accept_prob(logp0, p0, logp1, p1):
    """The Metropolis acceptance probability of a leapfrog proposal, per chain:

        a = min(1, exp(H(z, p) - H(z', p'))),   H(z, p) = -log p(x, z) + |p|^2 / 2

    from the target ``logp0`` (B,) and momentum ``p0`` (B, Z) at the start, and ``logp1``, ``p1``
    at the end of the trajectory. The energy falls (a = 1) or rises a little (a < 1): exact
    dynamics would keep it, and the leapfrog's error is what the test corrects. A trajectory
    that diverged (a non-finite energy difference) is rejected: a = 0. Computed as
    exp(min(H0 - H1, 0)), which cannot overflow."""
    xp = get_array_module(logp0, p0, logp1, p1)
    log_ratio = energy(logp0, p0) - energy(logp1, p1)
    log_ratio = xp.where(xp.isfinite(log_ratio), log_ratio, -xp.inf)   # a diverged path is rejected
    return xp.exp(xp.minimum(log_ratio, 0.0))


def hmc_step(target, z, step_size, n_leapfrog, rng, logp=None, grad=None, jitter=0.1):
    """One HMC transition of every chain (row of ``z``).

    A fresh momentum p ~ N(0, I), ``n_leapfrog`` leapfrog steps, and the Metropolis test.
    The step of each transition is ``step_size`` times a factor drawn uniformly from
    [1 - jitter, 1 + jitter]: a fixed step and count can make the trajectory return to its
    start (a Gaussian posterior with e * n near a multiple of its period), which a random
    factor, drawn independently of z, prevents without disturbing the invariant distribution.

    Returns ``(z, logp, grad, accept_prob)``: the new state (rejected chains keep the old),
    the target and its gradient there (pass them to the next call), and
    min(1, exp(H_old - H_new)) per chain (:func:`hmc_accept_prob`), which :func:`tune_step_size` uses."""
    n_leapfrog = validation.positive_int("n_leapfrog", n_leapfrog)
    xp = get_array_module(z)
    B = z.shape[0]
    if logp is None or grad is None:
        logp, grad = target(z)
    e = step_size * (1.0 + jitter * (2.0 * rng.random(B, dtype=z.dtype) - 1.0))
    p0 = rng.standard_normal(z.shape, dtype=z.dtype)
    z1, p1, logp1, grad1 = leapfrog(target, z, p0, e, n_leapfrog, grad)
    accept_prob = hmc_accept_prob(logp, p0, logp1, p1)
    accept = rng.random(B, dtype=z.dtype) < accept_prob
    keep = accept[:, None]
    return (xp.where(keep, z1, z), xp.where(accept, logp1, logp), xp.where(keep, grad1, grad),
            accept_prob)


def check_target_accept(target_accept):
    if not 0 < validation.real_number("target_accept", target_accept) < 1:
        raise ValueError(f"target_accept must lie strictly between 0 and 1, got {target_accept}")
    return float(target_accept)


def tune_step_size(step_size, accept_prob, target_accept=0.9, rate=0.5):
    """log e <- log e + rate (accept_prob - target_accept).

    Per chain when ``step_size`` is an array of one step per chain; with a single number, the
    mean acceptance over the chains moves it (one step size shared by all). The expected change
    is zero exactly where the acceptance probability averages ``target_accept``."""
    if not _per_chain(step_size):
        return float(step_size) * math.exp(rate * (float(accept_prob.mean()) - target_accept))
    return step_size * get_array_module(accept_prob).exp(rate * (accept_prob - target_accept))


def sample(target, z0, n_samples, n_burnin=100, n_leapfrog=10, step_size=0.1, target_accept=0.9,
           rng=None, tune_rate=0.5):
    """Run one HMC chain per row of ``z0`` (B, Z): ``n_burnin`` transitions that tune one step
    size per chain towards ``target_accept``, then ``n_samples`` transitions with the step
    frozen, each kept.

    Returns a dict: ``z`` (n_samples, B, Z), ``logp`` (n_samples, B) the target at each sample,
    ``step_size`` (B,) the tuned steps, ``accept_rate`` the mean acceptance probability while
    sampling."""
    n_samples = validation.positive_int("n_samples", n_samples)
    if isinstance(n_burnin, bool) or not isinstance(n_burnin, int) or n_burnin < 0:
        raise ValueError(f"n_burnin must be an integer >= 0, got {n_burnin!r}")
    n_leapfrog = validation.positive_int("n_leapfrog", n_leapfrog)
    target_accept = check_target_accept(target_accept)
    if not validation.real_number("step_size", step_size) > 0:
        raise ValueError(f"step_size must be a positive number, got {step_size}")
    validation.float_array("z0", z0, ndim=2)
    if z0.shape[0] < 1:
        raise ValueError("z0 must hold at least one chain (one row per chain), got 0 rows")
    if rng is None:
        raise ValueError("rng must be a random generator (scratchvae.make_rng(seed, device))")
    xp = get_array_module(z0)
    B = z0.shape[0]
    e = xp.full(B, step_size, dtype=z0.dtype)
    z, (logp, grad) = z0, target(z0)
    for _ in range(n_burnin):
        z, logp, grad, a = hmc_step(target, z, e, n_leapfrog, rng, logp, grad)
        e = tune_step_size(e, a, target_accept, tune_rate)
    zs, logps, accept = [], [], 0.0
    for _ in range(n_samples):
        z, logp, grad, a = hmc_step(target, z, e, n_leapfrog, rng, logp, grad)
        zs.append(z)
        logps.append(logp)
        accept += float(a.mean())
    return {"z": xp.stack(zs), "logp": xp.stack(logps), "step_size": e, "accept_rate": accept / n_samples}
