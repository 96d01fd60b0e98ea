"""The activations of ``scratchvae/activations.py`` as CUDA kernels (activations.cu).

Forward: ``y = f(a)``. Backward: ``da`` from the upstream gradient ``dy`` and what the
layer's forward kept in its cache (the output y for tanh, relu and sigmoid, the input
a for softplus). Each docstring names the NumPy reference it must match; ``on`` is
where the kernel runs (see :mod:`scratchvae.kernels.distributions`).
"""
import numpy as np

from .launch import GPU, THREADS, common_shape, elementwise_blocks


def _forward(kernel, a, on):
    dtype = on.check_arrays(a=a)
    a2, ld_a = on.rows_view(a, a.shape)
    y = on.empty(a.shape, dtype)
    rows, cols = (np.int64(n) for n in a2.shape)
    on.launch("activations.cu", kernel, dtype, elementwise_blocks(rows * cols), THREADS,
              (a2, ld_a, y, rows, cols))
    return y


def _backward(kernel, dy, cached, cached_name, on):
    dtype = on.check_arrays(dy=dy, **{cached_name: cached})
    shape = common_shape(dy=dy, **{cached_name: cached})
    dy2, ld_dy = on.rows_view(dy, shape)
    cached2, ld_cached = on.rows_view(cached, shape)
    da = on.empty(shape, dtype)
    rows, cols = (np.int64(n) for n in dy2.shape)
    on.launch("activations.cu", kernel, dtype, elementwise_blocks(rows * cols), THREADS,
              (dy2, ld_dy, cached2, ld_cached, da, rows, cols))
    return da


def tanh(a, *, on=GPU):
    """y = tanh(a).  Reference: scratchvae.activations.tanh"""
    return _forward("tanh_forward", a, on)


def relu(a, *, on=GPU):
    """y = max(a, 0).  Reference: scratchvae.activations.relu"""
    return _forward("relu_forward", a, on)


def sigmoid(a, *, on=GPU):
    """y = (1 + tanh(a / 2)) / 2.  Reference: scratchvae.activations.sigmoid"""
    return _forward("sigmoid_forward", a, on)


def softplus(a, *, on=GPU):
    """y = max(a, 0) + log(1 + exp(-|a|)).  Reference: scratchvae.activations.softplus"""
    return _forward("softplus_forward", a, on)


def tanh_backward(dy, y, *, on=GPU):
    """da = dy (1 - y^2).  Reference: scratchvae.activations.tanh_backward"""
    return _backward("tanh_backward", dy, y, "y", on)


def relu_backward(dy, y, *, on=GPU):
    """da = dy [y > 0].  Reference: scratchvae.activations.relu_backward"""
    return _backward("relu_backward", dy, y, "y", on)


def sigmoid_backward(dy, y, *, on=GPU):
    """da = dy y (1 - y).  Reference: scratchvae.activations.sigmoid_backward"""
    return _backward("sigmoid_backward", dy, y, "y", on)


def softplus_backward(dy, a, *, on=GPU):
    """da = dy sigmoid(a).  Reference: scratchvae.activations.softplus_backward"""
    return _backward("softplus_backward", dy, a, "a", on)
