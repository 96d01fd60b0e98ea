"""Linear layers and the MLP container, each ``forward`` beside its ``backward``.

Shapes follow the row convention: a batch ``x`` is ``(B, in_dim)``, ``W`` is
``(in_dim, out_dim)`` and :math:`y = x W + b` is ``(B, out_dim)``.
"""
import functools
import math

import numpy as np

from . import validation
from .activations import ACTIVATIONS
from .backend import get_array_module, resolve_dtype, to_device, xp_for
from .module import Module

INITS = ("paper", "paper-variance", "glorot", "he", "pytorch")


def init_weights(in_dim, out_dim, init, rng):
    r"""Initial ``(W, b)`` on the host, in float64, drawn from ``rng``, with :math:`n_\text{in}`
    = ``in_dim`` and :math:`n_\text{out}` = ``out_dim``:

    - ``paper``: :math:`W, b \sim \mathcal{N}(0, 0.01^2)`, standard deviation 0.01, as the
      authors' code draws them (``anglepy``, 2014: ``init_w(std=1e-2)``)
    - ``paper-variance``: :math:`W, b \sim \mathcal{N}(0, 0.01)` with 0.01 the *variance*
      (standard deviation 0.1): the paper's "N(0, 0.01)" (Kingma & Welling 2013, section 5)
      read in its own notation, where :math:`\mathcal{N}(\mu, \sigma^2)` names the variance
    - ``glorot``: :math:`W \sim \mathcal{U}(-r, r)` with
      :math:`r = \sqrt{6 / (n_\text{in} + n_\text{out})}`; :math:`b = 0` (Glorot & Bengio 2010)
    - ``he``: :math:`W \sim \mathcal{N}(0, 2 / n_\text{in})`; :math:`b = 0`
      (He et al. 2015, for ReLU)
    - ``pytorch``: :math:`W, b \sim \mathcal{U}(-r, r)` with :math:`r = 1 / \sqrt{n_\text{in}}`
      (``torch.nn.Linear``'s default)
    """
    validation.choice("init", init, INITS)
    shape = (in_dim, out_dim)
    if init.startswith("paper"):
        sd = 0.01 if init == "paper" else 0.1
        return rng.normal(0.0, sd, shape), rng.normal(0.0, sd, out_dim)
    if init == "glorot":
        r = math.sqrt(6.0 / (in_dim + out_dim))
        return rng.uniform(-r, r, shape), np.zeros(out_dim)
    if init == "he":
        return rng.normal(0.0, math.sqrt(2.0 / in_dim), shape), np.zeros(out_dim)
    r = 1.0 / math.sqrt(in_dim)
    return rng.uniform(-r, r, shape), rng.uniform(-r, r, out_dim)


def linear_backward(dy, x, W):
    r"""The backward of :math:`y = x W + b`, for the gradient ``dy`` (B, out) of the loss with
    respect to :math:`y`, the input ``x`` (B, in) and the weights ``W`` (in, out):

    .. math::

        dx &= dy\, W^\top \\
        dW &= x^\top dy \\
        db &= \sum_b dy_b

    ``dx`` is (B, in): :math:`y_{bj} = \sum_i x_{bi} W_{ij} + b_j`, so :math:`dy_{bj}` reaches
    :math:`x_{bi}` through :math:`W_{ij}`. ``dW`` is (in, out), the sum over the batch of
    :math:`x_{bi}\, dy_{bj}`. ``db`` is (out,): :math:`b` is added to every row.

    Returns ``(dx, dW, db)``. (``Linear.backward`` computes the same numbers, writing ``dW`` and
    ``db`` into the model's gradient buffer in place and skipping ``dx`` for the first layer.)"""
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)


def mlp_backward(layers, dy):
    r"""The chain rule over a list of layers (an MLP's ``layers``, forward already run): the
    gradient ``dy`` of the loss with respect to the last layer's output goes back through
    every layer, last to first, each ``layer.backward(dy)`` filling that layer's parameter
    gradients and returning the gradient with respect to its input. With :math:`J_k` the
    Jacobian of layer :math:`f_k` at its input:

    .. math::

        y = f_n(\cdots f_2(f_1(x))), \qquad
        dx = J_1^\top \big(J_2^\top (\cdots J_n^\top dy)\big)

    Returns ``dx``, the gradient with respect to the first layer's input."""
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return dy


