r"""Elementwise nonlinearities: each function beside its derivative, then as layers.

The formulas are written with ``exp`` and ``tanh`` only, which are vectorized in
NumPy (``scipy.special.expit`` and ``np.logaddexp`` loop per element and are much
slower), and arranged so that no intermediate overflows:

.. math::

    \operatorname{sigmoid}(a) &= \frac{1}{1 + \exp(-a)} = \frac{1 + \tanh(a/2)}{2} \\
    \operatorname{softplus}(a) &= \log(1 + \exp(a)) = \max(a, 0) + \log(1 + \exp(-|a|))

Each backward takes the upstream gradient ``dy`` and what the layer's forward kept
(the output :math:`y`, or the input :math:`a` for softplus). On CuPy arrays each of these functions
runs as one CUDA kernel of ``scratchvae.kernels`` (activations.cu), as its
``@kernels.fused_by`` line says; the formula below it is the kernel's reference.
"""
from . import kernels
from .backend import get_array_module
from .module import Module


@kernels.fused_by("tanh")
def tanh(a):
    return get_array_module(a).tanh(a)


@kernels.fused_by("tanh_backward")
def tanh_backward(dy, y):
    r""":math:`da = dy\, (1 - y^2)` for :math:`y = \tanh(a)`:
    :math:`\frac{d}{da} \tanh(a) = 1 - \tanh(a)^2`, written with the output :math:`y` that the
    forward kept. ``dy`` is the gradient of the loss with respect to :math:`y`."""
    return dy * (1 - y * y)


@kernels.fused_by("relu")
def relu(a):
    xp = get_array_module(a)
    return xp.maximum(a, xp.zeros_like(a))  # against an array: NumPy's scalar path is ~2x slower


@kernels.fused_by("relu_backward")
def relu_backward(dy, y):
    r""":math:`da = dy\, \operatorname{relu}^\prime(a)` for
    :math:`y = \operatorname{relu}(a) = \max(a, 0)`: :math:`\operatorname{relu}^\prime(a) = 1`
    where :math:`a > 0` (that is, where :math:`y > 0`) and 0 elsewhere (0 at the kink
    :math:`a = 0`), read from the output :math:`y` that the forward kept.
    ``dy`` is the gradient of the loss with respect to :math:`y`."""
    return dy * (y > 0)


@kernels.fused_by("sigmoid")
def sigmoid(a):
    xp = get_array_module(a)
    return 0.5 * (1.0 + xp.tanh(0.5 * a))


@kernels.fused_by("sigmoid_backward")
def sigmoid_backward(dy, y):
    r""":math:`da = dy\, y (1 - y)` for :math:`y = \operatorname{sigmoid}(a)`:
    :math:`\frac{d}{da} \operatorname{sigmoid}(a)
    = \operatorname{sigmoid}(a) \big(1 - \operatorname{sigmoid}(a)\big)`, written with the output
    :math:`y` that the forward kept. ``dy`` is the gradient of the loss with respect to :math:`y`."""
    return dy * y * (1 - y)


@kernels.fused_by("softplus")
def softplus(a):
    xp = get_array_module(a)
    return xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))


@kernels.fused_by("softplus_backward")
def softplus_backward(dy, a):
    r""":math:`da = dy\, \operatorname{sigmoid}(a)` for
    :math:`y = \operatorname{softplus}(a) = \log(1 + \exp(a))`:
    :math:`\frac{d}{da} \log(1 + \exp(a)) = \frac{\exp(a)}{1 + \exp(a)}
    = \operatorname{sigmoid}(a)`.
    Takes the input :math:`a` (what the forward keeps); ``dy`` is the gradient of the loss with
    respect to :math:`y`."""
    return dy * sigmoid(a)


class Identity(Module):
    """:math:`y = a`."""

    def forward(self, a):
        return a

    def backward(self, dy):
        return dy


class Tanh(Module):
    r""":math:`y = \tanh(a)`; :math:`\frac{dy}{da} = 1 - y^2`."""

    def forward(self, a):
        y = tanh(a)
        self.cache = y
        return y

    def backward(self, dy):
        return tanh_backward(dy, self.cache)


class ReLU(Module):
    r""":math:`y = \max(a, 0)`; :math:`\frac{dy}{da} = 1` if :math:`a > 0`, else 0 (we take 0 at
    the kink :math:`a = 0`)."""

    def forward(self, a):
        y = relu(a)
        self.cache = y
        return y

    def backward(self, dy):
        return relu_backward(dy, self.cache)


class Sigmoid(Module):
    r""":math:`y = \operatorname{sigmoid}(a)`; :math:`\frac{dy}{da} = y (1 - y)`."""

    def forward(self, a):
        y = sigmoid(a)
        self.cache = y
        return y

    def backward(self, dy):
        return sigmoid_backward(dy, self.cache)


class Softplus(Module):
    r""":math:`y = \log(1 + \exp(a))`; :math:`\frac{dy}{da} = \operatorname{sigmoid}(a)`."""

    def forward(self, a):
        self.cache = a
        return softplus(a)

    def backward(self, dy):
        return softplus_backward(dy, self.cache)


ACTIVATIONS = {"identity": Identity, "tanh": Tanh, "relu": ReLU,
               "sigmoid": Sigmoid, "softplus": Softplus}
