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
so it settles where the average acceptance equals the target. :func:`tune_step_size_sign` is the
rule of the authors' code for one step shared by many chains (``hmc_step_autotune`` in
``anglepy/hmc.py``): the step is multiplied by a constant factor (1.25) when the chains' mean
acceptance is at or above the target, divided by it when below. :func:`sample` tunes during
burn-in only (``tune="burnin"``: the chain is then exactly invariant for p(z|x) while it samples)
or after every transition (``tune="always"``, as the authors' estimator does): the step then
depends on the chain's recent acceptances, so the chain is only approximately invariant; the
derivation checks measure what that costs on a model whose answer is exact.

Every entry point checks its arguments before it changes anything: latents and momenta must be
finite float arrays of one row per chain, a step size finite and > 0 (one number, or one per
chain), an acceptance target strictly between 0 and 1; the error names the argument.
"""
import math

from .. import validation
from ..backend import get_array_module
from ..distributions import standard_normal_log_density


def decoder_dims(decoder):
    """``(z_dim, x_dim)`` of a scratchvae decoder (its network's first and last sizes; a
    Gaussian decoder outputs a mean and a log-variance per pixel), or None where unknown."""
    sizes = getattr(getattr(decoder, "net", None), "sizes", None)
    if not sizes:
        return None
    out = sizes[-1] // 2 if type(decoder).__name__ == "GaussianDecoder" else sizes[-1]
    return sizes[0], out


def decoder_log_joint(decoder, x):
    """``target(z) -> (log p(x, z), d/dz log p(x, z))`` per row, for a scratchvae decoder and
    data ``x`` (B, D): row b of z is a latent for x_b.

    The decoder's backward with d(objective)/d(log p(x_b|z_b)) = 1 returns d/dz log p(x|z);
    the prior N(0, I) adds -z. (The backward also overwrites the decoder's weight gradients:
    callers that train the decoder compute those afterwards.) ``x`` must be finite with the
    decoder's number of pixels; each ``z`` given to the target must be (B, z_dim)."""
    validation.float_array("x", x, ndim=2)
    dims = decoder_dims(decoder)
    if dims is not None and x.shape[1] != dims[1]:
        raise ValueError(f"x must have one column per pixel of the decoder ({dims[1]}), "
                         f"got shape {tuple(x.shape)}")
    xp = get_array_module(x)
    ones = xp.ones(x.shape[0], dtype=x.dtype)

    def target(z):
        if z.ndim != 2 or z.shape[0] != x.shape[0] or (dims is not None and z.shape[1] != dims[0]):
            want = f"({x.shape[0]}, {dims[0] if dims else 'z_dim'})"
            raise ValueError(f"z must have shape {want}: one latent per row of x, got {tuple(z.shape)}")
        decoder.forward(z)
        log_lik = decoder.log_prob(x)
        dz = decoder.backward(ones)
        return log_lik + standard_normal_log_density(z), dz - z

    return target


def _per_chain(step_size):
    """True for one step per chain (a 1-D array), False for one number shared by all."""
    return getattr(step_size, "ndim", 0) == 1


def check_chains(name, z):
    """``z`` must be a finite float array (B, Z) of at least one chain (row)."""
    validation.float_array(name, z, ndim=2)
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one chain (one row per chain) of at least one "
                         f"latent, got shape {tuple(z.shape)}")
    return z


def check_step_size(step_size, n_chains):
    """A step size: one finite number > 0, or a 1-D float array of ``n_chains`` of them."""
    if hasattr(step_size, "ndim") and step_size.ndim > 0:
        if step_size.ndim != 1 or step_size.shape[0] != n_chains:
            raise ValueError(f"step_size must be one number or one per chain ({n_chains},), "
                             f"got shape {tuple(step_size.shape)}")
        validation.float_array("step_size", step_size, ndim=1)
        if not bool((step_size > 0).all()):
            raise ValueError("step_size must be > 0 for every chain")
        return step_size
    if hasattr(step_size, "ndim"):                     # a 0-d array or NumPy scalar
        step_size = step_size.item()
    return validation.positive_number("step_size", step_size)


