"""Elementwise nonlinearities: each function beside its derivative, then as layers.

The formulas are written with ``exp`` and ``tanh`` only, which are vectorized in
NumPy (``scipy.special.expit`` and ``np.logaddexp`` loop per element and are much
slower), and arranged so that no intermediate overflows:

    sigmoid(a)  = 1 / (1 + exp(-a)) = (1 + tanh(a / 2)) / 2
    softplus(a) = log(1 + exp(a))   = max(a, 0) + log(1 + exp(-|a|))

On CuPy arrays the forward and backward of each activation run as one CUDA kernel of
:mod:`scratchvae.kernels` (activations.cu) when ``kernels.active(...)`` says so.
"""
from . import kernels
from .backend import get_array_module
from .module import Module


def sigmoid(a):
    if kernels.active(a):
        return kernels.sigmoid(a)
    xp = get_array_module(a)
    return 0.5 * (1.0 + xp.tanh(0.5 * a))


def softplus(a):
    if kernels.active(a):
        return kernels.softplus(a)
    xp = get_array_module(a)
    return xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))


class Identity(Module):
    """y = a."""

    def forward(self, a):
        return a

    def backward(self, dy):
        return dy


class Tanh(Module):
    """y = tanh(a);  dy/da = 1 - y^2."""

    def forward(self, a):
        xp = get_array_module(a)
        y = kernels.tanh(a) if kernels.active(a) else xp.tanh(a)
        self.cache = y
        return y

    def backward(self, dy):
        y = self.cache
        if kernels.active(dy, y):
            return kernels.tanh_backward(dy, y)
        return dy * (1 - y * y)


class ReLU(Module):
    """y = max(a, 0);  dy/da = 1 if a > 0 else 0 (we take 0 at the kink a = 0)."""

    def forward(self, a):
        xp = get_array_module(a)
        if kernels.active(a):
            y = kernels.relu(a)
        else:
            y = xp.maximum(a, xp.zeros_like(a))  # against an array: NumPy's scalar path is ~2x slower
        self.cache = y
        return y

    def backward(self, dy):
        y = self.cache
        if kernels.active(dy, y):
            return kernels.relu_backward(dy, y)
        return dy * (y > 0)


class Sigmoid(Module):
    """y = sigmoid(a);  dy/da = y (1 - y)."""

    def forward(self, a):
        y = sigmoid(a)
        self.cache = y
        return y

    def backward(self, dy):
        y = self.cache
        if kernels.active(dy, y):
            return kernels.sigmoid_backward(dy, y)
        return dy * y * (1 - y)


class Softplus(Module):
    """y = log(1 + exp(a));  dy/da = sigmoid(a)."""

    def forward(self, a):
        self.cache = a
        return softplus(a)

    def backward(self, dy):
        if kernels.active(dy, self.cache):
            return kernels.softplus_backward(dy, self.cache)
        return dy * sigmoid(self.cache)


ACTIVATIONS = {"identity": Identity, "tanh": Tanh, "relu": ReLU,
               "sigmoid": Sigmoid, "softplus": Softplus}
