"""The CUDA kernels of this package, run on the CPU: every ``.cu`` file compiled unchanged
by the host C++ compiler against ``cuda_on_cpu.h``, and launched from Python.

    from scratchvae.kernels import cpu, kl_standard_normal
    on_cpu = cpu.launcher()                   # compiles once (a few seconds), then cached
    kl = kl_standard_normal(mu, logvar, on=on_cpu)   # mu, logvar: NumPy float arrays

The wrapper is the very one the GPU runs (same shapes, leading dimensions, grid, block
and argument list); only the last step differs: instead of CuPy handing the kernel to
the GPU, :class:`CPULauncher` checks every argument against the kernel's signature
read from the ``.cu`` file (:func:`scratchvae.kernels.launch.check_args`) and calls
the compiled kernel, which runs each block's threads as ``std::thread``\\ s (see the
header and ``scratchvae/kernels/README.md``). This is how the kernels are tested
without a GPU: ``tests/test_kernels_cpu.py`` holds each to its NumPy reference.

It is a test harness, not a fast CPU path: a launch starts one OS thread per CUDA
thread of a block. Outputs come from :meth:`CPULauncher.empty`, filled with NaN and
fenced by NaN on both sides, so an element the kernel forgot stays NaN and a write
past either end is reported.
"""
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import weakref
from collections import Counter
from pathlib import Path

import numpy as np

from ..launch import CTYPES, HERE as KERNEL_DIR, KERNELS, Launcher, check_args, signatures

HEADER = Path(__file__).resolve().parent / "cuda_on_cpu.h"

