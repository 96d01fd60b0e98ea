"""The hot functions of ``scratchvae/distributions.py`` as CUDA kernels: same names,
same arguments, same results to rounding.

Each function below launches the kernels of one ``.cu`` file of this folder, whose
comments give the math; its docstring names the NumPy reference it must match
(``tests/test_kernels.py`` holds it to that on a GPU). The sums over the last axis
(the log-likelihoods and the KL) are done inside the kernels, one block per row, so
each of those is a single launch.
"""
import math

import numpy as np

from ..backend import cupy
from .launch import ROW_THREADS, THREADS, check_arrays, common_shape, elementwise_blocks, launch, rows_view


def _rows(shape):
    return math.prod(shape[:-1]), shape[-1]


def reparameterize(mu, logvar, eps):
    """z = mu + exp(logvar / 2) * eps (``reparameterize_forward``, reparameterize.cu).

    ``eps`` may carry leading sample axes, e.g. ``(L, B, Z)`` against ``(B, Z)``.
    Reference: scratchvae.distributions.reparameterize"""
    dtype = check_arrays(mu=mu, logvar=logvar, eps=eps)
    shape = common_shape(mu=mu, logvar=logvar, eps=eps)
    inner = common_shape(mu=mu, logvar=logvar)
    if tuple(shape[len(shape) - len(inner):]) != tuple(inner):
        inner = shape  # mu and logvar broadcast inside the last axes too: spread them out
    rows, cols = _rows(shape)
    B = math.prod(inner[:-1])  # the rows of mu; sample row r reads row r % B
    mu2, ld_mu = rows_view(mu, inner)
    logvar2, ld_logvar = rows_view(logvar, inner)
    eps2, ld_eps = rows_view(eps, shape)
    z = cupy.empty(shape, dtype)
    launch("reparameterize.cu", "reparameterize_forward", dtype, elementwise_blocks(rows * cols),
           THREADS, (mu2, ld_mu, logvar2, ld_logvar, eps2, ld_eps, z,
                     np.int64(B), np.int64(rows), np.int64(cols)))
    return z


def reparameterize_backward(dz, logvar, eps):
    """``(dmu, dlogvar)`` through z = mu + exp(logvar / 2) * eps, summed over the
    leading sample axes of ``dz`` (``reparameterize_backward``, reparameterize.cu).

    Reference: scratchvae.distributions.reparameterize_backward"""
    dtype = check_arrays(dz=dz, logvar=logvar, eps=eps)
    shape = common_shape(dz=dz, logvar=logvar, eps=eps)
    if tuple(dz.shape) != tuple(shape) or logvar.ndim > dz.ndim:
        raise ValueError(f"dz must have the shape of z, which eps and logvar broadcast to; "
                         f"got dz {dz.shape}, logvar {logvar.shape}, eps {eps.shape}")
    inner = shape[dz.ndim - logvar.ndim:]  # one sample: the shape of mu and logvar
    L, B, cols = math.prod(shape[:dz.ndim - logvar.ndim]), math.prod(inner[:-1]), shape[-1]
    dz2, ld_dz = rows_view(dz, shape)
    logvar2, ld_logvar = rows_view(logvar, inner)
    eps2, ld_eps = rows_view(eps, shape)
    dmu, dlogvar = cupy.empty(inner, dtype), cupy.empty(inner, dtype)
    launch("reparameterize.cu", "reparameterize_backward", dtype, elementwise_blocks(B * cols),
           THREADS, (dz2, ld_dz, logvar2, ld_logvar, eps2, ld_eps, dmu, dlogvar,
                     np.int64(L), np.int64(B), np.int64(cols)))
    return dmu, dlogvar