def _evaluate(target, z):
    """``target(z)``, with its output checked once: log p (B,) and its gradient (B, Z)."""
    logp, grad = target(z)
    if tuple(logp.shape) != (z.shape[0],) or tuple(grad.shape) != tuple(z.shape):
        raise ValueError(f"target must return log p of shape ({z.shape[0]},) and a gradient of shape "
                         f"{tuple(z.shape)}, got {tuple(logp.shape)} and {tuple(grad.shape)}")
    return logp, grad


def leapfrog(target, z, p, step_size, n_steps, grad=None):
    """``n_steps`` leapfrog steps of size ``step_size`` (a number or a (B,) array) from (z, p)
    for the potential U = -log target. Returns ``(z, p, logp, grad)`` at the end point, with
    ``logp`` and ``grad`` of the target there; ``grad`` at the start may be passed to save one
    evaluation. Inputs are not modified."""
    n_steps = validation.positive_int("n_steps", n_steps)
    check_chains("z", z)
    validation.float_array("p", p, shape=tuple(z.shape))
    step_size = check_step_size(step_size, z.shape[0])
    e = step_size[:, None] if _per_chain(step_size) else step_size
    if grad is None:
        _, grad = _evaluate(target, z)
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
    min(1, exp(H_old - H_new)) per chain (:func:`hmc_accept_prob`), which :func:`tune_step_size`
    uses. Arguments are checked before any random number is drawn: ``z`` finite (B, Z),
    ``step_size`` one finite number > 0 or one per chain, ``jitter`` in [0, 1), ``logp`` (B,)
    and ``grad`` (B, Z) if given."""
    n_leapfrog = validation.positive_int("n_leapfrog", n_leapfrog)
    check_chains("z", z)
    B = z.shape[0]
    step_size = check_step_size(step_size, B)
    if not 0 <= validation.real_number("jitter", jitter) < 1:
        raise ValueError(f"jitter must lie in [0, 1), got {jitter}")
    if rng is None or not hasattr(rng, "standard_normal"):
        raise TypeError(f"rng must be a random generator (scratchvae.make_rng(seed, device)), got {rng!r}")
    xp = get_array_module(z)
    if logp is None or grad is None:
        logp, grad = _evaluate(target, z)
    elif tuple(logp.shape) != (B,) or tuple(grad.shape) != tuple(z.shape):
        raise ValueError(f"logp and grad must have shapes ({B},) and {tuple(z.shape)} (the target at z), "
                         f"got {tuple(logp.shape)} and {tuple(grad.shape)}")
    e = step_size * (1.0 + jitter * (2.0 * rng.random(B, dtype=z.dtype) - 1.0))
    p0 = rng.standard_normal(z.shape, dtype=z.dtype)
    z1, p1, logp1, grad1 = leapfrog(target, z, p0, e, n_leapfrog, grad)
    accept_prob = hmc_accept_prob(logp, p0, logp1, p1)
    accept = rng.random(B, dtype=z.dtype) < accept_prob
    keep = accept[:, None]
    return (xp.where(keep, z1, z), xp.where(accept, logp1, logp), xp.where(keep, grad1, grad),
            accept_prob)


def check_target_accept(target_accept):
    """An acceptance rate to tune towards: a finite number strictly between 0 and 1."""
    if not 0 < validation.real_number("target_accept", target_accept) < 1:
        raise ValueError(f"target_accept must lie strictly between 0 and 1, got {target_accept}")
    return float(target_accept)


STEP_RANGE = (1e-8, 1e8)   # a tuned step is kept inside this range (a guard; never reached in practice)


def _clip(step_size):
    if _per_chain(step_size):
        return get_array_module(step_size).clip(step_size, *STEP_RANGE)
    return min(max(float(step_size), STEP_RANGE[0]), STEP_RANGE[1])


def tune_step_size(step_size, accept_prob, target_accept=0.9, rate=0.5):
    """log e <- log e + rate (accept_prob - target_accept).

    Per chain when ``step_size`` is an array of one step per chain; with a single number, the
    mean acceptance over the chains moves it (one step size shared by all). The expected change
    is zero exactly where the acceptance probability averages ``target_accept``.

    With ``target_accept=0.5`` and ``rate=2.04`` this is the per-chain rule of the authors'
    estimator (``hmc_step_autotune_indiv`` in ``anglepy/hmc.py``: the step times exp(1.02 (2a - 1))
    after every transition, a = 1 if accepted, else 0; here a is the acceptance probability,
    whose mean is the same and whose noise is smaller)."""
    if not _per_chain(step_size):
        return _clip(float(step_size) * math.exp(rate * (float(accept_prob.mean()) - target_accept)))
    return _clip(step_size * get_array_module(accept_prob).exp(rate * (accept_prob - target_accept)))


def tune_step_size_sign(step_size, accept_prob, target_accept=0.9, factor=1.25):
    """The authors' rule for one step shared by all chains (``hmc_step_autotune`` in
    ``anglepy/hmc.py``, used by their batch MCEM): the step times ``factor`` when the mean
    acceptance over the chains is at or above ``target_accept``, divided by it when below.
    (Their factor is min(1.25, 1.02^min(100, B)) for B chains: 1.25 from 12 chains on.)"""
    if float(accept_prob.mean()) >= target_accept:
        return _clip(float(step_size) * factor)
    return _clip(float(step_size) / factor)


TUNE_WHEN = ("burnin", "always")


def sample(target, z0, n_samples, n_burnin=100, n_leapfrog=10, step_size=0.1, target_accept=0.9,
           rng=None, tune_rate=0.5, tune="burnin"):
    """Run one HMC chain per row of ``z0`` (B, Z): ``n_burnin`` transitions, then ``n_samples``
    transitions, each kept. One step size per chain starts at ``step_size`` and is tuned towards
    ``target_accept`` by :func:`tune_step_size` (``tune_rate``) after each burn-in transition
    (``tune="burnin"``: frozen while sampling) or after every transition (``tune="always"``, the
    authors' estimator).

    Returns a dict: ``z`` (n_samples, B, Z), ``logp`` (n_samples, B) the target at each sample,
    ``step_size`` (B,) the steps at the end, ``accept_rate`` the mean acceptance probability while
    sampling."""
    n_samples = validation.positive_int("n_samples", n_samples)
    if isinstance(n_burnin, bool) or not isinstance(n_burnin, int) or n_burnin < 0:
        raise ValueError(f"n_burnin must be an integer >= 0, got {n_burnin!r}")
    n_leapfrog = validation.positive_int("n_leapfrog", n_leapfrog)
    target_accept = check_target_accept(target_accept)
    step_size = validation.positive_number("step_size", step_size)
    tune_rate = validation.non_negative_number("tune_rate", tune_rate)
    validation.choice("tune", tune, TUNE_WHEN)
    check_chains("z0", z0)
    if rng is None or not hasattr(rng, "standard_normal"):
        raise ValueError("rng must be a random generator (scratchvae.make_rng(seed, device))")
    xp = get_array_module(z0)
    B = z0.shape[0]
    e = xp.full(B, step_size, dtype=z0.dtype)
    z, (logp, grad) = z0, _evaluate(target, z0)
    for _ in range(n_burnin):
        z, logp, grad, a = hmc_step(target, z, e, n_leapfrog, rng, logp, grad)
        e = tune_step_size(e, a, target_accept, tune_rate)
    zs, logps, accept = [], [], 0.0
    for _ in range(n_samples):
        z, logp, grad, a = hmc_step(target, z, e, n_leapfrog, rng, logp, grad)
        if tune == "always":
            e = tune_step_size(e, a, target_accept, tune_rate)
        zs.append(z)
        logps.append(logp)
        accept += float(a.mean())
    return {"z": xp.stack(zs), "logp": xp.stack(logps), "step_size": e, "accept_rate": accept / n_samples}
