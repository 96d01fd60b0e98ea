"""Shared fixtures: every test that takes ``xp`` runs once on NumPy and once on CuPy.

The CuPy run is skipped, with the reason, on machines without CuPy or a GPU, so
the same test file proves both backends instead of being copied for the GPU.
"""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from scratchvae import backend

# The models under test are small: one BLAS thread is faster for them, and it keeps
# the suite's time steady on a shared two-core machine (subprocesses inherit it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
threadpool_limits(1)

_GPU_SKIP = None if backend.gpu_available() else (
    "CuPy is not installed" if backend.cupy is None else "CuPy finds no CUDA GPU")


def _xp_params():
    return [pytest.param(np, id="numpy"),
            pytest.param(backend.cupy, id="cupy",
                         marks=[pytest.mark.gpu,
                                pytest.mark.skipif(_GPU_SKIP is not None, reason=_GPU_SKIP or "")])]


@pytest.fixture(params=_xp_params())
def xp(request):
    """The array module under test: ``numpy``, or ``cupy`` when a GPU is present."""
    return request.param


@pytest.fixture
def device(xp):
    """The device name matching ``xp``."""
    return "cpu" if xp is np else "gpu"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
