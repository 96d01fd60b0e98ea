"""The marginal likelihood p(x) from posterior samples: the estimator of Kingma & Welling (2013), appendix D.

For one datapoint x:

    1. draw z_1..z_S from the posterior p(z|x) with HMC (:mod:`scratchvae.models.hmc`);
    2. fit a density q(z) to them;
    3. draw S new values z_s from the posterior and take

           1 / p(x) ~ (1/S) sum_s q(z_s) / p(x, z_s),     p(x, z) = p(z) p(x|z)

Step 3 holds because E_{p(z|x)}[q(z) / p(x, z)] = int q(z) / p(x) dz = 1 / p(x) for any
normalized q. The ratio's variance is E_p[q^2 / p(z|x)^2] / p(x)^2 - 1/p(x)^2, finite only if
q(z)^2 / p(z|x) is integrable: far from the samples q must fall off faster than the posterior
does. For a Gaussian posterior N(m, Sigma) and a q whose far tails are those of a Gaussian with
covariance C, that means C < 2 Sigma (every eigenvalue of Sigma^-1 C below 2).

Two densities q (``q=``), both fitted to the first half of one chain's samples and evaluated on
the second half, as the authors' code does (``hmc_est.py`` of the public anglepy repository):

    "gaussian"  a Gaussian with the samples' mean and full covariance (tails: C = the samples'
                covariance, close to Sigma);
    "kde"       the authors' default (``method='kde2'``): a Gaussian kernel density estimate,
                kernels of covariance f^2 C centred on the samples, the bandwidth factor f chosen
                among Scott's factor n^(-1/(Z+4)) times e^((i-5)/2), i = 0..9, by the log-density
                that a kernel estimate of the half's second half gives its first half; with one
                latent, or fewer than 4 samples per latent dimension, a diagonal Gaussian instead
                (as there). Its far tails are those of one kernel, f^2 C: a factor f above
                sqrt(2) makes the ratio's variance infinite.

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
from ..distributions import LOG_2PI, log_mean_exp, logsumexp
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


Q_DENSITIES = ("gaussian", "kde")
KDE_FACTORS = tuple(math.exp((i - 5) / 2) for i in range(10))   # times Scott's factor (authors' kde2)
KDE_MIN_PER_DIM = 4     # fewer fitting samples per latent dimension: a diagonal Gaussian instead


def _cholesky(cov):
    """Lower Cholesky factors (B, Z, Z) and log det (B,) of covariances (B, Z, Z)."""
    xp = get_array_module(cov)
    L = xp.linalg.cholesky(cov)
    logdet = 2.0 * xp.log(xp.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    return L, logdet


def _whiten(z, L):
    """L_b^-1 z_sb for every sample s and row b: (S, B, Z) -> (S, B, Z)."""
    xp = get_array_module(z)
    return xp.linalg.solve(L, z.transpose(1, 2, 0)).transpose(2, 0, 1)


def _kernel_sums(z_eval, centers, L, factors):
    """log sum_j exp(-|L^-1 (z - c_j)|^2 / (2 f^2)) for each evaluation point, row and factor:
    (F, S, B) for ``factors`` (F,) or (F, B)."""
    xp = get_array_module(z_eval)
    a, c = _whiten(z_eval, L), _whiten(centers, L)                 # (S, B, Z), (n, B, Z)
    d2 = ((a[:, None] - c[None]) ** 2).sum(axis=-1)                  # (S, n, B)
    f2 = xp.asarray(factors, dtype=d2.dtype) ** 2
    f2 = f2[:, None, None, None] if f2.ndim == 1 else f2[:, None, None, :]
    return logsumexp(-d2[None] / (2.0 * f2), axis=2)                 # (F, S, B)


def fit_kde(z, ridge=1e-6):
    """The authors' kernel density estimate (``kde2``) for every row b of samples ``z`` (n, B, Z):
    the bandwidth factor chosen per row among Scott's factor n^(-1/(Z+4)) times
    ``KDE_FACTORS`` by the summed log-density that a kernel estimate fitted to the last
    n - n//2 samples (with their covariance) gives the first n//2, then kernels of covariance
    f^2 C on all n samples, C their covariance (``ridge`` as in :func:`fit_gaussian`).

    Returns a dict: ``centers`` (n, B, Z), ``cov`` C (B, Z, Z), ``factor`` f (B,),
    ``kernel_cov`` f^2 C (B, Z, Z)."""
    xp = get_array_module(z)
    n, B, Z = z.shape
    if n < 4:
        raise ValueError(f"a kernel density estimate with a chosen bandwidth needs at least 4 samples "
                         f"per chain, got {n}")
    scott = n ** (-1.0 / (Z + 4))
    factors = scott * xp.asarray(KDE_FACTORS, dtype=z.dtype)
    h = n // 2
    _, C2 = fit_gaussian(z[h:], ridge)
    L2, logdet2 = _cholesky(C2)
    sums = _kernel_sums(z[:h], z[h:], L2, factors)                     # (F, h, B)
    scores = (sums.sum(axis=1) - Z * xp.log(factors)[:, None] * h      # sum over the h points of log q_f
              - 0.5 * h * logdet2[None])                               # (constants dropped: same for every f)
    factor = factors[xp.argmax(scores, axis=0)]                        # (B,)
    _, C = fit_gaussian(z, ridge)
    return {"centers": z, "cov": C, "factor": factor, "kernel_cov": (factor ** 2)[:, None, None] * C}


def kde_log_density(z, kde):
    """log of the kernel density estimate ``kde`` (from :func:`fit_kde`) at ``z`` (S, B, Z): (S, B).

        log q(z) = log (1/n) sum_j N(z; c_j, f^2 C)"""
    xp = get_array_module(z)
    n, _, Z = kde["centers"].shape
    L, logdet = _cholesky(kde["cov"])
    f = kde["factor"]
    sums = _kernel_sums(z, kde["centers"], L, f[None])[0]            # (S, B)
    return sums - math.log(n) - 0.5 * (Z * LOG_2PI + logdet + 2 * Z * xp.log(f))[None]


def fit_q(z_fit, q="gaussian", ridge=1e-6):
    """Fit the density ``q`` ("gaussian" or "kde", see the module's docstring) to the samples
    ``z_fit`` (n, B, Z) of each row. Returns a dict: ``kind`` (what was fitted: "gaussian", "kde",
    or "diagonal gaussian" where the authors' kde falls back to one), ``log_density`` (a function
    of z (S, B, Z) -> (S, B)), ``tail_cov`` (B, Z, Z) the covariance of q's far tails (the
    Gaussian's own; one kernel's for "kde"), and ``factor`` (B,) the KDE's bandwidth factors."""
    validation.choice("q", q, Q_DENSITIES)
    n, _, Z = z_fit.shape
    if q == "kde" and Z > 1 and n // Z >= KDE_MIN_PER_DIM:
        kde = fit_kde(z_fit, ridge)
        return {"kind": "kde", "log_density": lambda z: kde_log_density(z, kde),
                "tail_cov": kde["kernel_cov"], "factor": kde["factor"]}
    mean, cov = fit_gaussian(z_fit, ridge)
    kind = "gaussian"
    if q == "kde":                  # the authors' fallback: one variance per latent dimension
        xp = get_array_module(cov)
        cov = cov * xp.eye(Z, dtype=cov.dtype)
        kind = "diagonal gaussian"
    return {"kind": kind, "log_density": lambda z: gaussian_log_density_full(z, mean, cov),
            "tail_cov": cov, "factor": None}


