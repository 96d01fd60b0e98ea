"""Compile every kernel of this folder with ``nvcc``, no GPU needed:

    python -m scratchvae.kernels.build [--arch sm_90]

On a GPU, CuPy compiles the ``.cu`` files with NVRTC when a kernel first runs. On a
machine without a GPU nothing would ever compile them, so a typo could wait there
for the first student with a GPU. This check compiles each file to a cubin for one
GPU architecture, as NVRTC would, and instantiates exactly the template instances
the Python wrappers launch (``launch.KERNELS``): a kernel renamed in a ``.cu`` file
but not in the table fails here too. Warnings count as errors.

Exit status: 0 when every file compiles or when ``nvcc`` is missing (the check is
then skipped, with a message), 1 when a file fails (nvcc's message is printed).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .launch import HERE, KERNELS, name_expressions

DEFAULT_ARCH = "sm_90"  # Hopper: known to CUDA 11.8 through 13


def find_nvcc():
    """The nvcc to use, or None: $NVCC if set (as CuPy reads it), else the one on PATH,
    else the one under $CUDA_HOME or /usr/local/cuda."""
    if "NVCC" in os.environ:
        return os.environ["NVCC"] if shutil.which(os.environ["NVCC"]) else None
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def nvcc_version(nvcc):
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    return next((line.split(",")[-1].strip() for line in out.splitlines() if "release" in line), "?")


def instantiation_unit(cu_path, filename):
    """A translation unit that includes ``cu_path`` and takes the address of every
    instance the wrappers use, which makes nvcc compile each of them for the device."""
    lines = [f'#include "{cu_path}"', "", "void* scratchvae_kernel_instances[] = {"]
    lines += [f"    (void*)&{expr}," for expr in name_expressions(filename)]
    return "\n".join(lines + ["};", ""])


def compile_file(nvcc, source_dir, filename, arch, workdir):
    """Compile one file; returns ``(ok, seconds, nvcc's output)``."""
    unit = Path(workdir) / f"instances_{filename}"
    unit.write_text(instantiation_unit(Path(source_dir).resolve() / filename, filename))
    cmd = [nvcc, "--cubin", f"-arch={arch}", "--Werror", "all-warnings",
           "-o", str(Path(workdir) / f"{filename}.cubin"), str(unit)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.returncode == 0, time.perf_counter() - start, (done.stdout + done.stderr).strip()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m scratchvae.kernels.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=DEFAULT_ARCH, help=f"GPU architecture (default {DEFAULT_ARCH})")
    parser.add_argument("--source-dir", default=str(HERE),
                        help="folder of the .cu files (default: this package's)")
    args = parser.parse_args(argv)

    nvcc = find_nvcc()
    if nvcc is None:
        where = f"NVCC={os.environ['NVCC']} is not a program" if "NVCC" in os.environ else \
            "not on PATH, nor under $CUDA_HOME or /usr/local/cuda"
        print(f"compile_kernels: skipped: nvcc not found ({where}); install the CUDA toolkit "
              "to check the kernel sources")
        return 0
    present = sorted(p.name for p in Path(args.source_dir).glob("*.cu"))
    unlisted = sorted(set(present) - set(KERNELS))
    missing = sorted(set(KERNELS) - set(present))
    if unlisted or missing:
        print(f"compile_kernels: the .cu files in {args.source_dir} do not match launch.KERNELS: "
              f"not listed {unlisted}, missing {missing}")
        return 1

    print(f"compile_kernels: nvcc {nvcc_version(nvcc)} ({nvcc}), --cubin -arch={args.arch}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda f: compile_file(nvcc, args.source_dir, f, args.arch, workdir),
                                present))
    for filename, (ok, seconds, log) in zip(present, results):
        n = len(name_expressions(filename))
        print(f"  {'ok  ' if ok else 'FAIL'}  {filename:<20} {n:>3} kernel instances  {seconds:5.1f} s")
        if not ok:
            print("\n".join("        " + line for line in log.splitlines()))
    failed = [f for f, (ok, _, _) in zip(present, results) if not ok]
    total = sum(len(name_expressions(f)) for f in present)
    if failed:
        print(f"compile_kernels: {len(failed)} of {len(present)} files failed: {', '.join(failed)}")
        return 1
    print(f"compile_kernels: {len(present)} files, {total} kernel instances compiled "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
