"""The hot functions of ``scratchvae/distributions.py`` as CUDA kernels: same names,
same arguments, same results to rounding.

Each function below launches the kernels of one ``.cu`` file of this folder, whose
comments give the math; its docstring names the NumPy reference it must match
(``tests/test_kernels.py`` holds it to that on a GPU, ``tests/test_kernels_cpu.py`` on
the CPU harness). The sums over the last axis (the log-likelihoods and the KL) are done
inside the kernels, one block per row, so each of those is a single launch.

``on`` is where the kernel runs: :data:`~scratchvae.kernels.launch.GPU` (CuPy, the
default) or the CPU harness of :mod:`scratchvae.kernels.cpu`; the arrays must belong
to it (CuPy arrays for the GPU, NumPy arrays for the harness).
"""
import math

import numpy as np

from .launch import GPU, ROW_THREADS, THREADS, common_shape, elementwise_blocks


def _rows(shape):
    return math.prod(shape[:-1]), shape[-1]


def reparameterize(mu, logvar, eps, *, on=GPU):
    """z = mu + exp(logvar / 2) * eps (``reparameterize_forward``, reparameterize.cu).

    ``eps`` may carry leading sample axes, e.g. ``(S, B, Z)`` against ``(B, Z)``.
    Reference: scratchvae.distributions.reparameterize"""
    dtype = on.check_arrays(mu=mu, logvar=logvar, eps=eps)
    shape = common_shape(mu=mu, logvar=logvar, eps=eps)
    inner = common_shape(mu=mu, logvar=logvar)
    if tuple(shape[len(shape) - len(inner):]) != tuple(inner):
        inner = shape  # mu and logvar broadcast inside the last axes too: spread them out
    rows, cols = _rows(shape)
    B = math.prod(inner[:-1])  # the rows of mu; sample row r reads row r % B
    mu2, ld_mu = on.rows_view(mu, inner)
    logvar2, ld_logvar = on.rows_view(logvar, inner)
    eps2, ld_eps = on.rows_view(eps, shape)
    z = on.empty(shape, dtype)
    on.launch("reparameterize.cu", "reparameterize_forward", dtype, elementwise_blocks(rows * cols),
              THREADS, (mu2, ld_mu, logvar2, ld_logvar, eps2, ld_eps, z,
                        np.int64(B), np.int64(rows), np.int64(cols)))
    return z


def reparameterize_backward(dz, logvar, eps, *, on=GPU):
    """``(dmu, dlogvar)`` through z = mu + exp(logvar / 2) * eps, summed over the
    leading sample axes of ``dz`` (``reparameterize_backward``, reparameterize.cu).

    Reference: scratchvae.distributions.reparameterize_backward"""
    dtype = on.check_arrays(dz=dz, logvar=logvar, eps=eps)
    shape = common_shape(dz=dz, logvar=logvar, eps=eps)
    if tuple(dz.shape) != tuple(shape) or logvar.ndim > dz.ndim:
        raise ValueError(f"dz must have the shape of z, which eps and logvar broadcast to; "
                         f"got dz {dz.shape}, logvar {logvar.shape}, eps {eps.shape}")
    inner = shape[dz.ndim - logvar.ndim:]  # one sample: the shape of mu and logvar
    S, B, cols = math.prod(shape[:dz.ndim - logvar.ndim]), math.prod(inner[:-1]), shape[-1]
    dz2, ld_dz = on.rows_view(dz, shape)
    logvar2, ld_logvar = on.rows_view(logvar, inner)
    eps2, ld_eps = on.rows_view(eps, shape)
    dmu, dlogvar = on.empty(inner, dtype), on.empty(inner, dtype)
    on.launch("reparameterize.cu", "reparameterize_backward", dtype, elementwise_blocks(B * cols),
              THREADS, (dz2, ld_dz, logvar2, ld_logvar, eps2, ld_eps, dmu, dlogvar,
                        np.int64(S), np.int64(B), np.int64(cols)))
    return dmu, dlogvar