def kl_standard_normal(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row (``kl_standard_normal_rows``, kl.cu).

    Reference: scratchvae.distributions.kl_standard_normal"""
    dtype = check_arrays(mu=mu, logvar=logvar)
    shape = common_shape(mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    mu2, ld_mu = rows_view(mu, shape)
    logvar2, ld_logvar = rows_view(logvar, shape)
    kl = cupy.empty(shape[:-1], dtype)
    launch("kl.cu", "kl_standard_normal_rows", dtype, rows, ROW_THREADS,
           (mu2, ld_mu, logvar2, ld_logvar, kl, np.int64(cols)))
    return kl


def kl_standard_normal_grad(mu, logvar):
    """``(dmu, dlogvar)`` of the KL to N(0, I) (``kl_standard_normal_grad``, kl.cu).

    Reference: scratchvae.distributions.kl_standard_normal_grad"""
    dtype = check_arrays(mu=mu, logvar=logvar)
    shape = common_shape(mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    mu2, ld_mu = rows_view(mu, shape)
    logvar2, ld_logvar = rows_view(logvar, shape)
    dmu, dlogvar = cupy.empty(shape, dtype), cupy.empty(shape, dtype)
    launch("kl.cu", "kl_standard_normal_grad", dtype, elementwise_blocks(rows * cols), THREADS,
           (mu2, ld_mu, logvar2, ld_logvar, dmu, dlogvar, np.int64(rows), np.int64(cols)))
    return dmu, dlogvar


def bernoulli_log_likelihood(x, logits):
    """sum_d [x_d l_d - softplus(l_d)] per row (``bernoulli_log_likelihood_rows``, bernoulli.cu).

    Reference: scratchvae.distributions.bernoulli_log_likelihood"""
    dtype = check_arrays(x=x, logits=logits)
    shape = common_shape(x=x, logits=logits)
    rows, cols = _rows(shape)
    x2, ld_x = rows_view(x, shape)
    logits2, ld_logits = rows_view(logits, shape)
    logp = cupy.empty(shape[:-1], dtype)
    launch("bernoulli.cu", "bernoulli_log_likelihood_rows", dtype, rows, ROW_THREADS,
           (x2, ld_x, logits2, ld_logits, logp, np.int64(cols)))
    return logp


def bernoulli_log_likelihood_grad(x, logits):
    """x - sigmoid(logits) (``bernoulli_log_likelihood_grad``, bernoulli.cu).

    Reference: scratchvae.distributions.bernoulli_log_likelihood_grad"""
    dtype = check_arrays(x=x, logits=logits)
    shape = common_shape(x=x, logits=logits)
    rows, cols = _rows(shape)
    x2, ld_x = rows_view(x, shape)
    logits2, ld_logits = rows_view(logits, shape)
    dlogits = cupy.empty(shape, dtype)
    launch("bernoulli.cu", "bernoulli_log_likelihood_grad", dtype, elementwise_blocks(rows * cols),
           THREADS, (x2, ld_x, logits2, ld_logits, dlogits, np.int64(rows), np.int64(cols)))
    return dlogits


def gaussian_log_density(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))) per row (``gaussian_log_density_rows``, gaussian.cu).

    Reference: scratchvae.distributions.gaussian_log_density"""
    dtype = check_arrays(x=x, mu=mu, logvar=logvar)
    shape = common_shape(x=x, mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    x2, ld_x = rows_view(x, shape)
    mu2, ld_mu = rows_view(mu, shape)
    logvar2, ld_logvar = rows_view(logvar, shape)
    logp = cupy.empty(shape[:-1], dtype)
    launch("gaussian.cu", "gaussian_log_density_rows", dtype, rows, ROW_THREADS,
           (x2, ld_x, mu2, ld_mu, logvar2, ld_logvar, logp, np.int64(cols)))
    return logp


def gaussian_log_density_grad(x, mu, logvar):
    """``(dmu, dlogvar, dx)`` of the Gaussian log-density (``gaussian_log_density_grad``,
    gaussian.cu).

    Reference: scratchvae.distributions.gaussian_log_density_grad"""
    dtype = check_arrays(x=x, mu=mu, logvar=logvar)
    shape = common_shape(x=x, mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    x2, ld_x = rows_view(x, shape)
    mu2, ld_mu = rows_view(mu, shape)
    logvar2, ld_logvar = rows_view(logvar, shape)
    dmu, dlogvar, dx = (cupy.empty(shape, dtype) for _ in range(3))
    launch("gaussian.cu", "gaussian_log_density_grad", dtype, elementwise_blocks(rows * cols),
           THREADS, (x2, ld_x, mu2, ld_mu, logvar2, ld_logvar, dmu, dlogvar, dx,
                     np.int64(rows), np.int64(cols)))
    return dmu, dlogvar, dx
