"""Log-densities, the closed-form KL and the reparameterization, with their gradients.

Every function works on the last axis as the event axis and returns one value
per row (summing over dimensions), in nats. Gradients are those of the *sum over
rows*; multiply by the upstream gradient of each row to chain them.

Notation: a diagonal Gaussian is given by its mean ``mu`` and log-variance
``logvar`` (so sigma = exp(logvar / 2)); a Bernoulli by its ``logits``
(p = sigmoid(logits)).

Each function is only its formula, on NumPy or CuPy arrays. ``@kernels.fused_by(name)``
above a function says that on CuPy arrays the fused CUDA kernel of the same name in
:mod:`scratchvae.kernels` computes the same formula in one launch, and is called
instead (the formula below it is the kernel's reference; see that package's docstring
for the rule).
"""
import math

from . import kernels
from .activations import sigmoid, softplus
from .backend import get_array_module

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)


# ---------------------------------------------------------------------------------------
# Diagonal Gaussian
# ---------------------------------------------------------------------------------------
@kernels.fused_by("gaussian_log_density")
def gaussian_log_density(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))) = -1/2 sum_d [log 2pi + logvar_d + (x_d - mu_d)^2 / exp(logvar_d)]."""
    xp = get_array_module(x, mu, logvar)
    return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * xp.exp(-logvar)).sum(axis=-1)


@kernels.fused_by("gaussian_log_density_grad")
def gaussian_log_density_grad(x, mu, logvar):
    """Gradients of the summed log-density:

        d/dmu     = (x - mu) / exp(logvar)
        d/dlogvar = 1/2 [(x - mu)^2 / exp(logvar) - 1]
        d/dx      = -(x - mu) / exp(logvar)

    Returns ``(dmu, dlogvar, dx)``.
    """
    xp = get_array_module(x, mu, logvar)
    precision = xp.exp(-logvar)
    diff = x - mu
    dmu = diff * precision
    return dmu, 0.5 * (diff * dmu - 1.0), -dmu


def standard_normal_log_density(z):
    """log N(z; 0, I) = -1/2 sum_d [log 2pi + z_d^2]."""
    return -0.5 * (LOG_2PI + z * z).sum(axis=-1)


# ---------------------------------------------------------------------------------------
# Bernoulli from logits
# ---------------------------------------------------------------------------------------
@kernels.fused_by("bernoulli_log_likelihood")
def bernoulli_log_likelihood(x, logits):
    """log Bernoulli(x; sigmoid(l)) = sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)]
                                    = sum_d [x_d l_d - softplus(l_d)].

    The second form never takes the log of a probability that rounded to 0 or 1,
    so it stays finite and exact for logits as large as +-1e4 in float32. It also
    accepts grey values x in [0, 1] (the cross-entropy form)."""
    return (x * logits - softplus(logits)).sum(axis=-1)


@kernels.fused_by("bernoulli_log_likelihood_grad")
def bernoulli_log_likelihood_grad(x, logits):
    """d/dl_d of the summed log-likelihood = x_d - sigmoid(l_d)."""
    return x - sigmoid(logits)


@kernels.fused_by("bernoulli_log_likelihood_and_grad")
def bernoulli_log_likelihood_and_grad(x, logits):
    """Both functions above at once: they are the reference, this is how a training step
    computes them, with one tanh and one log per pixel instead of an exp, a log1p and a
    tanh, in 13 array operations. With t = tanh(l / 2):

        sigmoid(l)       = (1 + t) / 2,  so  x - sigmoid(l) = (x - 1/2) - t / 2
        x l - softplus(l) = x l - max(l, 0) + log sigmoid(|l|)
                          = (x - 1/2) l - |l| / 2 + log(1 + |t|) - log 2

    because max(l, 0) = (l + |l|) / 2 and sigmoid(|l|) = (1 + |t|) / 2, a number in
    [1/2, 1] whose log is accurate to rounding (and nothing can overflow); the D terms
    -log 2 are subtracted once per row. Returns ``(log p per row, d log p / d logits)``."""
    xp = get_array_module(x, logits)
    half_l = 0.5 * logits
    t = xp.tanh(half_l)
    dlogits = x - 0.5
    logp = dlogits * logits                         # (x - 1/2) l
    logp -= xp.abs(half_l, out=half_l)              # - |l| / 2
    dlogits -= xp.multiply(t, 0.5, out=half_l)      # x - sigmoid(l)
    log_2sigmoid_abs = xp.abs(t, out=t)             # in place from here on: t is not needed
    log_2sigmoid_abs += 1.0
    xp.log(log_2sigmoid_abs, out=log_2sigmoid_abs)  # log(1 + |t|) = log sigmoid(|l|) + log 2
    logp += log_2sigmoid_abs
    return logp.sum(axis=-1) - x.shape[-1] * LOG_2, dlogits


# ---------------------------------------------------------------------------------------
# KL(q || p) between a diagonal Gaussian and the standard normal prior
# ---------------------------------------------------------------------------------------
@kernels.fused_by("kl_standard_normal")
def kl_standard_normal(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) = 1/2 sum_j [mu_j^2 + exp(logvar_j) - 1 - logvar_j].

    (Kingma & Welling 2013, Appendix B, with sigma^2 = exp(logvar).)"""
    xp = get_array_module(mu, logvar)
    return 0.5 * (mu * mu + xp.exp(logvar) - 1.0 - logvar).sum(axis=-1)


