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
    launch.py          compiling a .cu file with CuPy, the kernels' signatures, launching
    distributions.py, activations.py, optim.py   the Python wrappers, named like their references
    cpu/               the same kernels compiled for the CPU, to test them without a GPU
    README.md          grids, blocks, threads and barriers, and how the CPU runs them

Each kernel sits beside the NumPy reference it must match: the wrapper's docstring
names it, and the tests check the two agree (float64 to 1e-12, float32 to 1e-5) on
the CPU harness (``tests/test_kernels_cpu.py``, every CI run) and on a GPU
(``tests/test_kernels.py``).

The switch, in one place: a reference function of the library is only its formula,
marked with the kernel that may replace it::

    @kernels.fused_by("kl_standard_normal")
    def kl_standard_normal(mu, logvar):
        return 0.5 * (mu * mu + xp.exp(logvar) - 1.0 - logvar).sum(axis=-1)

:func:`fused_by` calls the kernel's wrapper instead of the formula when
:func:`active` says so: the kernels are enabled (the default;
``SCRATCHVAE_KERNELS=0`` in the environment starts with them off) and every array
argument is a CuPy array of one float dtype. NumPy arrays never reach a kernel, and
``kl_standard_normal.reference`` is the formula itself on any arrays. Compare the
two GPU paths with::

    with scratchvae.kernels.use_kernels(False):
        model.elbo(x)          # plain CuPy expressions

Importing this package needs neither CuPy nor a GPU; launching a kernel needs both
(or the CPU harness of :mod:`scratchvae.kernels.cpu`).
"""
import functools
import inspect
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
    bernoulli_log_likelihood_and_grad,
    bernoulli_log_likelihood_grad,
    gaussian_log_density,
    gaussian_log_density_grad,
    kl_standard_normal,
    kl_standard_normal_grad,
    reparameterize,
    reparameterize_backward,
)
from .launch import GPU, KERNELS, LAUNCHES
from .optim import adagrad_update, adam_update

__all__ = [
    "GPU",
    "KERNELS",
    "LAUNCHES",
    "active",
    "adagrad_update",
    "adam_update",
    "bernoulli_log_likelihood",
    "bernoulli_log_likelihood_and_grad",
    "bernoulli_log_likelihood_grad",
    "enabled",
    "fused_by",
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


HAVE_CUPY = cupy is not None


def active(*arrays):
    """True when a kernel should replace the array expression for these arrays: the
    kernels are enabled and all arrays are CuPy arrays, of one float dtype, with at
    least one axis. Cheap on NumPy arrays (one isinstance check), so the CPU path
    pays nothing for it."""
    if not _enabled or cupy is None or not arrays or not isinstance(arrays[0], cupy.ndarray):
        return False
    dtype = arrays[0].dtype
    return dtype.name in _FLOATS and all(
        isinstance(a, cupy.ndarray) and a.dtype == dtype and a.ndim > 0 for a in arrays)


def fused_by(kernel, args=None):
    """Mark a reference function (or method) as replaced by the fused kernel whose
    wrapper in this package is named ``kernel``, for CuPy arrays (see :func:`active`).

    The arrays checked are the call's arguments (a method's after ``self``). The
    wrapper receives the same arguments, or, for a method, what ``args`` makes of
    them: ``args=lambda self, p, g, h, blocks: (p, g, h, self.lr, self.eps)``. The
    decorated function keeps the formula as ``.reference`` and the kernel's name as
    ``.fused_kernel``. The wrapper is looked up when the call is made, so that a test
    can replace it."""
    def decorate(reference):
        signature = inspect.signature(reference)
        method = next(iter(signature.parameters), None) == "self"
        if method and args is None:
            raise TypeError(f"{reference.__qualname__}: a method needs args= to map its arguments")

        @functools.wraps(reference)
        def formula_or_kernel(*call, **named):
            if not HAVE_CUPY:   # no CuPy, no kernel: straight to the formula, at no cost
                return reference(*call, **named)
            # the operands; lists (an optimizer's blocks) are bookkeeping and stay out
            arrays = [a for a in (*(call[1:] if method else call), *named.values())
                      if not isinstance(a, (list, tuple))]
            if active(*arrays):
                if named:   # arguments given by name: put them in their places
                    call = signature.bind(*call, **named).args
                fused = globals()[kernel]
                return fused(*args(*call)) if args else fused(*call)
            return reference(*call, **named)

        formula_or_kernel.reference = reference
        formula_or_kernel.fused_kernel = kernel
        return formula_or_kernel
    return decorate