def log_marginal_from_samples(z_fit, z_est, log_joint_est, ridge=1e-6, q="gaussian", return_q=False):
    """Steps 2 and 3 of appendix D for every row b: fit ``q`` ("gaussian" or "kde") to ``z_fit``
    (S1, B, Z), evaluate it at the samples ``z_est`` (S2, B, Z) whose log p(x, z) is
    ``log_joint_est`` (S2, B); ``ridge`` as in :func:`fit_gaussian`. Computed in float64.

    Returns ``(log_px, stderr)``, each (B,), and the fitted q (:func:`fit_q`) with ``return_q``."""
    validation.choice("q", q, Q_DENSITIES)
    validation.float_array("z_fit", z_fit, ndim=3)
    B, Z = z_fit.shape[1:]
    validation.float_array("z_est", z_est, shape=(None, B, Z))
    validation.float_array("log_joint_est", log_joint_est, shape=(z_est.shape[0], B))
    if z_fit.shape[0] < 2 or z_est.shape[0] < 1:
        raise ValueError(f"z_fit needs at least 2 samples and z_est at least 1, got "
                         f"{z_fit.shape[0]} and {z_est.shape[0]}")
    z_fit, z_est, log_joint_est = (a.astype("float64") for a in (z_fit, z_est, log_joint_est))
    fitted = fit_q(z_fit, q, ridge)
    a = fitted["log_density"](z_est) - log_joint_est                       # log q - log p(x, z)
    log_px = -log_mean_exp(a, axis=0)
    xp = get_array_module(a)
    w = xp.exp(a - a.max(axis=0))                                          # in (0, 1]
    S = a.shape[0]
    stderr = (w.std(axis=0, ddof=1) / (math.sqrt(S) * w.mean(axis=0)) if S > 1
              else xp.full(a.shape[1], xp.nan))
    return (log_px, stderr, fitted) if return_q else (log_px, stderr)