@kernels.fused_by("kl_standard_normal_grad")
def kl_standard_normal_grad(mu, logvar):
    """d KL / d mu = mu,   d KL / d logvar = 1/2 (exp(logvar) - 1).  Returns ``(dmu, dlogvar)``,
    both of the shape mu and logvar broadcast to (one row per row of the KL), like the
    other gradients of this module."""
    xp = get_array_module(mu, logvar)
    if mu.shape != logvar.shape:
        mu, logvar = xp.broadcast_arrays(mu, logvar)
    return mu.copy(), 0.5 * (xp.exp(logvar) - 1.0)


# ---------------------------------------------------------------------------------------
# Reparameterization
# ---------------------------------------------------------------------------------------
@kernels.fused_by("reparameterize")
def reparameterize(mu, logvar, eps):
    """z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I).

    z is then distributed N(mu, diag(exp(logvar))): the *standard deviation*
    multiplies eps, not the variance. ``eps`` may carry leading sample axes,
    e.g. ``(S, B, Z)`` against ``mu`` of shape ``(B, Z)``."""
    xp = get_array_module(mu, logvar, eps)
    return mu + xp.exp(0.5 * logvar) * eps


@kernels.fused_by("reparameterize_backward")
def reparameterize_backward(dz, logvar, eps):
    """Chain rule through z = mu + exp(logvar / 2) * eps:

        dmu = dz,   dlogvar = dz * eps * exp(logvar / 2) / 2

    summed over any leading sample axes of ``dz``. Returns ``(dmu, dlogvar)``."""
    xp = get_array_module(dz, logvar, eps)
    dlogvar = dz * eps * (0.5 * xp.exp(0.5 * logvar))
    extra = tuple(range(dz.ndim - logvar.ndim))
    if extra:
        return dz.sum(axis=extra), dlogvar.sum(axis=extra)
    return dz, dlogvar


# ---------------------------------------------------------------------------------------
# Stable reductions in log space
# ---------------------------------------------------------------------------------------
def logsumexp(a, axis=-1):
    """log sum_i exp(a_i), computed as m + log sum_i exp(a_i - m) with m = max_i a_i."""
    xp = get_array_module(a)
    m = a.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)  # an all -inf row stays -inf instead of NaN
    return (m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def log_mean_exp(a, axis=-1):
    """log (1/k) sum_i exp(a_i): the stable average of likelihood ratios in L_k."""
    return logsumexp(a, axis) - math.log(a.shape[axis])
