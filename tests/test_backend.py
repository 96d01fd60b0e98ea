"""The array-module shim: device names, host/device moves, generators per device, dtypes."""
import numpy as np
import pytest

from scratchvae import backend
from scratchvae.backend import (DeviceError, as_cupy, as_numpy, device_of, get_array_module, gpu_available,
                                make_rng, resolve_device, resolve_dtype, to_device, xp_for)

NO_GPU = pytest.mark.skipif(gpu_available(),
                            reason="checks the error raised on a machine without a usable GPU")


def test_device_names():
    """'cpu' is always the CPU; 'auto' is the GPU exactly when one is usable; anything else is refused."""
    assert resolve_device("cpu") == "cpu" and resolve_device() == "cpu"
    assert resolve_device("auto") == ("gpu" if gpu_available() else "cpu")
    assert xp_for("cpu") is np
    for bad in ("tpu", "GPU", "", None):
        with pytest.raises(ValueError, match="device must be one of"):
            resolve_device(bad)


@NO_GPU
def test_gpu_request_without_a_gpu_says_how_to_install_cupy():
    """device='gpu' here (CuPy missing, or CuPy without a CUDA GPU) raises DeviceError naming
    the install command; so do xp_for, to_device, as_cupy and make_rng on 'gpu'."""
    calls = [lambda: resolve_device("gpu"), lambda: xp_for("gpu"), lambda: to_device(np.ones(2), "gpu"),
             lambda: as_cupy(np.ones(2)), lambda: make_rng(0, "gpu")]
    for call in calls:
        with pytest.raises(DeviceError, match=r"pip install cupy-cuda12x"):
            call()
    reason = "not installed" if backend.cupy is None else "finds no CUDA GPU"
    with pytest.raises(DeviceError, match=reason):
        resolve_device("gpu")


def test_device_error_is_a_runtime_error():
    """DeviceError is a RuntimeError: the request was valid, the machine cannot serve it."""
    assert issubclass(DeviceError, RuntimeError)


def test_mixed_input_rule(xp):
    """get_array_module is CuPy when any argument is a CuPy array, NumPy otherwise (lists, scalars, None)."""
    a = xp.ones(3)
    assert get_array_module(np.ones(2), 3.0, [1, 2], None) is np
    assert get_array_module(np.ones(2), a) is xp
    assert get_array_module(a, np.ones(2)) is xp
    assert get_array_module() is np


@pytest.mark.gpu
def test_cupy_refuses_implicit_host_device_mixing(xp):
    """On the GPU, combining a CuPy array with a NumPy array fails loudly instead of copying silently."""
    if xp is np:
        pytest.skip("only meaningful for CuPy")
    with pytest.raises(TypeError):
        xp.ones(3) + np.ones(3)


def test_host_device_moves(xp, device):
    """to_device/as_numpy/as_cupy move values unchanged; moving to where it already is copies nothing."""
    host = np.arange(6.0).reshape(2, 3)
    there = to_device(host, device)
    assert device_of(there) == device and get_array_module(there) is xp
    back = as_numpy(there)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    assert as_numpy(host) is host and to_device(host, "cpu") is host
    if device == "gpu":
        assert as_cupy(there) is there and to_device(there, "gpu") is there


def test_as_numpy_accepts_lists():
    """as_numpy turns array-likes into NumPy arrays."""
    np.testing.assert_array_equal(as_numpy([1.0, 2.0]), np.array([1.0, 2.0]))


def test_rng_per_device(xp, device):
    """make_rng gives a seeded generator living on the device: same seed, same stream;
    draws are arrays of that device with the requested dtype."""
    r1, r2 = make_rng(7, device), make_rng(7, device)
    a, b = r1.standard_normal((3, 4), dtype=np.float32), r2.standard_normal((3, 4), dtype=np.float32)
    assert get_array_module(a) is xp and a.dtype == np.float32
    np.testing.assert_array_equal(as_numpy(a), as_numpy(b))
    other = make_rng(8, device).standard_normal(4)
    assert not np.array_equal(as_numpy(other), as_numpy(make_rng(7, device).standard_normal(4)))
    u = r1.random(1000)
    assert get_array_module(u) is xp and 0 <= float(u.min()) and float(u.max()) < 1
    if device == "cpu":
        assert isinstance(r1, np.random.Generator)


def test_cpu_rng_is_numpy_pcg64():
    """On the CPU the stream is NumPy's default_rng(seed): reproducible across machines."""
    np.testing.assert_array_equal(make_rng(3).standard_normal(5), np.random.default_rng(3).standard_normal(5))


def test_dtypes():
    """float32 by default, float64 on request (by name or type); anything else: TypeError naming dtype."""
    assert resolve_dtype() == np.float32
    assert resolve_dtype("float64") == np.float64 and resolve_dtype(np.float64) == np.float64
    assert resolve_dtype(np.dtype("float32")) == np.float32
    for bad in ("int32", np.int64, "float16", "complex128", "not-a-dtype"):
        with pytest.raises(TypeError, match="dtype must be float32 or float64"):
            resolve_dtype(bad)


def test_import_does_not_need_a_gpu():
    """import scratchvae works on this machine (CuPy optional) and exposes the shim."""
    import scratchvae
    assert scratchvae.get_array_module(np.ones(1)) is np
    assert scratchvae.gpu_available() in (True, False)


def test_without_cupy_import_works_and_gpu_request_names_the_install():
    """In a fresh interpreter where `import cupy` fails (as on a machine without CuPy),
    `import scratchvae` works, 'auto' is the CPU and 'gpu' raises DeviceError with the install command."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['cupy'] = None\n"      # makes `import cupy` raise ImportError
            "import scratchvae, scratchvae.backend as b\n"
            "assert b.cupy is None and not b.gpu_available() and b.resolve_device('auto') == 'cpu'\n"
            "try:\n    b.resolve_device('gpu')\n"
            "except b.DeviceError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "not installed" in out.stdout and "pip install cupy-cuda12x" in out.stdout
