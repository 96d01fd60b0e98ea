"""The exercises of lessons 07 to 12: the optimizers' updates, the Gaussian log-density and its
gradients, L_k's log-mean-exp, wake-sleep's sleep gradient, a leapfrog trajectory and HMC's
acceptance probability.

Every mistake below is a wrong body with the exercise's signature; the grader compares a
student's outputs with it, and the tests write it into a workbook.
"""
import math

import numpy as np

from ..backend import get_array_module
from ..distributions import LOG_2PI, gaussian_log_density, logsumexp
from ..gradcheck import check_gradients
from ..optim import SGD, Adagrad, Adam
from .exercise import Case, Exercise, Mistake
from .lessons_05_07 import VAE_GRADIENT


# ---------------------------------------------------------------------------------------
# Lesson 07: the optimizers' updates (in place)
# ---------------------------------------------------------------------------------------
def _updated(names, n_state):
    """Run an in-place update and collect the arrays it changed: the parameter and its state."""
    def run(function, case):
        function(*case.args, **case.kwargs)
        p, _, *state = case.args[:2 + n_state]
        return dict(zip(names, (p, *state)))
    return run


def _trajectory(kind, cls, kwargs):
    """The class's textbook path (which calls the student's update) for 5 steps on
    f(theta) = sum_i a_i theta_i^2 / 2, against the same steps written out in plain Python
    (the optimizers' derivation check)."""
    def semantic(function):
        from ..derivations.library import _reference_trajectory
        theta0, a = np.array([1.0, -2.0, 0.5, 3.0]), np.array([1.0, 0.5, 4.0, 0.1])
        theta, grad = theta0.copy(), np.zeros(4)
        optimizer = cls([("theta", theta, grad)], **kwargs)
        for _ in range(5):
            grad[...] = a * theta
            optimizer.textbook_step()
        reference = _reference_trajectory(kind, theta0, a, 5, kwargs["lr"])
        err = float((np.abs(theta - reference) / np.maximum(np.abs(theta) + np.abs(reference), 1e-12)).max())
        return err < 1e-10, err, f"5 steps of {cls.__name__}: theta {np.round(theta, 6).tolist()}, " \
                                 f"by hand {np.round(reference, 6).tolist()}"
    return semantic


def _sgd_cases():
    rng = np.random.default_rng(29)
    return [Case("lr 0.1, momentum 0.9", (rng.standard_normal((3, 4)), rng.standard_normal((3, 4)),
                                          rng.standard_normal((3, 4)), 0.1, 0.9)),
            Case("lr 0.05, momentum 0.5", (rng.standard_normal(5), rng.standard_normal(5),
                                           rng.standard_normal(5), 0.05, 0.5))]


def _sgd_sign(p, g, v, lr, momentum):
    v[...] = momentum * v + g
    p += lr * v


def _sgd_velocity_rebound(p, g, v, lr, momentum):
    v = momentum * v + g
    p -= lr * v


def _sgd_lr_in_velocity(p, g, v, lr, momentum):
    v[...] = momentum * v + lr * g
    p -= v


def _sgd_dampened(p, g, v, lr, momentum):
    v[...] = momentum * v + (1 - momentum) * g
    p -= lr * v


def _adagrad_cases():
    rng = np.random.default_rng(30)
    return [Case("lr 0.5, eps 1e-8", (rng.standard_normal((3, 4)), rng.standard_normal((3, 4)),
                                      rng.uniform(0.1, 2.0, (3, 4)), 0.5, 1e-8)),
            Case("lr 0.1, eps 0.1", (rng.standard_normal(6), rng.standard_normal(6), rng.uniform(0.0, 0.5, 6), 0.1),
                 {"eps": 0.1})]


def _adagrad_no_sqrt(p, g, h, lr, eps=1e-8):
    h += g * g
    p -= lr * g / (h + eps)


def _adagrad_h_after_step(p, g, h, lr, eps=1e-8):
    p -= lr * g / (np.sqrt(h) + eps)
    h += g * g