def kl_standard_normal(mu, logvar, *, on=GPU):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row (``kl_standard_normal_rows``, kl.cu).

    Reference: scratchvae.distributions.kl_standard_normal"""
    dtype = on.check_arrays(mu=mu, logvar=logvar)
    shape = common_shape(mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    mu2, ld_mu = on.rows_view(mu, shape)
    logvar2, ld_logvar = on.rows_view(logvar, shape)
    kl = on.empty(shape[:-1], dtype)
    on.launch("kl.cu", "kl_standard_normal_rows", dtype, rows, ROW_THREADS,
              (mu2, ld_mu, logvar2, ld_logvar, kl, np.int64(cols)))
    return kl


def kl_standard_normal_grad(mu, logvar, *, on=GPU):
    """``(dmu, dlogvar)`` of the KL to N(0, I) (``kl_standard_normal_grad``, kl.cu), both
    of the shape mu and logvar broadcast to: one row per row of the KL.

    Reference: scratchvae.distributions.kl_standard_normal_grad"""
    dtype = on.check_arrays(mu=mu, logvar=logvar)
    shape = common_shape(mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    mu2, ld_mu = on.rows_view(mu, shape)
    logvar2, ld_logvar = on.rows_view(logvar, shape)
    dmu, dlogvar = on.empty(shape, dtype), on.empty(shape, dtype)
    on.launch("kl.cu", "kl_standard_normal_grad", dtype, elementwise_blocks(rows * cols), THREADS,
              (mu2, ld_mu, logvar2, ld_logvar, dmu, dlogvar, np.int64(rows), np.int64(cols)))
    return dmu, dlogvar


def bernoulli_log_likelihood(x, logits, *, on=GPU):
    """sum_d [x_d l_d - softplus(l_d)] per row (``bernoulli_log_likelihood_rows``, bernoulli.cu).

    Reference: scratchvae.distributions.bernoulli_log_likelihood"""
    dtype = on.check_arrays(x=x, logits=logits)
    shape = common_shape(x=x, logits=logits)
    rows, cols = _rows(shape)
    x2, ld_x = on.rows_view(x, shape)
    logits2, ld_logits = on.rows_view(logits, shape)
    logp = on.empty(shape[:-1], dtype)
    on.launch("bernoulli.cu", "bernoulli_log_likelihood_rows", dtype, rows, ROW_THREADS,
              (x2, ld_x, logits2, ld_logits, logp, np.int64(cols)))
    return logp


def bernoulli_log_likelihood_grad(x, logits, *, on=GPU):
    """x - sigmoid(logits) (``bernoulli_log_likelihood_grad``, bernoulli.cu).

    Reference: scratchvae.distributions.bernoulli_log_likelihood_grad"""
    dtype = on.check_arrays(x=x, logits=logits)
    shape = common_shape(x=x, logits=logits)
    rows, cols = _rows(shape)
    x2, ld_x = on.rows_view(x, shape)
    logits2, ld_logits = on.rows_view(logits, shape)
    dlogits = on.empty(shape, dtype)
    on.launch("bernoulli.cu", "bernoulli_log_likelihood_grad", dtype, elementwise_blocks(rows * cols),
              THREADS, (x2, ld_x, logits2, ld_logits, dlogits, np.int64(rows), np.int64(cols)))
    return dlogits


def bernoulli_log_likelihood_and_grad(x, logits, *, on=GPU):
    """``(log p per row, d log p / d logits)``: the two kernels above, one launch each.

    Reference: scratchvae.distributions.bernoulli_log_likelihood_and_grad"""
    return bernoulli_log_likelihood(x, logits, on=on), bernoulli_log_likelihood_grad(x, logits, on=on)


def gaussian_log_density(x, mu, logvar, *, on=GPU):
    """log N(x; mu, diag(exp(logvar))) per row (``gaussian_log_density_rows``, gaussian.cu).

    Reference: scratchvae.distributions.gaussian_log_density"""
    dtype = on.check_arrays(x=x, mu=mu, logvar=logvar)
    shape = common_shape(x=x, mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    x2, ld_x = on.rows_view(x, shape)
    mu2, ld_mu = on.rows_view(mu, shape)
    logvar2, ld_logvar = on.rows_view(logvar, shape)
    logp = on.empty(shape[:-1], dtype)
    on.launch("gaussian.cu", "gaussian_log_density_rows", dtype, rows, ROW_THREADS,
              (x2, ld_x, mu2, ld_mu, logvar2, ld_logvar, logp, np.int64(cols)))
    return logp


def gaussian_log_density_grad(x, mu, logvar, *, on=GPU):
    """``(dmu, dlogvar, dx)`` of the Gaussian log-density (``gaussian_log_density_grad``,
    gaussian.cu).

    Reference: scratchvae.distributions.gaussian_log_density_grad"""
    dtype = on.check_arrays(x=x, mu=mu, logvar=logvar)
    shape = common_shape(x=x, mu=mu, logvar=logvar)
    rows, cols = _rows(shape)
    x2, ld_x = on.rows_view(x, shape)
    mu2, ld_mu = on.rows_view(mu, shape)
    logvar2, ld_logvar = on.rows_view(logvar, shape)
    dmu, dlogvar, dx = (on.empty(shape, dtype) for _ in range(3))
    on.launch("gaussian.cu", "gaussian_log_density_grad", dtype, elementwise_blocks(rows * cols),
              THREADS, (x2, ld_x, mu2, ld_mu, logvar2, ld_logvar, dmu, dlogvar, dx,
                        np.int64(rows), np.int64(cols)))
    return dmu, dlogvar, dx
