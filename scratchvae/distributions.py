r"""Log-densities, the closed-form KL and the reparameterization, with their gradients.

Every function works on the last axis as the event axis and returns one value
per row (summing over dimensions), in nats. Gradients are those of the *sum over
rows*; multiply by the upstream gradient of each row to chain them.

Notation: a diagonal Gaussian is given by its mean ``mu`` (:math:`\mu`) and log-variance
``logvar`` (so :math:`\sigma = \exp(\text{logvar}/2)`); a Bernoulli by its ``logits``
:math:`l` (so :math:`p = \operatorname{sigmoid}(l)`).

Each function is only its formula, on NumPy or CuPy arrays. ``@kernels.fused_by(name)``
above a function says that on CuPy arrays the fused CUDA kernel of the same name in
``scratchvae.kernels`` computes the same formula in one launch, and is called
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
    r"""The log-density of a diagonal Gaussian, one value per row:

    .. math::

        \log \mathcal{N}(x; \mu, \operatorname{diag}(\exp(\text{logvar})))
        = -\frac{1}{2} \sum_d \Big[\log 2\pi + \text{logvar}_d
        + \frac{(x_d - \mu_d)^2}{\exp(\text{logvar}_d)}\Big]
    """
    xp = get_array_module(x, mu, logvar)
    return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * xp.exp(-logvar)).sum(axis=-1)


@kernels.fused_by("gaussian_log_density_grad")
def gaussian_log_density_grad(x, mu, logvar):
    r"""Gradients of the summed log-density :math:`\log p` (:func:`gaussian_log_density`):

    .. math::

        \frac{\partial \log p}{\partial \mu} &= \frac{x - \mu}{\exp(\text{logvar})} \\
        \frac{\partial \log p}{\partial\, \text{logvar}}
            &= \frac{1}{2} \Big[\frac{(x - \mu)^2}{\exp(\text{logvar})} - 1\Big] \\
        \frac{\partial \log p}{\partial x} &= -\frac{x - \mu}{\exp(\text{logvar})}

    Returns ``(dmu, dlogvar, dx)``.
    """
    xp = get_array_module(x, mu, logvar)
    precision = xp.exp(-logvar)
    diff = x - mu
    dmu = diff * precision
    return dmu, 0.5 * (diff * dmu - 1.0), -dmu


def standard_normal_log_density(z):
    r""":math:`\log \mathcal{N}(z; 0, I) = -\frac{1}{2} \sum_d \big[\log 2\pi + z_d^2\big]`,
    one value per row."""
    return -0.5 * (LOG_2PI + z * z).sum(axis=-1)


# ---------------------------------------------------------------------------------------
# Bernoulli from logits
# ---------------------------------------------------------------------------------------
@kernels.fused_by("bernoulli_log_likelihood")
def bernoulli_log_likelihood(x, logits):
    r"""The log-likelihood of ``x`` under Bernoulli distributions with logits :math:`l`, one
    value per row, with :math:`p = \operatorname{sigmoid}(l)`:

    .. math::

        \log \operatorname{Bernoulli}(x; \operatorname{sigmoid}(l))
        &= \sum_d \big[x_d \log p_d + (1 - x_d) \log(1 - p_d)\big] \\
        &= \sum_d \big[x_d l_d - \operatorname{softplus}(l_d)\big]

    The second form never takes the log of a probability that rounded to 0 or 1,
    so it stays finite and exact for logits as large as :math:`\pm 10^4` in float32. It also
    accepts grey values :math:`x \in [0, 1]` (the cross-entropy form)."""
    return (x * logits - softplus(logits)).sum(axis=-1)


@kernels.fused_by("bernoulli_log_likelihood_grad")
def bernoulli_log_likelihood_grad(x, logits):
    r"""The gradient of the summed log-likelihood (:func:`bernoulli_log_likelihood`) with
    respect to the logits:
    :math:`\partial \log p / \partial l_d = x_d - \operatorname{sigmoid}(l_d)`."""
    return x - sigmoid(logits)


@kernels.fused_by("bernoulli_log_likelihood_and_grad")
def bernoulli_log_likelihood_and_grad(x, logits):
    r"""Both functions above at once: they are the reference, this is how a training step
    computes them, with one tanh and one log per pixel instead of an exp, a log1p and a
    tanh, in 13 array operations. With :math:`t = \tanh(l/2)`:

    .. math::

        \operatorname{sigmoid}(l) &= \frac{1 + t}{2}, \quad\text{so}\quad
            x - \operatorname{sigmoid}(l) = \Big(x - \frac{1}{2}\Big) - \frac{t}{2} \\
        x l - \operatorname{softplus}(l)
            &= x l - \max(l, 0) + \log \operatorname{sigmoid}(|l|) \\
            &= \Big(x - \frac{1}{2}\Big) l - \frac{|l|}{2} + \log(1 + |t|) - \log 2

    because :math:`\max(l, 0) = (l + |l|)/2` and :math:`\operatorname{sigmoid}(|l|) = (1 + |t|)/2`,
    a number in :math:`[1/2, 1]` whose log is accurate to rounding (and nothing can overflow);
    the :math:`D` terms :math:`-\log 2` are subtracted once per row.
    Returns ``(log p per row, d log p / d logits)``."""
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
    r"""The KL divergence of a diagonal Gaussian from the standard normal prior, in closed
    form, one value per row:

    .. math::

        \mathrm{KL}\big(\mathcal{N}(\mu, \operatorname{diag}(\exp(\text{logvar})))
        \,\|\, \mathcal{N}(0, I)\big)
        = \frac{1}{2} \sum_j \big[\mu_j^2 + \exp(\text{logvar}_j) - 1 - \text{logvar}_j\big]

    (Kingma & Welling 2013, Appendix B, with :math:`\sigma^2 = \exp(\text{logvar})`.)"""
    xp = get_array_module(mu, logvar)
    return 0.5 * (mu * mu + xp.exp(logvar) - 1.0 - logvar).sum(axis=-1)


@kernels.fused_by("kl_standard_normal_grad")
def kl_standard_normal_grad(mu, logvar):
    r"""The gradients of the summed KL (:func:`kl_standard_normal`):

    .. math::

        \frac{\partial\, \mathrm{KL}}{\partial \mu} = \mu, \qquad
        \frac{\partial\, \mathrm{KL}}{\partial\, \text{logvar}}
        = \frac{1}{2} \big(\exp(\text{logvar}) - 1\big)

    Returns ``(dmu, dlogvar)``, both of the shape ``mu`` and ``logvar`` broadcast to (one
    row per row of the KL), like the other gradients of this module."""
    xp = get_array_module(mu, logvar)
    if mu.shape != logvar.shape:
        mu, logvar = xp.broadcast_arrays(mu, logvar)
    return mu.copy(), 0.5 * (xp.exp(logvar) - 1.0)


# ---------------------------------------------------------------------------------------
# Reparameterization
# ---------------------------------------------------------------------------------------
@kernels.fused_by("reparameterize")
def reparameterize(mu, logvar, eps):
    r""":math:`z = \mu + \sigma \epsilon` with :math:`\sigma = \exp(\text{logvar}/2)` and
    :math:`\epsilon \sim \mathcal{N}(0, I)`.

    :math:`z` is then distributed as
    :math:`\mathcal{N}(\mu, \operatorname{diag}(\exp(\text{logvar})))`: the *standard deviation*
    multiplies :math:`\epsilon`, not the variance. ``eps`` may carry
    leading sample axes, e.g. ``(S, B, Z)`` against ``mu`` of shape ``(B, Z)``."""
    xp = get_array_module(mu, logvar, eps)
    return mu + xp.exp(0.5 * logvar) * eps


@kernels.fused_by("reparameterize_backward")
def reparameterize_backward(dz, logvar, eps):
    r"""The chain rule through :math:`z = \mu + \exp(\text{logvar}/2)\, \epsilon`, for the
    gradient ``dz`` of the loss with respect to :math:`z`:

    .. math::

        d\mu = dz, \qquad
        d\,\text{logvar} = dz \, \epsilon \, \frac{\exp(\text{logvar}/2)}{2}

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
    r""":math:`\log \sum_i \exp(a_i)` along ``axis``, computed as
    :math:`m + \log \sum_i \exp(a_i - m)` with :math:`m = \max_i a_i`."""
    xp = get_array_module(a)
    m = a.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)  # an all -inf row stays -inf instead of NaN
    return (m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def log_mean_exp(a, axis=-1):
    r""":math:`\log \frac{1}{k} \sum_{i=1}^k \exp(a_i)` along ``axis``: the stable average of
    likelihood ratios in :math:`\mathcal{L}_k`."""
    return logsumexp(a, axis) - math.log(a.shape[axis])