class Linear(Module):
    r""":math:`y = x W + b`.

    Backward, for the gradient ``dy`` of the loss with respect to :math:`y`:
    :math:`dW = x^\top dy`, :math:`db = \sum_b dy_b` (a sum over the batch),
    :math:`dx = dy\, W^\top`.

    Initial values are drawn on the host with NumPy (so CPU and GPU models built
    with the same seed start identical) and then moved to ``device``.
    """

    def __init__(self, in_dim, out_dim, init="glorot", rng=None, dtype="float32", device="cpu"):
        super().__init__()
        self.in_dim = validation.positive_int("in_dim", in_dim)
        self.out_dim = validation.positive_int("out_dim", out_dim)
        rng = np.random.default_rng() if rng is None else rng
        dtype = resolve_dtype(dtype)
        W, b = init_weights(self.in_dim, self.out_dim, init, rng)
        xp = xp_for(device)
        self.params = {"W": to_device(W.astype(dtype), device), "b": to_device(b.astype(dtype), device)}
        self.grads = {k: xp.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x):
        self.cache = x
        y = x @ self.params["W"]
        y += self.params["b"]         # in place: no second (B, out_dim) array
        return y

    def backward(self, dy, input_grad=True, defer=None):
        """Fill ``grads`` and return ``dx`` (None when ``input_grad`` is False: the
        first layer's input is the data, and ``dx`` would cost as much as the forward).

        The formulas of :func:`linear_backward`, written into the gradient buffer in place
        (the tests hold the two equal).

        ``defer`` (a list) is for the overlapped training step only (training/overlap.py):
        ``dx`` needs ``W``, not ``dW``, so ``dW`` and ``db`` may wait. This call then appends the
        function that computes them (this method with ``input_grad=False``) to ``defer`` and
        returns ``dx``."""
        if defer is not None:
            defer.append(functools.partial(self.backward, dy, input_grad=False))
            return dy @ self.params["W"].T if input_grad else None
        x = self.cache
        xp = get_array_module(x, dy)
        xp.matmul(x.T, dy, out=self.grads["W"])   # dW = x^T dy, written in place
        dy.sum(axis=0, out=self.grads["b"])       # db = sum over the batch of dy
        return dy @ self.params["W"].T if input_grad else None

    def __repr__(self):
        return f"Linear({self.in_dim}, {self.out_dim})"


class MLP(Module):
    r"""Linear layers with an activation between them (``activation``, and ``out_activation``
    after the last):

    .. math::

        h_1 = \operatorname{act}(x W_1 + b_1), \quad \ldots, \quad
        y = \operatorname{act}_\text{out}(h_{n-1} W_n + b_n)

    ``sizes = [in_dim, hidden..., out_dim]``. Parameters are named like PyTorch's
    ``Sequential``: ``'0.W'``, ``'0.b'``, ``'2.W'``, ... (odd indices are activations).
    """

    def __init__(self, sizes, activation="relu", out_activation="identity", init="glorot",
                 rng=None, dtype="float32", device="cpu"):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {sizes}")
        for i, s in enumerate(sizes):
            validation.positive_int(f"sizes[{i}]", s)
        validation.choice("activation", activation, ACTIVATIONS)
        validation.choice("out_activation", out_activation, ACTIVATIONS)
        rng = np.random.default_rng() if rng is None else rng
        self.sizes = sizes
        self.layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.layers.append(Linear(n_in, n_out, init, rng, dtype, device))
            last = i == len(sizes) - 2
            self.layers.append(ACTIVATIONS[out_activation if last else activation]())
        self.flatten_parameters()   # every W and b in one buffer (see scratchvae.module)

    def children(self):
        return {str(i): layer for i, layer in enumerate(self.layers) if layer.params}

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy, input_grad=True, defer=None):
        """Backpropagate ``dy`` through every layer (:func:`mlp_backward`); the gradient with
        respect to the input (returned) is skipped when ``input_grad`` is False. (``defer``:
        the overlapped training step's, passed to every Linear layer; see :meth:`Linear.backward`.)"""
        if defer is not None:
            for layer in reversed(self.layers[1:]):
                dy = layer.backward(dy, defer=defer) if isinstance(layer, Linear) else layer.backward(dy)
            return self.layers[0].backward(dy, input_grad=input_grad, defer=defer)
        if input_grad:
            return mlp_backward(self.layers, dy)
        return self.layers[0].backward(mlp_backward(self.layers[1:], dy), input_grad=False)

    def __repr__(self):
        return f"MLP({self.sizes}, {type(self.layers[1]).__name__}, {type(self.layers[-1]).__name__})"