# -ffp-contract=off: a * b + c rounds twice, as in NumPy (nvcc fuses it into one fma).
FLAGS = ("-std=c++20", "-O2", "-fPIC", "-pthread", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror")
# nvcc's default rounding (-fmad=true): a * b + c in one fused multiply-add where it can
FMA_FLAGS = ("-ffp-contract=fast",) + (("-mfma",) if platform.machine().lower() in ("x86_64", "amd64") else ())

GUARD = 256   # NaN elements on each side of an output array


def compiler():
    """The C++ compiler to use, or None: $CXX if set, else g++, c++ or clang++ on PATH."""
    if "CXX" in os.environ:
        return shutil.which(os.environ["CXX"])
    return next((found for name in ("g++", "c++", "clang++") if (found := shutil.which(name))), None)


def fma_available():
    """Whether this CPU has fused multiply-add instructions (x86-64 with FMA3, or ARM64),
    which ``build(fma=True)`` needs."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return machine in ("x86_64", "amd64") and "fma" in flags.split()


def _entry_points(filename):
    """C++ that exports each kernel instance of ``filename`` as ``extern "C" int
    <name>_<float|double>(grid, threads, args)``. ``args`` holds the address of each
    argument, as CUDA's own launch call (cuLaunchKernel) takes them; the types come
    from the kernel's signature in the source."""
    lines = [f'#include "{filename}"']
    for name, params in signatures(filename).items():
        for ctype in CTYPES.values():
            lines.append(f'extern "C" int {name}_{ctype}(unsigned int grid, unsigned int threads, void** args) {{')
            names = []
            for k, (kind, _) in enumerate(params):
                c = kind.replace("T", ctype)
                lines.append(f"    {c} a{k} = *static_cast<{c}*>(args[{k}]);")
                names.append(f"a{k}")
            call = f"{name}<{ctype}>({', '.join(names)})"
            lines.append(f"    return cuda_on_cpu::launch(grid, threads, [=] {{ {call}; }});")
            lines.append("}")
    return "\n".join(lines) + "\n"


def translation_unit():
    """The one C++ file the harness compiles: the header, then every ``.cu`` file of
    the package (unchanged), each followed by its entry points."""
    parts = ['#include "cuda_on_cpu.h"',
             'extern "C" const char* cuda_on_cpu_last_error() { return cuda_on_cpu::last_error.c_str(); }']
    parts += [_entry_points(f) for f in KERNELS]
    return "\n".join(parts)


def _sources_key(cxx, flags, source_dir):
    digest = hashlib.sha256()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    for part in (cxx, version, " ".join(flags), HEADER.read_text()):
        digest.update(part.encode())
    for path in sorted(Path(source_dir).glob("*.cu*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def default_cache_dir():
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "scratchvae" / "cpu-kernels"


def build(cache_dir=None, fma=False, source_dir=KERNEL_DIR):
    """Compile every ``.cu`` file of the package for the CPU into one shared library and
    return its path. The library is kept in ``cache_dir`` (default
    ``~/.cache/scratchvae/cpu-kernels``) under a hash of the sources, the header, the
    compiler and its flags, so an unchanged tree compiles once. ``fma=True`` lets the
    compiler fuse multiply-adds, as nvcc does by default. ``source_dir`` is the folder
    of the ``.cu`` files (the package's own by default; the kernels' signatures are
    always read from the package's). A RuntimeError carries the compiler's message
    when a file does not compile."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    flags = FLAGS + (FMA_FLAGS if fma else ())
    target = Path(cache_dir or default_cache_dir()) / _sources_key(cxx, flags, source_dir) / "kernels.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        unit = Path(work) / "kernels.cpp"
        unit.write_text(translation_unit())
        cmd = [cxx, *flags, "-shared", "-I", str(HEADER.parent), "-I", str(source_dir),
               "-o", str(Path(work) / "kernels.so"), str(unit)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"the kernels do not compile for the CPU:\n{done.stdout}{done.stderr}")
        os.replace(Path(work) / "kernels.so", target)   # atomic: another process may build too
    return target


_SCALARS = {np.int64: ctypes.c_longlong, np.float32: ctypes.c_float, np.float64: ctypes.c_double}


class CPULauncher(Launcher):
    """Runs the kernels of a library made by :func:`build` on NumPy arrays."""
    name = "NumPy"
    xp = np

    def __init__(self, library):
        self.library = ctypes.CDLL(str(library))
        self.library.cuda_on_cpu_last_error.restype = ctypes.c_char_p
        self.launches = Counter()          # (kernel, 'float' or 'double') -> launches
        self._fenced = weakref.WeakValueDictionary()   # id(buffer) -> buffer with NaN fences

    def _function(self, name, ctype):
        f = getattr(self.library, f"{name}_{ctype}")
        f.argtypes = (ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p))
        f.restype = ctypes.c_int
        return f

    def empty(self, shape, dtype):
        """A NaN-filled output inside a buffer with :data:`GUARD` NaN on either side."""
        n = int(np.prod(shape, dtype=np.int64))
        buffer = np.full(n + 2 * GUARD, np.nan, dtype)
        self._fenced[id(buffer)] = buffer
        return buffer[GUARD:GUARD + n].reshape(shape)

    def fenced(self, a):
        """A copy of ``a`` (same shape, dtype and values) inside a NaN-fenced buffer: a
        kernel that reads past its end reads NaN."""
        out = self.empty(a.shape, a.dtype)
        out[...] = a
        return out

    def _fence_of(self, a):
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        return self._fenced.get(id(root))

    def launch(self, filename, name, dtype, blocks, threads, args):
        check_args(filename, name, dtype, args)
        if blocks == 0:
            return
        if not (0 < blocks < 2 ** 31 and 0 < threads < 2 ** 31):
            raise RuntimeError(f"{name}: invalid launch: {blocks} blocks of {threads} threads")
        values = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                values.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                values.append(_SCALARS[type(arg)](arg))
        addresses = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
        ctype = CTYPES[np.dtype(dtype)]
        if self._function(name, ctype)(blocks, threads, addresses):
            raise RuntimeError(f"{name}<{ctype}>: {self.library.cuda_on_cpu_last_error().decode()}")
        self.launches[name, ctype] += 1
        for arg in args:
            fence = self._fence_of(arg) if isinstance(arg, np.ndarray) else None
            if fence is not None and not (np.isnan(fence[:GUARD]).all() and np.isnan(fence[-GUARD:]).all()):
                raise RuntimeError(f"{name}<{ctype}> wrote outside an array of shape {arg.shape}")


@functools.cache
def launcher(cache_dir=None, fma=False, source_dir=KERNEL_DIR):
    """The :class:`CPULauncher` of the library :func:`build` makes (once per process)."""
    return CPULauncher(build(cache_dir, fma, source_dir))
