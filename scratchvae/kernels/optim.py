"""The updates of ``scratchvae/optim.py`` as fused CUDA kernels (optim.cu), in place.

One launch per parameter tensor reads the gradient and the state once and writes
the state and the parameter once. ``on`` is where the kernel runs (see
:mod:`scratchvae.kernels.distributions`).
"""
import numpy as np

from .launch import GPU, THREADS, elementwise_blocks


def _check_in_place(on, **arrays):
    dtype = on.check_arrays(**arrays)
    shape = next(iter(arrays.values())).shape
    for name, a in arrays.items():
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape} but theta has {shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous to be updated in place")
    return dtype


def adam_update(theta, g, m, v, b1, b2, lr_t, eps_t, *, on=GPU):
    """m += (1 - b1)(g - m);  v += (1 - b2)(g^2 - v);  theta -= lr_t m / (sqrt(v) + eps_t),
    with the bias corrections folded into ``lr_t`` and ``eps_t`` as in :class:`scratchvae.Adam`.

    Reference: scratchvae.optim.Adam.update"""
    dtype = _check_in_place(on, theta=theta, g=g, m=m, v=v)
    T = dtype.type
    on.launch("optim.cu", "adam_update", dtype, elementwise_blocks(theta.size), THREADS,
              (theta, g, m, v, T(1 - b1), T(1 - b2), T(lr_t), T(eps_t),
               np.int64(theta.size)))


def adagrad_update(theta, g, h, lr, eps, *, on=GPU):
    """h = h + g^2;  theta -= lr g / (sqrt(h) + eps).

    Reference: scratchvae.optim.Adagrad.update"""
    dtype = _check_in_place(on, theta=theta, g=g, h=h)
    T = dtype.type
    on.launch("optim.cu", "adagrad_update", dtype, elementwise_blocks(theta.size), THREADS,
              (theta, g, h, T(lr), T(eps), np.int64(theta.size)))
