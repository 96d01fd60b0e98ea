"""The activations of ``scratchvae/activations.py`` as CUDA kernels (activations.cu).

Forward: ``y = f(a)``. Backward: ``da`` from the upstream gradient ``dy`` and what the
layer's forward kept in its cache (the output y for tanh, relu and sigmoid, the input
a for softplus). Each docstring names the NumPy reference it must match.
"""
import numpy as np

from ..backend import cupy
from .launch import THREADS, check_arrays, common_shape, elementwise_blocks, launch, rows_view


def _forward(kernel, a):
    dtype = check_arrays(a=a)
    a2, ld_a = rows_view(a, a.shape)
    y = cupy.empty(a.shape, dtype)
    rows, cols = (np.int64(n) for n in a2.shape)
    launch("activations.cu", kernel, dtype, elementwise_blocks(rows * cols), THREADS,
           (a2, ld_a, y, rows, cols))
    return y


def _backward(kernel, dy, cached, cached_name):
    dtype = check_arrays(dy=dy, **{cached_name: cached})
    shape = common_shape(dy=dy, **{cached_name: cached})
    dy2, ld_dy = rows_view(dy, shape)
    cached2, ld_cached = rows_view(cached, shape)
    da = cupy.empty(shape, dtype)
    rows, cols = (np.int64(n) for n in dy2.shape)
    launch("activations.cu", kernel, dtype, elementwise_blocks(rows * cols), THREADS,
           (dy2, ld_dy, cached2, ld_cached, da, rows, cols))
    return da


def tanh(a):
    """y = tanh(a).  Reference: scratchvae.activations.Tanh.forward"""
    return _forward("tanh_forward", a)


def relu(a):
    """y = max(a, 0).  Reference: scratchvae.activations.ReLU.forward"""
    return _forward("relu_forward", a)


def sigmoid(a):
    """y = (1 + tanh(a / 2)) / 2.  Reference: scratchvae.activations.sigmoid"""
    return _forward("sigmoid_forward", a)


def softplus(a):
    """y = max(a, 0) + log(1 + exp(-|a|)).  Reference: scratchvae.activations.softplus"""
    return _forward("softplus_forward", a)


def tanh_backward(dy, y):
    """da = dy (1 - y^2).  Reference: scratchvae.activations.Tanh.backward"""
    return _backward("tanh_backward", dy, y, "y")


def relu_backward(dy, y):
    """da = dy [y > 0].  Reference: scratchvae.activations.ReLU.backward"""
    return _backward("relu_backward", dy, y, "y")


def sigmoid_backward(dy, y):
    """da = dy y (1 - y).  Reference: scratchvae.activations.Sigmoid.backward"""
    return _backward("sigmoid_backward", dy, y, "y")


def softplus_backward(dy, a):
    """da = dy sigmoid(a).  Reference: scratchvae.activations.Softplus.backward"""
    return _backward("softplus_backward", dy, a, "a")
