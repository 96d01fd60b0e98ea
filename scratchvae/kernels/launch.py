"""From a ``.cu`` file to a running kernel: compile with CuPy, pick the dtype, launch.

Each ``.cu`` file of this folder holds kernel *templates* on the element type T.
:data:`KERNELS` lists them per file; :func:`name_expressions` spells the instances
the Python side uses (``'kl_standard_normal_rows<float>'``, ``...<double>'``).
CuPy compiles a file once, with NVRTC, the first time one of its kernels runs
(``cupy.RawModule(..., name_expressions=...)``) and caches the binary on disk;
``python -m scratchvae.kernels.build`` compiles the same files with ``nvcc``
where there is no GPU, so that a typo shows up without one.

Nothing here imports CuPy at module level: ``import scratchvae.kernels`` works
without it, and only launching a kernel needs a GPU.
"""
import functools
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .. import backend

HERE = Path(__file__).resolve().parent

# file -> the kernel templates it defines (tests/test_kernels.py checks this against the sources)
KERNELS = {
    "reparameterize.cu": ("reparameterize_forward", "reparameterize_backward"),
    "kl.cu": ("kl_standard_normal_rows", "kl_standard_normal_grad"),
    "bernoulli.cu": ("bernoulli_log_likelihood_rows", "bernoulli_log_likelihood_grad"),
    "gaussian.cu": ("gaussian_log_density_rows", "gaussian_log_density_grad"),
    "activations.cu": ("tanh_forward", "relu_forward", "sigmoid_forward", "softplus_forward",
                       "tanh_backward", "relu_backward", "sigmoid_backward", "softplus_backward"),
    "optim.cu": ("adam_update", "adagrad_update"),
}
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
THREADS = 256       # threads per block of the elementwise kernels
ROW_THREADS = 256   # threads per block of the row kernels: must equal ROW_THREADS in common.cuh

# How many times each kernel was launched in this process: tests read it to see that
# the kernels really ran, and it is a quick way to count the launches of a training step.
LAUNCHES = Counter()

_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$')


def name_expressions(filename):
    """The template instances of one file the wrappers launch, float and double."""
    return [f"{name}<{ctype}>" for name in KERNELS[filename] for ctype in CTYPES.values()]


def source(filename):
    """The text of ``filename`` with its local ``#include "..."`` lines pasted in.

    NVRTC compiles a string, and CuPy's disk cache is keyed by that string, so the
    header goes into it: an edit of ``common.cuh`` then recompiles every file. The
    ``#line`` directives keep compiler messages pointing at the real file and line."""
    out = []
    for number, line in enumerate((HERE / filename).read_text().splitlines(), start=1):
        match = _INCLUDE.match(line)
        if match:
            out += [f'#line 1 "{match[1]}"', (HERE / match[1]).read_text(),
                    f'#line {number + 1} "{filename}"']
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _require_cupy():
    if backend.cupy is None:
        raise backend.DeviceError(f"the CUDA kernels need CuPy: {backend.INSTALL_HINT}")
    return backend.cupy


@functools.cache
def _module(filename, device_id):
    """One module per file and device: CuPy compiles it for the current device on first use."""
    return _require_cupy().RawModule(code=source(filename), name_expressions=name_expressions(filename))


@functools.cache
def kernel(filename, name, dtype, device_id):
    """The compiled instance ``name<float>`` or ``name<double>`` of ``filename`` for
    ``dtype``, on the current device (whose number is ``device_id``)."""
    if name not in KERNELS[filename]:
        raise KeyError(f"{filename} defines no kernel {name!r}; it defines {KERNELS[filename]}")
    return _module(filename, device_id).get_function(f"{name}<{CTYPES[np.dtype(dtype)]}>")


def launch(filename, name, dtype, blocks, threads, args):
    """Run ``blocks`` x ``threads`` threads of the kernel on the current CUDA stream."""
    if blocks == 0:
        return  # an empty array: nothing to do, and CUDA rejects an empty grid
    device_id = backend.cupy.cuda.runtime.getDevice()
    kernel(filename, name, dtype, device_id)((blocks,), (threads,), args)
    LAUNCHES[name] += 1


def elementwise_blocks(n):
    """Blocks of :data:`THREADS` threads that cover ``n`` elements, one thread each."""
    return math.ceil(n / THREADS)


def common_shape(**arrays):
    """The shape the named arrays broadcast to (a ValueError names them if they do not)."""
    shapes = [a.shape for a in arrays.values()]
    if all(s == shapes[0] for s in shapes):
        return shapes[0]  # the usual case, without NumPy's slower general rule
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        described = ", ".join(f"{n} {a.shape}" for n, a in arrays.items())
        raise ValueError(f"shapes do not broadcast: {described}") from None


def rows_view(a, shape):
    """``a``, broadcast to ``shape``, as a 2-D array of rows of ``shape[-1]`` values,
    with its leading dimension ``ld`` (the distance between rows, in elements).

    A contiguous array or a column slice such as ``h[:, :Z]`` becomes a view (no
    copy); anything else (a transposed or broadcast array) is copied to a contiguous
    one first, which is always correct, only slower."""
    cupy = backend.cupy
    cols = shape[-1]
    rows = math.prod(shape[:-1])
    if a.shape != shape:
        a = cupy.broadcast_to(a, shape)
    v = a if a.ndim == 2 else a.reshape(rows, cols)  # a view whenever the axes merge
    if cols > 1 and v.strides[1] != v.itemsize:
        v = cupy.ascontiguousarray(v)
    ld = v.strides[0] // v.itemsize if rows > 1 else cols
    return v, np.int64(ld)


def check_arrays(**arrays):
    """The common dtype of CuPy arrays given by name; a TypeError names the first misfit."""
    cupy = _require_cupy()
    dtype = None
    for name, a in arrays.items():
        if not isinstance(a, cupy.ndarray):
            raise TypeError(f"{name} must be a CuPy array, got {type(a).__name__}")
        if a.dtype not in CTYPES:
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
        if a.ndim == 0:
            raise ValueError(f"{name} must have at least one axis, got a 0-d array")
        if dtype is not None and a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but the other arrays have {dtype}")
        dtype = a.dtype
    return dtype