def check_latent_size(z_dim, high_dim_ok=False):
    if z_dim > MAX_RELIABLE_Z and not high_dim_ok:
        warnings.warn(f"z_dim = {z_dim}: the posterior-sampling estimate of p(x) becomes unreliable "
                      f"above about {MAX_RELIABLE_Z} latent dimensions (Kingma & Welling 2013, "
                      "Figure 3); pass high_dim_ok=True to ask for it anyway", stacklevel=3)


# How the estimator's chains run, by name (the other settings: ``n_samples``, ``n_leapfrog``, q).
CHAINS = {
    # the authors' estimator (anglepy ``hmc_est.ll_estimator`` with ``hmc.hmc_step_autotune_indiv``):
    # 5 burn-in transitions; each chain's step starts at 1e-3 and, after every transition, burn-in
    # and sampling alike, is multiplied by exp(1.02 (2a - 1)): a rule whose fixed point is 50 %
    # acceptance (its target argument of 0.9 is not used there)
    "authors": dict(n_burnin=5, step_size=1e-3, target_accept=0.5, tune_rate=2.04, tune="always"),
    # this project's first rule: 100 burn-in transitions that tune each chain's step towards 90 %
    # acceptance, then the step frozen, so that the chain is exactly invariant while it samples
    "frozen": dict(n_burnin=100, step_size=0.1, target_accept=0.9, tune_rate=0.5, tune="burnin"),
}


def chain_settings(chains="frozen", **given):
    """The settings of the named ``chains`` (:data:`CHAINS`) with those in ``given`` that are not None."""
    validation.choice("chains", chains, CHAINS)
    return {**CHAINS[chains], **{k: v for k, v in given.items() if v is not None}}


def log_marginal_hmc(target, z0, n_samples=50, n_burnin=None, n_leapfrog=4, step_size=None,
                     target_accept=None, seed=0, high_dim_ok=False, q="gaussian", chains="frozen",
                     tune_rate=None, tune=None, also_q=()):
    """The appendix-D estimate of log p(x) for every row, from one HMC chain per row started at
    ``z0`` (B, Z) on ``target`` (``z -> (log p(x, z), d/dz log p(x, z))``).

    The chains run as :data:`CHAINS` ``[chains]`` says, each setting replaceable by the argument
    of its name; after the burn-in, ``n_samples`` samples fit ``q`` ("gaussian" or "kde") and
    ``n_samples`` further samples of the same chain estimate 1/p(x). Returns a dict of host
    arrays and numbers: ``log_px`` (B,), ``stderr`` (B,), ``accept_rate``, ``step_size`` (B,),
    ``q`` (what was fitted), ``kde_factor`` (B,) the kernel estimate's bandwidth factors (or None),
    and ``also``: for each density named in ``also_q``, the same four entries from the same samples
    (a comparison of the densities that costs no further sampling)."""
    n_samples = validation.positive_int("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (a density is fitted to them), got {n_samples}")
    validation.choice("q", q, Q_DENSITIES)
    also_q = tuple(validation.choice("also_q", name, Q_DENSITIES) for name in also_q)
    settings = chain_settings(chains, n_burnin=n_burnin, step_size=step_size,
                              target_accept=target_accept, tune_rate=tune_rate, tune=tune)
    hmc.check_chains("z0", z0)
    check_latent_size(z0.shape[1], high_dim_ok)
    rng = make_rng(seed, device_of(z0))
    run = hmc.sample(target, z0, 2 * n_samples, n_leapfrog=n_leapfrog, rng=rng, **settings)
    z, logp = run["z"], run["logp"]

    def estimate(name):
        log_px, stderr, fitted = log_marginal_from_samples(z[:n_samples], z[n_samples:], logp[n_samples:],
                                                           q=name, return_q=True)
        factor = None if fitted["factor"] is None else as_numpy(fitted["factor"]).astype("float64")
        return {"log_px": as_numpy(log_px).astype("float64"), "stderr": as_numpy(stderr).astype("float64"),
                "q": fitted["kind"], "kde_factor": factor}

    return {**estimate(q), "accept_rate": run["accept_rate"], "step_size": as_numpy(run["step_size"]),
            "also": {name: estimate(name) for name in also_q}}


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


