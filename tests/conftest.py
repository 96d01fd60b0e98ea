"""Shared fixtures: every test that takes ``xp`` runs once on NumPy and once on CuPy.

The CuPy run is skipped, with the reason, on machines without CuPy or a GPU, so
the same test file proves both backends instead of being copied for the GPU.
"""
import numpy as np
import pytest

from scratchvae import backend

# The library's rule for BLAS threads (README, "Threads"), as the command and the lessons
# apply it; the subprocesses the tests start (the command, the lessons) apply it themselves.
backend.set_threads()

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
