"""From a ``.cu`` file to a running kernel: compile with CuPy, pick the dtype, launch.

Each ``.cu`` file of this folder holds kernel *templates* on the element type T.
:data:`KERNELS` lists them per file; :func:`name_expressions` spells the instances
the Python side uses (``'kl_standard_normal_rows<float>'``, ``...<double>'``).
CuPy compiles a file once, with NVRTC, the first time one of its kernels runs
(``cupy.RawModule(..., name_expressions=...)``) and caches the binary on disk;
``python -m scratchvae.kernels.build`` compiles the same files with ``nvcc``
where there is no GPU, so that a typo shows up without one.

A wrapper launches through a :class:`Launcher`: :data:`GPU` (CuPy) by default, or
the CPU harness of :mod:`scratchvae.kernels.cpu`, which runs the same launch (grid,
block, arguments) on NumPy arrays. :func:`signatures` reads each kernel's parameter
list from its source, and :func:`check_args` holds a launch's arguments to it.

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


# ---------------------------------------------------------------------------------------
# The kernels' signatures, read from the sources
# ---------------------------------------------------------------------------------------
_KERNEL = re.compile(r"template\s*<\s*typename\s+T\s*>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)")
_PARAMETER = re.compile(r"^(const\s+T\s*\*|T\s*\*|T|long\s+long)\s*(\w+)$")


@functools.cache
def signatures(filename):
    """``{kernel: ((type, name), ...)}`` for the kernel templates of ``filename``, read
    from the source: the type of each parameter is ``'const T*'`` (an input array),
    ``'T*'`` (an output), ``'T'`` (a scalar of the element type) or ``'long long'``."""
    found = {}
    for match in _KERNEL.finditer((HERE / filename).read_text()):
        params = []
        for text in match[2].split(","):
            parsed = _PARAMETER.match(" ".join(text.split()))
            if parsed is None:
                raise ValueError(f"{filename}: {match[1]}: cannot read the parameter {text.strip()!r}")
            params.append((re.sub(r"\s*\*", "*", parsed[1]), parsed[2]))
        found[match[1]] = tuple(params)
    return found


def check_args(filename, name, dtype, args):
    """Check ``args`` against the parameters of ``name<T>`` in ``filename``, as the GPU
    would receive them; a TypeError or ValueError says which argument is wrong.

    On a GPU nothing checks this: CuPy hands the kernel the bytes of each argument,
    so a Python float (8 bytes, a double) where the kernel wants a float, an array of
    the wrong dtype, or a leading dimension that is not the array's row stride, would
    silently give wrong numbers. An array passed with its leading dimension (a
    parameter ``x`` followed by ``ld_x``) must have rows of adjacent elements that lie
    ``ld_x`` apart; any other array must be C-contiguous."""
    params = signatures(filename)[name]
    ctype = CTYPES[np.dtype(dtype)]
    where = f"{name}<{ctype}> ({filename})"
    if len(args) != len(params):
        raise TypeError(f"{where} takes {len(params)} arguments "
                        f"({', '.join(n for _, n in params)}), got {len(args)}")
    for k, ((kind, pname), arg) in enumerate(zip(params, args)):
        what = f"{where}: argument {k} ({kind.replace('T', ctype)} {pname})"
        if kind.endswith("*"):
            if isinstance(arg, np.generic) or not hasattr(arg, "strides"):
                raise TypeError(f"{what} must be an array, got {type(arg).__name__}")
            if arg.dtype != dtype:
                raise TypeError(f"{what} must be a {ctype} array, got {arg.dtype}")
            if kind == "T*" and not arg.flags.writeable:
                raise ValueError(f"{what} is written by the kernel but the array is read-only")
            ld = dict(zip((n for _, n in params), args)).get(f"ld_{pname}")
            if ld is None:
                if not arg.flags.c_contiguous:
                    raise ValueError(f"{what} must be C-contiguous")
            elif arg.ndim != 2 or (arg.shape[1] > 1 and arg.strides[1] != arg.itemsize) or (
                    arg.shape[0] > 1 and arg.strides[0] != int(ld) * arg.itemsize):
                raise ValueError(f"{what}: its rows must be contiguous and ld_{pname} = {ld} "
                                 f"elements apart, got shape {arg.shape} and strides {arg.strides}")
        else:
            want = np.int64 if kind == "long long" else np.dtype(dtype).type
            if type(arg) is not want:
                raise TypeError(f"{what} must be numpy.{want.__name__}, got {type(arg).__name__}"
                                + (" (CuPy would pass a Python float as a double)"
                                   if isinstance(arg, float) and not isinstance(arg, np.generic) else ""))


# ---------------------------------------------------------------------------------------
# Where a kernel runs: CuPy on a GPU (GPU below) or the CPU harness (scratchvae.kernels.cpu)
# ---------------------------------------------------------------------------------------
class Launcher:
    """What a wrapper needs from the place its kernel runs: the array module ``xp``
    (outputs are allocated with it), the checks of its inputs and the launch itself.

    Every wrapper of this package takes ``on=`` (default :data:`GPU`) and does all its
    work through it: the shapes, the leading dimensions, the grid and the block, and
    the argument list are computed by the same lines whether the kernel then runs on a
    GPU or on the CPU harness, so a test of one is a test of the other."""
    name = "?"

    @property
    def xp(self):
        raise NotImplementedError

    def launch(self, filename, name, dtype, blocks, threads, args):
        """Run ``blocks`` x ``threads`` threads of ``name<T>`` of ``filename`` on ``args``."""
        raise NotImplementedError

    def empty(self, shape, dtype):
        """A new output array."""
        return self.xp.empty(shape, dtype)

    def check_arrays(self, **arrays):
        """The common dtype of arrays given by name; a TypeError names the first misfit."""
        xp = self.xp
        dtype = None
        for name, a in arrays.items():
            if not isinstance(a, xp.ndarray):
                raise TypeError(f"{name} must be a {self.name} array, got {type(a).__name__}")
            if a.dtype not in CTYPES:
                raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
            if a.ndim == 0:
                raise ValueError(f"{name} must have at least one axis, got a 0-d array")
            if dtype is not None and a.dtype != dtype:
                raise TypeError(f"{name} has dtype {a.dtype} but the other arrays have {dtype}")
            dtype = a.dtype
        return dtype

    def rows_view(self, a, shape):
        """``a``, broadcast to ``shape``, as a 2-D array of rows of ``shape[-1]`` values,
        with its leading dimension ``ld`` (the distance between rows, in elements).

        A contiguous array or a column slice such as ``h[:, :Z]`` becomes a view (no
        copy), and so does an array broadcast along its first axis (``ld`` is then 0:
        every row reads the same values); anything else (a transposed array) is copied
        to a contiguous one first, which is always correct, only slower."""
        xp = self.xp
        cols = shape[-1]
        rows = math.prod(shape[:-1])
        if a.shape != shape:
            a = xp.broadcast_to(a, shape)
        v = a if a.ndim == 2 else a.reshape(rows, cols)  # a view whenever the axes merge
        if cols > 1 and v.strides[1] != v.itemsize:
            v = xp.ascontiguousarray(v)
        ld = v.strides[0] // v.itemsize if rows > 1 else cols
        return v, np.int64(ld)


class CuPyLauncher(Launcher):
    """Kernels compiled by CuPy (NVRTC) and launched on the current CUDA stream."""
    name = "CuPy"

    @property
    def xp(self):
        return _require_cupy()

    def launch(self, filename, name, dtype, blocks, threads, args):
        if blocks == 0:
            return  # an empty array: nothing to do, and CUDA rejects an empty grid
        device_id = backend.cupy.cuda.runtime.getDevice()
        kernel(filename, name, dtype, device_id)((blocks,), (threads,), args)
        LAUNCHES[name] += 1


GPU = CuPyLauncher()


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
