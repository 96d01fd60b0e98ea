"""The machine a benchmark runs on: its CPU, NumPy's BLAS and the threads it may use, and
whether anything else ran while it measured (other work on the second core slows two-thread
BLAS, so scratchvae and PyTorch unequally)."""
import contextlib
import os
import platform
import re
import sys
import time

import numpy as np

QUIET_LOAD = 0.3         # per core: above it, other work ran beside the benchmark


@contextlib.contextmanager
def limit_threads(n, torch=None):
    """Run the block with ``n`` BLAS threads for NumPy (and ``n`` threads for PyTorch)."""
    old_torch = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: NumPy's BLAS keeps its default threads; set "
              f"OPENBLAS_NUM_THREADS={n} (or OMP_NUM_THREADS / MKL_NUM_THREADS) before starting "
              "Python", file=sys.stderr)
        limiter = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(limits=n, user_api="blas")
    try:
        with limiter:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old_torch)


def cpu_model():
    """The CPU's name as the kernel reports it (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """NumPy's BLAS as threadpoolctl sees it: library, version, the kernel it chose for this
    CPU (OpenBLAS's ``architecture``), its threads, and ``OPENBLAS_CORETYPE`` if set."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"library": None, "why_not": "threadpoolctl is not installed"}
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not blas:
        return {"library": None, "why_not": "threadpoolctl finds no BLAS library"}
    i = blas[0]
    return {"library": i.get("internal_api"), "version": i.get("version"),
            "kernel": i.get("architecture"), "threads": i.get("num_threads"),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def _busy_cpu_seconds():
    """CPU seconds all processes have spent since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Quietness:
    """How busy the machine was while a measurement ran: the load average before and after,
    and the CPU time that *other* processes used meanwhile (all CPU time minus ours), in
    cores. ``noisy`` when either the load before or the others' use exceeds
    :data:`QUIET_LOAD` per core: then the comparison ran beside other work.

    ``load_before``: the load average to judge by, when the benchmark's own earlier work
    (which raises the load average for minutes) has already run: the one taken at its start."""

    def __init__(self, load_before=None):
        self.cpus = os.cpu_count() or 1
        self.load_before = os.getloadavg() if load_before is None else load_before
        self._busy, self._own = _busy_cpu_seconds(), _own_cpu_seconds()
        self._start = time.perf_counter()

    def result(self):
        wall = time.perf_counter() - self._start
        busy = _busy_cpu_seconds()
        others = None
        if busy is not None and self._busy is not None and wall > 0:
            others = max(0.0, (busy - self._busy) - (_own_cpu_seconds() - self._own)) / wall
        noisy = (self.load_before[0] / self.cpus > QUIET_LOAD
                 or (others is not None and others / self.cpus > QUIET_LOAD))
        return {"load_before": list(self.load_before), "load_after": list(os.getloadavg()),
                "others_cores": others, "cpus": self.cpus, "noisy": bool(noisy)}


def platform_now():
    """The CPU, NumPy and its BLAS (library, version, the kernel it chose for this CPU, threads):
    what a result computed here is bitwise reproducible on, and what its timings belong to."""
    blas = blas_info()
    return {"cpu": cpu_model(), "numpy": np.__version__,
            "blas": {k: blas.get(k) for k in ("library", "version", "kernel", "threads")}}


def platform_words(sessions):
    """'<cpu>, NumPy <v>, <blas library> <v> (<kernel> kernel)' of a run's platform record (a list
    of sessions, each a :func:`platform_now` with ``from_samples`` and perhaps ``started``), the machines joined by
    'then' if it moved; None if the run recorded none."""
    words = []
    for p in sessions or []:
        blas = p.get("blas") or {}
        words.append(f"{p.get('cpu')}, NumPy {p.get('numpy')}, {blas.get('library')} {blas.get('version')} "
                     f"({blas.get('kernel')} kernel)")
    return " then ".join(dict.fromkeys(words)) or None


def where_runs_ran(platforms, unrecorded="not recorded"):
    """'<runs> on <machine>; ...; <runs>: <unrecorded>' from ``{run name: platform record}``, the
    names in order, numbers by value (so that a page read from the runs and one read from their
    archive agree)."""
    def natural(name):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    by = {}
    for name in sorted(platforms, key=natural):
        sessions = platforms[name]
        by.setdefault(platform_words(sessions), []).append(name)
    parts = [f"{', '.join(names)} on {where}" for where, names in by.items() if where]
    if None in by:
        parts.append(f"{', '.join(by[None])}: {unrecorded}")
    return "; ".join(parts)


def same_platform(a, b):
    """Whether two runs' platform records show one machine throughout (CPU, NumPy, BLAS and its
    kernel, threads in every session): only then are their timings comparable. False when
    either recorded none."""
    if not a or not b:
        return False
    strip = [{k: v for k, v in s.items() if k not in ("from_samples", "started")} for s in (*a, *b)]
    return all(s == strip[0] for s in strip)


def machine_info():
    return {"cpu": cpu_model(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas_info()}