def estimate_log_marginal(decoder, z_dim, x, n_samples=50, n_burnin=None, n_leapfrog=4,
                          target_accept=None, n_init=64, batch_size=1000, seed=0, high_dim_ok=False,
                          z_start=None, q="gaussian", chains="frozen", step_size=None, tune_rate=None,
                          tune=None, also_q=()):
    """log p(x) per row of ``x`` for a model with a N(0, I) prior on ``z_dim`` latents and the
    scratchvae ``decoder`` (a VAE's ``model.decoder``, or an MCEM model's). The chains start
    at the best of ``n_init`` prior draws, or at the row of ``z_start`` (N, Z) where that is
    better by log p(x, z) (a model's own guess: an encoder's mean, MCEM's kept z). A sharp
    posterior with several modes can hold a chain in a minor mode for good, and the estimate
    then falls short of log p(x): a start in the main mode matters. They run as ``chains``
    says (:data:`CHAINS`; ``n_burnin``, ``step_size``, ``target_accept``, ``tune_rate``, ``tune``
    replace its settings), and ``q`` is fitted (:func:`log_marginal_hmc`). Rows go through in
    batches of ``batch_size``.

    Returns a dict: ``log_px`` (N,) host array, ``stderr`` (N,), ``accept_rate`` (mean),
    ``q`` (what was fitted), ``kde_factor`` (N,) or None, and ``also``: the same for each density
    of ``also_q``, fitted to the same samples."""
    z_dim = validation.positive_int("z_dim", z_dim)
    n_init = validation.positive_int("n_init", n_init)
    batch_size = validation.positive_int("batch_size", batch_size)
    n_samples = validation.positive_int("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (a density is fitted to them), got {n_samples}")
    validation.positive_int("n_leapfrog", n_leapfrog)
    validation.choice("q", q, Q_DENSITIES)
    also_q = tuple(validation.choice("also_q", name, Q_DENSITIES) for name in also_q)
    settings = chain_settings(chains, n_burnin=n_burnin, step_size=step_size,
                              target_accept=target_accept, tune_rate=tune_rate, tune=tune)
    hmc.check_target_accept(settings["target_accept"])
    hmc.check_step_size(settings["step_size"], 1)
    validation.choice("tune", settings["tune"], hmc.TUNE_WHEN)
    validation.non_negative_number("tune_rate", settings["tune_rate"])
    b = settings["n_burnin"]
    if isinstance(b, bool) or not isinstance(b, int) or b < 0:
        raise ValueError(f"n_burnin must be an integer >= 0, got {b!r}")
    validation.float_array("x", x, ndim=2)
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one image (row), got 0")
    dims = hmc.decoder_dims(decoder)
    if dims is not None and dims[0] != z_dim:
        raise ValueError(f"z_dim must be the decoder's latent size ({dims[0]}), got {z_dim}")
    if dims is not None and x.shape[1] != dims[1]:
        raise ValueError(f"x must have one column per pixel of the decoder ({dims[1]}), "
                         f"got shape {tuple(x.shape)}")
    if z_start is not None:
        validation.float_array("z_start", z_start, shape=(x.shape[0], z_dim))
    check_latent_size(z_dim, high_dim_ok)
    rng = make_rng(seed, device_of(x))
    parts, acc = [], 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        target = hmc.decoder_log_joint(decoder, xb)
        z0 = best_prior_draw(target, xb, z_dim, n_init, rng)
        if z_start is not None:
            z0 = better_start(target, z0, z_start[start:start + batch_size].astype(xb.dtype))
        r = log_marginal_hmc(target, z0, n_samples, n_leapfrog=n_leapfrog, seed=seed + 1 + start,
                             high_dim_ok=True, q=q, also_q=also_q, **settings)
        parts.append(r)
        acc += r["accept_rate"] * xb.shape[0]

    def joined(rs):
        return {"log_px": np.concatenate([r["log_px"] for r in rs]),
                "stderr": np.concatenate([r["stderr"] for r in rs]),
                "q": "/".join(sorted({r["q"] for r in rs})),
                "kde_factor": None if rs[0]["kde_factor"] is None
                else np.concatenate([r["kde_factor"] for r in rs])}

    return {**joined(parts), "accept_rate": float(acc / x.shape[0]),
            "also": {name: joined([r["also"][name] for r in parts]) for name in also_q}}
