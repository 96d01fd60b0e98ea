"""Hand-written CUDA kernels for the hot steps of a VAE training step on the GPU.

On CuPy arrays every function of scratchvae already runs on the GPU, one CuPy
operation (one kernel launch) per array expression: ``dy * (1 - y * y)`` is three
launches and three temporaries. The kernels here fuse such an expression into one
launch that reads each input once and writes each output once. Where to read:

    common.cuh         the layout (rows, cols, leading dimension), sigmoid, softplus, a block sum
    reparameterize.cu  z = mu + exp(logvar/2) eps, and back        (distributions.reparameterize*)
    kl.cu              KL(q || N(0, I)) per row, and its gradient  (distributions.kl_standard_normal*)
    bernoulli.cu       log p(x | logits) per row, and its gradient (distributions.bernoulli_*)
    gaussian.cu        log N(x; mu, exp(logvar)) per row, gradients (distributions.gaussian_log_density*)
    activations.cu     tanh, relu, sigmoid, softplus, forward and backward (activations)
    optim.cu           fused Adam and Adagrad updates                (optim.Adam, optim.Adagrad)
    launch.py          compiling a .cu file with CuPy and launching a kernel
    distributions.py, activations.py, optim.py   the Python wrappers, named like their references

Each kernel sits beside the NumPy reference it must match: the wrapper's docstring
names it, and ``tests/test_kernels.py`` checks the two agree (float64 to 1e-12,
float32 to 1e-5) on a GPU.

The switch: the library's own functions (in ``scratchvae.distributions``,
``scratchvae.activations`` and the optimizers) call a kernel instead of their
array expression when :func:`active` says so: the kernels are enabled (the
default; ``SCRATCHVAE_KERNELS=0`` in the environment starts with them off) and
every array is a CuPy array of one float dtype. NumPy arrays never reach a kernel.
Compare the two GPU paths with::

    with scratchvae.kernels.use_kernels(False):
        model.elbo(x)          # plain CuPy expressions

Importing this package needs neither CuPy nor a GPU; launching a kernel needs both.
"""
import os
from contextlib import contextmanager

from ..backend import cupy
from .activations import (
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from .distributions import (
    bernoulli_log_likelihood,
    bernoulli_log_likelihood_grad,
    gaussian_log_density,
    gaussian_log_density_grad,
    kl_standard_normal,
    kl_standard_normal_grad,
    reparameterize,
    reparameterize_backward,
)
from .launch import KERNELS, LAUNCHES
from .optim import adagrad_update, adam_update

__all__ = [
    "KERNELS",
    "LAUNCHES",
    "active",
    "adagrad_update",
    "adam_update",
    "bernoulli_log_likelihood",
    "bernoulli_log_likelihood_grad",
    "enabled",
    "gaussian_log_density",
    "gaussian_log_density_grad",
    "kl_standard_normal",
    "kl_standard_normal_grad",
    "relu",
    "relu_backward",
    "reparameterize",
    "reparameterize_backward",
    "set_enabled",
    "sigmoid",
    "sigmoid_backward",
    "softplus",
    "softplus_backward",
    "tanh",
    "tanh_backward",
    "use_kernels",
]

_enabled = os.environ.get("SCRATCHVAE_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")
_FLOATS = ("float32", "float64")


def enabled():
    """Whether the library calls the kernels for CuPy arrays (see :func:`active`)."""
    return _enabled


def set_enabled(flag):
    """Switch the kernels on or off for the whole process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(flag)
    return previous


@contextmanager
def use_kernels(flag=True):
    """``with use_kernels(False): ...`` runs the block on plain CuPy expressions (or
    ``True``: on the kernels), and restores the previous setting afterwards."""
    previous = set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def active(*arrays):
    """True when a kernel should replace the array expression for these arrays: the
    kernels are enabled and all arrays are CuPy arrays, of one float dtype, with at
    least one axis. Cheap on NumPy arrays (one isinstance check), so the CPU path
    pays nothing for it."""
    if not _enabled or cupy is None or not isinstance(arrays[0], cupy.ndarray):
        return False
    dtype = arrays[0].dtype
    return dtype.name in _FLOATS and all(
        isinstance(a, cupy.ndarray) and a.dtype == dtype and a.ndim > 0 for a in arrays)
