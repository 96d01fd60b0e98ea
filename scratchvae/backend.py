"""One code path for CPU and GPU: pick NumPy or CuPy from the arrays themselves.

Every function in scratchvae is written against an "array module" ``xp``:
``xp = get_array_module(x)`` is ``cupy`` when ``x`` lives on a GPU and ``numpy``
otherwise, so ``xp.exp(x)`` runs where ``x`` is.

The rule for mixed inputs: if *any* argument is a CuPy array the module is CuPy.
CuPy refuses to combine a device array with a host array implicitly (that would
hide a slow copy), so code that mixes them fails loudly at the first operation
instead of silently computing on the wrong device; move arrays explicitly with
:func:`to_device`, :func:`as_numpy` or :func:`as_cupy`.

CuPy is optional: ``import scratchvae`` works without it, and asking for the GPU
without it raises :class:`DeviceError` with the install command.
"""
import numbers
import os

import numpy as np

try:  # CuPy is an optional extra (pip install scratchvae[gpu])
    import cupy
except Exception:  # ImportError, or a CUDA library that fails to load
    cupy = None

DEVICES = ("cpu", "gpu", "auto")
INSTALL_HINT = ("install CuPy for your CUDA version, e.g. `pip install cupy-cuda12x` "
                "(or `pip install scratchvae[gpu]`; use cupy-cuda13x for CUDA 13)")


class DeviceError(RuntimeError):
    """The requested device cannot be used on this machine."""


def gpu_available():
    """True when CuPy is importable and sees at least one CUDA device."""
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, or no device
        return False


def is_cupy(x):
    return cupy is not None and isinstance(x, cupy.ndarray)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (see the module docstring)."""
    if cupy is not None:            # without CuPy every array is a NumPy array
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


def resolve_device(device="cpu"):
    """Map ``'cpu' | 'gpu' | 'auto'`` to ``'cpu'`` or ``'gpu'``; raise if the GPU is unusable."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return "gpu" if gpu_available() else "cpu"
    if device == "gpu":
        if cupy is None:
            raise DeviceError(f"device='gpu' needs CuPy, which is not installed: {INSTALL_HINT}")
        if not gpu_available():
            raise DeviceError("device='gpu' but CuPy finds no CUDA GPU on this machine (use "
                              "device='cpu' or 'auto'; on a machine with an NVIDIA GPU, check its "
                              f"driver and that CuPy matches its CUDA version: {INSTALL_HINT})")
    return device


def xp_for(device):
    """The array module for a device name."""
    return cupy if resolve_device(device) == "gpu" else np


def device_of(x):
    return "gpu" if is_cupy(x) else "cpu"


def as_numpy(x):
    """A NumPy array with the values of ``x`` (copies from the GPU if needed)."""
    return cupy.asnumpy(x) if is_cupy(x) else np.asarray(x)


def as_cupy(x):
    """A CuPy array with the values of ``x`` (copies to the GPU if needed)."""
    if is_cupy(x):
        return x
    resolve_device("gpu")  # a DeviceError with the remedy, not a CUDA runtime error
    return cupy.asarray(x)


def to_device(x, device):
    """Move ``x`` to ``'cpu'`` or ``'gpu'`` (no copy when it is already there)."""
    return as_cupy(x) if resolve_device(device) == "gpu" else as_numpy(x)


def resolve_dtype(dtype="float32"):
    """float32 by default (speed), float64 on request (gradient checks)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_seed(name, value):
    """A seed for a random generator: None (fresh entropy) or an integer >= 0, returned as an
    int; a TypeError or ValueError naming ``name`` otherwise. (Here, beside the generators it
    seeds, so that this module imports nothing of the package; ``validation.seed`` is this.)"""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {value}")
    return int(value)


def make_rng(seed=None, device="cpu"):
    """A seeded random generator living on the device: NumPy's ``Generator``
    (PCG64) on the CPU, ``cupy.random.Generator`` (XORWOW) on the GPU.

    Both offer ``standard_normal(size, dtype=...)``, ``random(size, dtype=...)``
    and ``permutation(n)``; the two devices produce different streams."""
    seed = check_seed("seed", seed)
    if resolve_device(device) == "gpu":
        return cupy.random.default_rng(seed)
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------
# Threads of NumPy's matrix products
# ---------------------------------------------------------------------------------------
DEFAULT_THREADS = 1


def available_cores():
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS, Windows
        return os.cpu_count() or 1


def set_threads(n=DEFAULT_THREADS):
    """Let NumPy's BLAS (the library behind ``@``: OpenBLAS, MKL or BLIS) use ``n`` threads,
    in this process, from now on. Returns ``n``.

    The default is one thread: the matrices of this project (a batch of 100 images through
    layers of a few hundred units) are too small for a second thread to pay for its
    synchronisation, and when the cores are busy with other work, BLAS threads that wait
    for each other make training many times slower (README, "Threads"). Larger products
    (wide layers, large batches) may gain from ``n`` = the number of idle cores; more than
    the cores this process may use (:func:`available_cores`) is refused."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"threads must be a positive integer, got {n!r}")
    if n <= 0:
        raise ValueError(f"threads must be a positive integer, got {n}")
    if n > available_cores():
        raise ValueError(f"threads must be at most {available_cores()}, the cores this process may "
                         f"use, got {n}: BLAS threads beyond the cores only wait for each other")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
    return n