def _adagrad_h_rebound(p, g, h, lr, eps=1e-8):
    h = h + g * g
    p -= lr * g / (np.sqrt(h) + eps)


def _adagrad_eps_inside(p, g, h, lr, eps=1e-8):
    h += g * g
    p -= lr * g / np.sqrt(h + eps)


def _adam_cases():
    rng = np.random.default_rng(31)
    shape = (3, 4)

    def state():
        return (rng.standard_normal(shape), rng.standard_normal(shape), 0.1 * rng.standard_normal(shape),
                rng.uniform(0.0, 0.01, shape))
    return [Case("t=1, lr 0.1", (*state(), 1, 0.1)),
            Case("t=7, eps 0.01", (*state(), 7, 0.05), {"eps": 0.01}),
            Case("t=3, b1 0.8, b2 0.99", (*state(), 3, 0.1, 0.8, 0.99))]


def _adam_no_bias_correction(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    p -= lr * m / (np.sqrt(v) + eps)


def _adam_g_not_squared(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g
    p -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def _adam_eps_inside(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    p -= lr * (m / (1 - b1 ** t)) / np.sqrt(v / (1 - b2 ** t) + eps)


def _adam_rebound(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


REBOUND = " rebound instead of updated in place: {0} = ... makes a new local array and the optimizer's {1} never changes; write {0}[...] = ..."

OPTIMIZERS = (
    Exercise(
        "sgd_momentum_update", "scratchvae.optim.sgd_momentum_update", "07", "07_optimizers.py", ("p", "v"),
        _sgd_cases, run=_updated(("p", "v"), 1), semantic=_trajectory("sgd", SGD, dict(lr=0.1, momentum=0.9)),
        checks="p and v after the call; 5 steps of SGD's textbook path against the steps by hand",
        mistakes=(
            Mistake("the sign flipped: theta moves against the gradient, theta -= lr v", _sgd_sign),
            Mistake("v" + REBOUND.format("v", "velocity"), _sgd_velocity_rebound),
            Mistake("lr folded into the velocity (v = momentum v + lr g): here v = momentum v + g and "
                    "theta -= lr v", _sgd_lr_in_velocity),
            Mistake("the gradient damped by (1 - momentum): heavy-ball momentum adds g itself, "
                    "v = momentum v + g", _sgd_dampened))),
    Exercise(
        "adagrad_update", "scratchvae.optim.adagrad_update", "07", "07_optimizers.py", ("p", "h"),
        _adagrad_cases, run=_updated(("p", "h"), 1), semantic=_trajectory("adagrad", Adagrad, dict(lr=0.5)),
        checks="p and h after the call; 5 steps of Adagrad's textbook path against the steps by hand",
        mistakes=(
            Mistake("sqrt(h) left out: theta -= lr g / (sqrt(h) + eps)", _adagrad_no_sqrt),
            Mistake("h updated after the step: the step divides by the square root of h that already "
                    "holds this g^2", _adagrad_h_after_step),
            Mistake("h" + REBOUND.format("h", "running sum"), _adagrad_h_rebound),
            Mistake("eps inside the square root: theta -= lr g / (sqrt(h) + eps)", _adagrad_eps_inside))),
    Exercise(
        "adam_update", "scratchvae.optim.adam_update", "07", "07_optimizers.py", ("p", "m", "v"),
        _adam_cases, run=_updated(("p", "m", "v"), 2), semantic=_trajectory("adam", Adam, dict(lr=0.1)),
        checks="p, m and v after the call (t = 1, 7, 3); 5 steps of Adam's textbook path against the "
        "steps by hand", mistakes=(
            Mistake("Adam without bias correction: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t) (m and v "
                    "start at 0, so early on they are too small)", _adam_no_bias_correction),
            Mistake("v from g instead of g^2: v = b2 v + (1 - b2) g^2", _adam_g_not_squared),
            Mistake("eps inside the square root: theta -= lr m_hat / (sqrt(v_hat) + eps)", _adam_eps_inside),
            Mistake("m and v rebound instead of updated in place: m = ... makes a new local array and the "
                    "optimizer's moments never change; write m[...] = ... and v[...] = ...", _adam_rebound))),
)


# ---------------------------------------------------------------------------------------
# Lesson 08: the Gaussian log-density and its gradients
# ---------------------------------------------------------------------------------------
def _gaussian_cases(broadcast=True):
    def cases():
        rng = np.random.default_rng(32)
        out = [Case("(4, 5)", (rng.standard_normal((4, 5)), rng.standard_normal((4, 5)), rng.normal(0.0, 1.5, (4, 5)))),
               Case("(2, 3)", (rng.normal(0.5, 0.3, (2, 3)), rng.uniform(0.0, 1.0, (2, 3)), rng.normal(-2.0, 1.0, (2, 3))))]
        if broadcast:
            out.append(Case("x (2, 3, 4), mu and logvar (3, 4)", (rng.standard_normal((2, 3, 4)),
                                                                  rng.standard_normal((3, 4)), rng.normal(0.0, 1.5, (3, 4)))))
        return out
    return cases


def _gaussian_variance_as_std(x, mu, logvar):
    xp = get_array_module(x, mu, logvar)
    return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * xp.exp(-2 * logvar)).sum(axis=-1)


def _gaussian_no_2pi(x, mu, logvar):
    xp = get_array_module(x, mu, logvar)
    return -0.5 * (logvar + (x - mu) ** 2 * xp.exp(-logvar)).sum(axis=-1)


def _gaussian_sign(x, mu, logvar):
    xp = get_array_module(x, mu, logvar)
    return 0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * xp.exp(-logvar)).sum(axis=-1)


def _gaussian_gradient(function):
    rng = np.random.default_rng(33)
    x, mu, logvar = (rng.standard_normal((4, 5)) for _ in range(3))
    dmu, dlogvar, dx = function(x, mu, logvar)
    return check_gradients(lambda: float(gaussian_log_density(x, mu, logvar).sum()),
                           {"x": x, "mu": mu, "logvar": logvar}, {"x": dx, "mu": dmu, "logvar": dlogvar})


def _gaussian_grad_no_half(x, mu, logvar):
    xp = get_array_module(x, mu, logvar)
    dmu = (x - mu) * xp.exp(-logvar)
    return dmu, (x - mu) * dmu - 1.0, -dmu


def _gaussian_grad_dx_like_dmu(x, mu, logvar):
    xp = get_array_module(x, mu, logvar)
    dmu = (x - mu) * xp.exp(-logvar)
    return dmu, 0.5 * ((x - mu) * dmu - 1.0), dmu


def _gaussian_grad_std(x, mu, logvar):
    xp = get_array_module(x, mu, logvar)
    dmu = (x - mu) * xp.exp(-0.5 * logvar)
    return dmu, 0.5 * ((x - mu) * dmu - 1.0), -dmu


GAUSSIAN = (
    Exercise(
        "gaussian_log_density", "scratchvae.distributions.gaussian_log_density", "08", "08_gaussian_decoder.py",
        ("log_density",), _gaussian_cases(), checks="outputs (with broadcasting); note 003's checks against "
        "scipy.stats.norm and of least squares with it", derivations=(
            ("scratchvae.derivations.note003:gaussian_nll", None),
            ("scratchvae.derivations.note003:least_squares", None)), mistakes=(
            Mistake("exp(logvar) used as the standard deviation: the variance is exp(logvar), so "
                    "(x - mu)^2 is divided by exp(logvar)", _gaussian_variance_as_std),
            Mistake("log 2 pi left out: log N(x; mu, sigma^2) = -1/2 sum_d [log 2 pi + logvar_d + "
                    "(x_d - mu_d)^2 / exp(logvar_d)] (a constant, but a bound in nats needs it)",
                    _gaussian_no_2pi),
            Mistake("the sign flipped: that is -log N, the loss", _gaussian_sign))),
    Exercise(
        "gaussian_log_density_grad", "scratchvae.distributions.gaussian_log_density_grad", "08",
        "08_gaussian_decoder.py", ("dmu", "dlogvar", "dx"), _gaussian_cases(broadcast=False),
        checks="outputs; dmu, dlogvar, dx against central differences of sum log N; note 003's Gaussian "
        "gradient check and the whole VAE's gradient with it", gradient=_gaussian_gradient,
        derivations=(("scratchvae.derivations.note003:gaussian_nll_gradient", "grad"), VAE_GRADIENT),
        mistakes=(
            Mistake("the missing 1/2 in d/dlogvar: d/dlogvar = 1/2 [(x - mu)^2 / exp(logvar) - 1]",
                    _gaussian_grad_no_half),
            Mistake("d/dx with the sign of d/dmu: the density depends on x - mu, so d/dx = -d/dmu",
                    _gaussian_grad_dx_like_dmu),
            Mistake("divided by the standard deviation exp(logvar / 2) where the variance exp(logvar) "
                    "belongs", _gaussian_grad_std))),
)


# ---------------------------------------------------------------------------------------
# Lesson 09: log-mean-exp, the average in L_k
# ---------------------------------------------------------------------------------------
def _log_mean_exp_cases():
    rng = np.random.default_rng(34)
    return [Case("(4, 5), axis -1", (rng.standard_normal((4, 5)),)),
            Case("log weights near -1000, axis 0", (rng.normal(-1000.0, 5.0, (6, 3)),), {"axis": 0}),
            Case("(2, 3, 4), axis 1", (rng.standard_normal((2, 3, 4)),), {"axis": 1}),
            Case("k = 1", (rng.standard_normal((5, 1)),))]


def _log_mean_exp_no_k(a, axis=-1):
    return logsumexp(a, axis)


def _log_mean_exp_naive(a, axis=-1):
    xp = get_array_module(a)
    return xp.log(xp.exp(a).mean(axis=axis))


def _log_mean_exp_plus_log_k(a, axis=-1):
    return logsumexp(a, axis) + math.log(a.shape[axis])


def _log_mean_exp_mean_of_logs(a, axis=-1):
    return a.mean(axis=axis)


LOG_MEAN_EXP = Exercise(
    "log_mean_exp", "scratchvae.distributions.log_mean_exp", "09", "09_importance_sampling.py",
    ("log_mean_exp",), _log_mean_exp_cases, checks="outputs (log weights near -1000, other axes, k = 1)",
    mistakes=(
        Mistake("the 1/k left out: L_k averages the k ratios, log (1/k) sum_i exp(a_i) = "
                "logsumexp(a) - log k", _log_mean_exp_no_k),
        Mistake("the mean of exp(a) without the max shift: exp(-1000) underflows to 0 and log 0 = -inf; "
                "use logsumexp(a) - log k", _log_mean_exp_naive),
        Mistake("log k added instead of subtracted: log (1/k) = -log k", _log_mean_exp_plus_log_k),
        Mistake("the mean of the logs (the ELBO's estimate) instead of the log of the mean: L_k = "
                "log (1/k) sum_i exp(a_i)", _log_mean_exp_mean_of_logs)))


# ---------------------------------------------------------------------------------------
# Lesson 11: wake-sleep's sleep gradient
# ---------------------------------------------------------------------------------------
def _sleep_cases():
    rng = np.random.default_rng(35)
    return [Case(f"n={n}, Z={Z}", (rng.standard_normal((n, Z)), rng.standard_normal((n, Z)), rng.normal(0.0, 1.0, (n, Z))))
            for n, Z in ((6, 2), (4, 3))]


def _sleep_gradient_check(function):
    rng = np.random.default_rng(36)
    z, mu, logvar = (rng.standard_normal((6, 2)) for _ in range(3))
    dmu, dlogvar = function(z, mu, logvar)
    return check_gradients(lambda: -float(gaussian_log_density(z, mu, logvar).mean()),
                           {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})


def _sleep_no_n(z, mu, logvar):
    xp = get_array_module(z, mu, logvar)
    dmu = -(z - mu) * xp.exp(-logvar)
    return dmu, -0.5 * ((z - mu) ** 2 * xp.exp(-logvar) - 1.0)


def _sleep_sign(z, mu, logvar):
    xp = get_array_module(z, mu, logvar)
    n = z.shape[0]
    return (z - mu) * xp.exp(-logvar) / n, 0.5 * ((z - mu) ** 2 * xp.exp(-logvar) - 1.0) / n


def _sleep_no_half(z, mu, logvar):
    xp = get_array_module(z, mu, logvar)
    n = z.shape[0]
    return -(z - mu) * xp.exp(-logvar) / n, -((z - mu) ** 2 * xp.exp(-logvar) - 1.0) / n


SLEEP = Exercise(
    "sleep_gradient", "scratchvae.models.wake_sleep.sleep_gradient", "11", "11_wake_sleep.py", ("dmu", "dlogvar"),
    _sleep_cases, checks="outputs; dmu, dlogvar against central differences of -1/n sum log q(z|x); the "
    "sleep phase's derivation check with it", gradient=_sleep_gradient_check,
    derivations=(("scratchvae.derivations.wake_sleep:sleep_gradient", None),), mistakes=(
        Mistake("a missing 1/n: the sleep loss is the mean -1/n sum_i log q(z_i|x_i)", _sleep_no_n),
        Mistake("the sign flipped: that is the gradient of +mean log q; the sleep phase descends -log q",
                _sleep_sign),
        Mistake("the missing 1/2 in d/dlogvar: d(-log q)/dlogvar = -1/2 [(z - mu)^2 / exp(logvar) - 1] / n",
                _sleep_no_half)))


# ---------------------------------------------------------------------------------------
# Lesson 12: a leapfrog trajectory and the Metropolis acceptance of HMC
# ---------------------------------------------------------------------------------------
def banana(z):
    """log p(z) = -z_0^2 / 2 - (z_1 - z_0^2 / 2)^2 / 2 per row, with its gradient: a curved target
    on which a leapfrog trajectory is not a rotation."""
    r = z[:, 1] - 0.5 * z[:, 0] ** 2
    grad = np.stack([-z[:, 0] + r * z[:, 0], -r], axis=1)
    return -0.5 * z[:, 0] ** 2 - 0.5 * r ** 2, grad


def _leapfrog_cases():
    rng = np.random.default_rng(37)
    z, p = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    return [Case("one step of 0.1", (banana, z.copy(), p.copy(), 0.1, 1)),
            Case("7 steps of 0.05", (banana, z.copy(), p.copy(), 0.05, 7)),
            Case("a step per chain, 4 steps", (banana, z.copy(), p.copy(), rng.uniform(0.05, 0.15, 5), 4)),
            Case("grad given, 3 steps", (banana, z.copy(), p.copy(), 0.1, 3), {"grad": banana(z)[1]})]


def _steps(step_size):
    return step_size[:, None] if getattr(step_size, "ndim", 0) == 1 else step_size


def _leapfrog_euler(target, z, p, step_size, n_steps, grad=None):
    e = _steps(step_size)
    for _ in range(n_steps):
        _, grad = target(z)
        p = p + e * grad
        z = z + e * p
    logp, grad = target(z)
    return z, p, logp, grad


def _leapfrog_sign(target, z, p, step_size, n_steps, grad=None):
    e = _steps(step_size)
    if grad is None:
        _, grad = target(z)
    p = p - 0.5 * e * grad
    for i in range(n_steps):
        z = z + e * p
        logp, grad = target(z)
        if i < n_steps - 1:
            p = p - e * grad
    return z, p - 0.5 * e * grad, logp, grad


def _leapfrog_no_closing_half_step(target, z, p, step_size, n_steps, grad=None):
    e = _steps(step_size)
    if grad is None:
        _, grad = target(z)
    p = p + 0.5 * e * grad
    for i in range(n_steps):
        z = z + e * p
        logp, grad = target(z)
        if i < n_steps - 1:
            p = p + e * grad
    return z, p, logp, grad


HMC_CHECKS = tuple((f"scratchvae.derivations.hmc:{name}", "leapfrog")
                   for name in ("leapfrog_reversible", "leapfrog_volume", "leapfrog_energy_order"))


def _accept_cases():
    rng = np.random.default_rng(38)

    def chains(B, spread):
        logp0, p0 = rng.normal(-5.0, 2.0, B), rng.standard_normal((B, 2))
        return logp0, p0, logp0 + rng.normal(0.0, spread, B), p0 + 0.3 * rng.standard_normal((B, 2))
    logp0, p0, logp1, p1 = chains(6, 1.0)
    logp1[2], logp1[4] = -np.inf, np.nan               # two trajectories that diverged
    return [Case("8 chains", chains(8, 1.0)),
            Case("energy changes of hundreds", chains(6, 400.0)),
            Case("diverged chains (log p = -inf, nan)", (logp0, p0, logp1, p1))]


def _energies(logp0, p0, logp1, p1):
    return -logp0 + 0.5 * (p0 * p0).sum(axis=-1), -logp1 + 0.5 * (p1 * p1).sum(axis=-1)


def _rejected_if_diverged(log_ratio):
    return np.exp(np.minimum(np.where(np.isfinite(log_ratio), log_ratio, -np.inf), 0.0))


def _accept_reversed(logp0, p0, logp1, p1):
    h0, h1 = _energies(logp0, p0, logp1, p1)
    return _rejected_if_diverged(h1 - h0)


def _accept_no_kinetic_energy(logp0, p0, logp1, p1):
    return _rejected_if_diverged(logp1 - logp0)


def _accept_no_min(logp0, p0, logp1, p1):
    h0, h1 = _energies(logp0, p0, logp1, p1)
    log_ratio = h0 - h1
    return np.exp(np.where(np.isfinite(log_ratio), log_ratio, -np.inf))


def _accept_diverged_kept(logp0, p0, logp1, p1):
    h0, h1 = _energies(logp0, p0, logp1, p1)
    return np.minimum(1.0, np.exp(h0 - h1))


HMC = (
    Exercise(
        "leapfrog", "scratchvae.models.hmc.leapfrog", "12", "12_hmc.py", ("z", "p", "logp", "grad"),
        _leapfrog_cases, checks="z, p, logp, grad at the end (one step, many, a step per chain, grad "
        "given); the leapfrog's reversibility, volume and O(step^2) energy error with it",
        derivations=HMC_CHECKS, mistakes=(
            Mistake("no half steps of momentum: leapfrog opens and closes with p += step/2 grad log p "
                    "(full steps between); full steps at the ends make a first-order integrator",
                    _leapfrog_euler),
            Mistake("the gradient's sign flipped: the momentum follows grad log p(x, z) = -dU/dz, so "
                    "p += step/2 grad", _leapfrog_sign),
            Mistake("the closing half step of momentum left out: after the last position step, "
                    "p += step/2 grad", _leapfrog_no_closing_half_step))),
    Exercise(
        "hmc_accept_prob", "scratchvae.models.hmc.hmc_accept_prob", "12", "12_hmc.py", ("accept_prob",),
        _accept_cases, checks="outputs (energy changes of hundreds, diverged chains); HMC's samples of "
        "an exact posterior with it", derivations=(("scratchvae.derivations.hmc:hmc_linear_gaussian", None),),
        mistakes=(
            Mistake("the energies' difference reversed: a = min(1, exp(H(z, p) - H(z', p'))), start "
                    "minus end", _accept_reversed),
            Mistake("the kinetic energy |p|^2 / 2 left out of H(z, p) = -log p(x, z) + |p|^2 / 2",
                    _accept_no_kinetic_energy),
            Mistake("min(1, .) left out: an acceptance probability above 1 (and exp overflowing)",
                    _accept_no_min),
            Mistake("a diverged trajectory not rejected: where H(z', p') is not finite (nan), a = 0",
                    _accept_diverged_kept))),
)



EXERCISES = (*OPTIMIZERS, *GAUSSIAN, LOG_MEAN_EXP, SLEEP, *HMC)
