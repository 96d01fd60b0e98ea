"""The CUDA kernels: each against its NumPy reference on a GPU, and their sources without one.

Without a GPU the tests here still check what can be checked: the sources compile
with nvcc (the same script CI runs), the table of kernels the Python side launches
matches the kernels the sources define, every wrapper names an existing reference
with the same arguments, the library's functions hand CuPy arrays to the kernels
(through ``@kernels.fused_by``, the one place that decides), and the package imports
without CuPy. With CuPy and a GPU, every kernel runs and must match its reference:
to 1e-12 relative in float64 and 1e-5 in float32. (tests/test_kernels_cpu.py runs
every kernel on the CPU against the same references and tolerances, without a GPU.)
"""
import ast
import importlib
import inspect
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchvae.activations as A
import scratchvae.distributions as D
from scratchvae import backend, kernels
from scratchvae.kernels import build, launch
from scratchvae.optim import Adagrad, Adam

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "scratchvae" / "kernels"
WRAPPER_MODULES = ("distributions", "activations", "optim")


def gpu(test):
    """Mark a test that needs CuPy and a CUDA GPU; it is skipped, with the reason, without them."""
    reason = "CuPy is not installed" if backend.cupy is None else "CuPy finds no CUDA GPU"
    return pytest.mark.gpu(pytest.mark.skipif(not backend.gpu_available(), reason=reason)(test))


needs_nvcc = pytest.mark.skipif(build.find_nvcc() is None, reason="nvcc not found (no CUDA toolkit)")


# =====================================================================================
# Without a GPU: the sources, the tables, the switch
# =====================================================================================
def _compile_kernels(*args, env=None):
    return subprocess.run([str(ROOT / ".ci" / "compile_kernels"), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300, check=False)


@needs_nvcc
def test_ci_script_compiles_every_kernel_source_with_nvcc():
    done = _compile_kernels()
    assert done.returncode == 0, done.stdout + done.stderr
    for filename in launch.KERNELS:
        n = len(launch.name_expressions(filename))
        assert re.search(rf"ok\s+{re.escape(filename)}\s+{n} kernel instances", done.stdout), done.stdout
    total = sum(len(launch.name_expressions(f)) for f in launch.KERNELS)
    assert f"{len(launch.KERNELS)} files, {total} kernel instances compiled" in done.stdout


BREAKAGES = [  # (file, text, replaced by, what nvcc must say)
    ("kl.cu", "sum += m * m + exp(lv) - T(1) - lv;", "sum += m * m + exp(lv) - T(1) - lv",
     'expected a ";"'),                                                   # a syntax error
    ("optim.cu", "void adagrad_update(", "void adagrad_step(",
     'identifier "adagrad_update" is undefined'),                         # renamed in one place only
    ("gaussian.cu", "T total = block_sum(sum);", "int unused; T total = block_sum(sum);",
     "never referenced"),                                                 # a warning is an error
]


@needs_nvcc
def test_ci_script_fails_on_broken_sources(tmp_path):
    for f in KERNEL_DIR.glob("*.cu*"):
        shutil.copy(f, tmp_path / f.name)
    for filename, old, new, _ in BREAKAGES:
        text = (tmp_path / filename).read_text()
        assert old in text
        (tmp_path / filename).write_text(text.replace(old, new, 1))
    done = _compile_kernels("--source-dir", str(tmp_path))
    assert done.returncode == 1
    for filename, _, _, message in BREAKAGES:
        assert re.search(rf"FAIL\s+{re.escape(filename)}", done.stdout), done.stdout
        assert message in done.stdout, done.stdout
    assert f"{len(BREAKAGES)} of {len(launch.KERNELS)} files failed" in done.stdout


def test_ci_script_skips_with_a_message_without_nvcc():
    done = _compile_kernels(env={"NVCC": "/nonexistent/nvcc"})
    assert done.returncode == 0
    assert "skipped: nvcc not found" in done.stdout


def _templates_defined(text):
    """Names of the kernel templates a .cu source defines."""
    return re.findall(r"template\s*<\s*typename\s+T\s*>\s*__global__\s+void\s+(\w+)\s*\(", text)


def test_kernel_table_matches_the_sources():
    on_disk = sorted(p.name for p in KERNEL_DIR.glob("*.cu"))
    assert on_disk == sorted(launch.KERNELS)
    for filename, names in launch.KERNELS.items():
        defined = _templates_defined((KERNEL_DIR / filename).read_text())
        assert sorted(defined) == sorted(names), filename
        assert len(set(defined)) == len(defined), f"{filename} defines a kernel twice"


def test_row_kernels_launch_with_the_block_size_the_header_assumes():
    header = (KERNEL_DIR / "common.cuh").read_text()
    assert int(re.search(r"#define ROW_THREADS (\d+)", header)[1]) == launch.ROW_THREADS
    assert launch.ROW_THREADS & (launch.ROW_THREADS - 1) == 0  # the tree sum halves it to 1


def _launched_kernels(module_name):
    """(file, kernel) pairs named by the string arguments of the launch calls in a wrapper module."""
    tree = ast.parse((KERNEL_DIR / f"{module_name}.py").read_text())
    pairs = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if called == "launch" and len(args) >= 2:                   # on.launch("kl.cu", "kl_...", ...)
            pairs.append((args[0], args[1]))
        elif called in ("_forward", "_backward") and args:          # activations.py's helpers
            pairs.append(("activations.cu", args[0]))
    return pairs


def test_wrappers_launch_exactly_the_kernels_the_sources_define():
    launched = [pair for m in WRAPPER_MODULES for pair in _launched_kernels(m)]
    for filename, name in launched:
        assert name in launch.KERNELS.get(filename, ()), f"{filename} defines no kernel {name}"
    defined = {(f, name) for f, names in launch.KERNELS.items() for name in names}
    assert set(launched) == defined, f"never launched: {sorted(defined - set(launched))}"


def _wrappers():
    for module_name in WRAPPER_MODULES:
        module = importlib.import_module(f"scratchvae.kernels.{module_name}")
        for name, f in inspect.getmembers(module, inspect.isfunction):
            if f.__module__ == module.__name__ and not name.startswith("_"):
                yield name, f


def _reference(f):
    dotted = re.search(r"Reference: (scratchvae[\w.]+)", f.__doc__ or "")[1]
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _positional(f):
    """The parameters of ``f`` a caller passes by position (a wrapper's ``on=`` is not one)."""
    return [n for n, p in inspect.signature(f).parameters.items() if p.kind != p.KEYWORD_ONLY]


def test_every_wrapper_is_exported_and_names_its_reference_with_the_same_arguments():
    wrappers = dict(_wrappers())
    assert len(wrappers) == 19
    for name, f in wrappers.items():
        assert getattr(kernels, name) is f, f"scratchvae.kernels does not export {name}"
        assert "on" in inspect.signature(f).parameters, f"{name} takes no on= (where it runs)"
        ref = _reference(f)
        params = _positional(f)
        ref_params = [p for p in inspect.signature(ref).parameters if p != "self"]
        assert getattr(ref, "fused_kernel", None) == name, f"{ref.__qualname__} is not @fused_by({name!r})"
        if "." not in ref.__qualname__:        # a function: the very same arguments
            assert params == ref_params, (name, ref.__qualname__)


LIBRARY = ("distributions", "activations", "optim")


def test_kernel_dispatch_happens_in_one_place():
    """The reference modules hold formulas only: no module but scratchvae.kernels decides
    when a kernel runs, and every @fused_by names an exported wrapper."""
    fused = []
    for module_name in LIBRARY:
        source = (ROOT / "scratchvae" / f"{module_name}.py").read_text()
        assert "kernels.active" not in source and "kernels.use_kernels" not in source, module_name
        fused += re.findall(r'@kernels\.fused_by\("(\w+)"', source)
    assert sorted(fused) == sorted(name for name, _ in _wrappers())


def test_fused_by_passes_numpy_arrays_to_the_formula_and_keeps_it():
    a = np.linspace(-3, 3, 12).reshape(3, 4)
    assert A.tanh.reference is not A.tanh and A.tanh.fused_kernel == "tanh"
    assert np.array_equal(A.tanh(a), np.tanh(a))
    mu, logvar = np.ones((1, 4)), np.zeros((3, 4))
    assert D.kl_standard_normal(mu, logvar=logvar).shape == (3,)       # arguments by name too
    with pytest.raises(TypeError, match="a method needs args="):
        kernels.fused_by("adam_update")(lambda self, p: p)


def test_switch_and_dispatch_rule():
    a = np.zeros((2, 3))
    assert kernels.active(a) is False            # NumPy arrays never reach a kernel
    before = kernels.enabled()
    with kernels.use_kernels(False):
        assert kernels.enabled() is False
        with kernels.use_kernels(True):
            assert kernels.enabled() is True
        assert kernels.enabled() is False
    assert kernels.enabled() is before
    with pytest.raises(RuntimeError), kernels.use_kernels(not before):
        raise RuntimeError("the setting is restored even so")
    assert kernels.enabled() is before
    assert kernels.set_enabled(before) is before


def test_environment_variable_starts_with_the_kernels_off():
    code = "import scratchvae.kernels as k; print(k.enabled())"
    for value, expected in (("off", "False"), ("1", "True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "SCRATCHVAE_KERNELS": value}, check=False)
        assert out.stdout.strip() == expected, out.stderr


def test_package_imports_and_explains_itself_without_cupy():
    code = """
import sys
sys.modules["cupy"] = None   # makes `import cupy` fail, as on a machine without it
import numpy as np
import scratchvae, scratchvae.kernels as k
assert scratchvae.backend.cupy is None
assert k.active(np.zeros(3)) is False
try:
    k.kl_standard_normal(np.zeros((2, 3)), np.zeros((2, 3)))
except scratchvae.DeviceError as e:
    print("DeviceError:", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "DeviceError: the CUDA kernels need CuPy" in out.stdout
    assert "pip install cupy-cuda12x" in out.stdout


# Every place the library hands CuPy arrays to a kernel: (call on the library side, the
# wrapper it must reach, the arguments the wrapper must receive). The GPU cannot run
# here, so the switch is forced on and each wrapper replaced by a recorder: this checks
# the wiring (the right wrapper, the right arguments, its result returned), on any machine.
def _hooks():
    a, b, c = (np.full((2, 3), v) for v in (0.1, 0.2, 0.3))
    eps = np.full((1, 2, 3), 0.4)

    def backward(cls, dy, cache):
        def call():
            layer = cls()
            layer.cache = cache      # what the forward kept
            return layer.backward(dy)
        return call

    return [
        ("reparameterize", lambda: D.reparameterize(a, b, eps), (a, b, eps)),
        ("reparameterize_backward", lambda: D.reparameterize_backward(eps, b, eps), (eps, b, eps)),
        ("kl_standard_normal", lambda: D.kl_standard_normal(a, b), (a, b)),
        ("kl_standard_normal_grad", lambda: D.kl_standard_normal_grad(a, b), (a, b)),
        ("bernoulli_log_likelihood", lambda: D.bernoulli_log_likelihood(a, b), (a, b)),
        ("bernoulli_log_likelihood_grad", lambda: D.bernoulli_log_likelihood_grad(a, b), (a, b)),
        ("bernoulli_log_likelihood_and_grad", lambda: D.bernoulli_log_likelihood_and_grad(a, b), (a, b)),
        ("gaussian_log_density", lambda: D.gaussian_log_density(a, b, c), (a, b, c)),
        ("gaussian_log_density_grad", lambda: D.gaussian_log_density_grad(a, b, c), (a, b, c)),
        ("sigmoid", lambda: A.sigmoid(a), (a,)),
        ("softplus", lambda: A.softplus(a), (a,)),
        ("tanh", lambda: A.Tanh().forward(a), (a,)),
        ("relu", lambda: A.ReLU().forward(a), (a,)),
        ("sigmoid", lambda: A.Sigmoid().forward(a), (a,)),
        ("softplus", lambda: A.Softplus().forward(a), (a,)),
        ("tanh_backward", backward(A.Tanh, c, b), (c, b)),
        ("relu_backward", backward(A.ReLU, c, b), (c, b)),
        ("sigmoid_backward", backward(A.Sigmoid, c, b), (c, b)),
        ("softplus_backward", backward(A.Softplus, c, b), (c, b)),
    ]


@pytest.mark.parametrize("index", range(19))
def test_library_hands_device_arrays_to_the_kernel(monkeypatch, index):
    wrapper, call, expected_args = _hooks()[index]
    seen = []
    monkeypatch.setattr(kernels, "HAVE_CUPY", True)           # as if CuPy were installed
    monkeypatch.setattr(kernels, "active", lambda *arrays: True)
    from_the_kernel = object()
    monkeypatch.setattr(kernels, wrapper, lambda *args: seen.append(args) or from_the_kernel)
    assert call() is from_the_kernel
    assert len(seen) == 1 and len(seen[0]) == len(expected_args)
    for got, want in zip(seen[0], expected_args):
        assert got is want


@pytest.mark.parametrize("cls, wrapper", [(Adam, "adam_update"), (Adagrad, "adagrad_update")])
def test_optimizers_hand_device_arrays_to_the_kernel(monkeypatch, cls, wrapper):
    p, g = np.ones(4), np.full(4, 0.5)
    opt = cls([("w", p, g)], lr=0.1)
    seen = []
    monkeypatch.setattr(kernels, "HAVE_CUPY", True)           # as if CuPy were installed
    monkeypatch.setattr(kernels, "active", lambda *arrays: True)
    monkeypatch.setattr(kernels, wrapper, lambda *args: seen.append(args))
    opt.step()
    opt.step()
    assert len(seen) == 2
    state = [opt.state[s]["w"] for s in opt.state_names]
    assert seen[1][0] is p and seen[1][1] is g and all(x is y for x, y in zip(seen[1][2:], state))
    if cls is Adam:   # the bias-corrected step size of step t = 2
        c2 = math.sqrt(1 - 0.999 ** 2)
        assert seen[1][4:] == (0.9, 0.999, pytest.approx(0.1 * c2 / (1 - 0.9 ** 2)),
                               pytest.approx(1e-8 * c2))
    else:
        assert seen[1][3:] == (0.1, 1e-8)
    assert np.array_equal(p, np.ones(4))  # the (recorded) kernel did the update, not NumPy


# =====================================================================================
# On a GPU: every kernel against its NumPy reference
# =====================================================================================
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
dtypes = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])


def assert_matches(got, ref, dtype):
    """``got`` (a CuPy array) equals ``ref`` (the NumPy reference's result) to the dtype's
    relative tolerance: each element relative to itself or, near zero, relative to the
    typical (median) size of the result. Where a formula cancels (x - sigmoid(l) with x
    close to sigmoid(l)), rounding errors of the size of the inputs are all that either
    side can promise, so a purely elementwise relative error would be meaningless there."""
    got = backend.as_numpy(got)
    assert got.dtype == ref.dtype == dtype and got.shape == ref.shape
    rtol = RTOL[dtype]
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * float(np.median(np.abs(ref))))


def _encoder_output(dtype, B=37, Z=20, L=3, seed=0):
    """h of shape (B, 2Z) with mu = h[:, :Z] and logvar = h[:, Z:] (column slices, as in
    VAE.elbo), eps of shape (L, B, Z), and the same on the GPU."""
    rng = np.random.default_rng(seed)
    h = rng.normal(0, 1.5, (B, 2 * Z)).astype(dtype)
    eps = rng.standard_normal((L, B, Z)).astype(dtype)
    g_h, g_eps = backend.cupy.asarray(h), backend.cupy.asarray(eps)
    return (h[:, :Z], h[:, Z:], eps), (g_h[:, :Z], g_h[:, Z:], g_eps)


@pytest.fixture
def launches():
    """The kernels on, and the launch counter from zero: a test can see which kernels ran."""
    kernels.LAUNCHES.clear()
    with kernels.use_kernels(True):
        yield kernels.LAUNCHES


@gpu
@pytest.mark.parametrize("L", [1, 3])
@dtypes
def test_reparameterize_forward_and_backward(dtype, L, launches):
    (mu, logvar, eps), (g_mu, g_logvar, g_eps) = _encoder_output(dtype, L=L)
    assert g_mu.strides[0] == 2 * g_mu.shape[1] * g_mu.itemsize   # read in place, rows 2Z apart
    dz = np.random.default_rng(1).standard_normal(eps.shape).astype(dtype)
    g_dz = backend.cupy.asarray(dz)
    assert_matches(kernels.reparameterize(g_mu, g_logvar, g_eps), D.reparameterize(mu, logvar, eps), dtype)
    for got, ref in zip(kernels.reparameterize_backward(g_dz, g_logvar, g_eps),
                        D.reparameterize_backward(dz, logvar, eps)):
        assert_matches(got, ref, dtype)
    assert_matches(kernels.reparameterize(g_mu, g_logvar, g_eps[0]),      # eps without a sample axis
                   D.reparameterize(mu, logvar, eps[0]), dtype)
    assert launches["reparameterize_forward"] == 2 and launches["reparameterize_backward"] == 1


@gpu
@dtypes
def test_kl_and_its_gradient(dtype, launches):
    (mu, logvar, _), (g_mu, g_logvar, _) = _encoder_output(dtype)
    assert_matches(kernels.kl_standard_normal(g_mu, g_logvar), D.kl_standard_normal(mu, logvar), dtype)
    for got, ref in zip(kernels.kl_standard_normal_grad(g_mu, g_logvar),
                        D.kl_standard_normal_grad(mu, logvar)):
        assert_matches(got, ref, dtype)
    assert launches["kl_standard_normal_rows"] == 1 and launches["kl_standard_normal_grad"] == 1


@gpu
@dtypes
def test_kl_gradient_has_the_broadcast_shape_on_both_paths(dtype, launches):
    rng = np.random.default_rng(6)
    for mu_shape, logvar_shape in (((1, 5), (3, 5)), ((3, 5), (1, 5))):
        mu, logvar = rng.normal(size=mu_shape).astype(dtype), rng.normal(size=logvar_shape).astype(dtype)
        got = kernels.kl_standard_normal_grad(backend.cupy.asarray(mu), backend.cupy.asarray(logvar))
        for g, r in zip(got, D.kl_standard_normal_grad(mu, logvar)):
            assert g.shape == r.shape == (3, 5)
            assert_matches(g, r, dtype)
    assert launches["kl_standard_normal_grad"] == 2


@gpu
@dtypes
def test_library_functions_take_the_kernel_and_keep_their_formula(dtype, launches):
    """On CuPy arrays D.kl_standard_normal runs the kernel (through @kernels.fused_by);
    its .reference runs the CuPy formula; the two agree, and agree with NumPy."""
    (mu, logvar, _), (g_mu, g_logvar, _) = _encoder_output(dtype)
    fused = D.kl_standard_normal(g_mu, g_logvar)
    assert launches["kl_standard_normal_rows"] == 1
    formula = D.kl_standard_normal.reference(g_mu, g_logvar)
    with kernels.use_kernels(False):
        switched_off = D.kl_standard_normal(g_mu, g_logvar)
    assert launches["kl_standard_normal_rows"] == 1
    for got in (fused, formula, switched_off):
        assert_matches(got, D.kl_standard_normal(mu, logvar), dtype)


@gpu
@pytest.mark.parametrize("pixels", [5, 784])     # fewer and more columns than threads per row
@dtypes
def test_bernoulli_log_likelihood_and_its_gradient(dtype, pixels, launches):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (37, pixels)).astype(dtype)
    x[:, ::3] = np.round(x[:, ::3])                                      # binary and grey pixels
    logits = rng.normal(0, 4, (37, pixels)).astype(dtype)
    logits[0, :4] = [-1e4, 1e4, -80.0, 80.0][: min(4, pixels)]          # far in the tails
    g_x, g_logits = backend.cupy.asarray(x), backend.cupy.asarray(logits)
    assert_matches(kernels.bernoulli_log_likelihood(g_x, g_logits),
                   D.bernoulli_log_likelihood(x, logits), dtype)
    assert_matches(kernels.bernoulli_log_likelihood_grad(g_x, g_logits),
                   D.bernoulli_log_likelihood_grad(x, logits), dtype)
    assert launches["bernoulli_log_likelihood_rows"] == 1
    assert launches["bernoulli_log_likelihood_grad"] == 1


@gpu
@dtypes
def test_gaussian_log_density_and_its_gradients(dtype, launches):
    rng = np.random.default_rng(3)
    out = rng.normal(0, 1, (37, 600)).astype(dtype)    # a decoder output: [mean logits, logvar]
    x = rng.uniform(0, 1, (37, 300)).astype(dtype)
    mu, logvar = A.sigmoid(out[:, :300]), out[:, 300:]
    g_out, g_x = backend.cupy.asarray(out), backend.cupy.asarray(x)
    g_mu, g_logvar = kernels.sigmoid(g_out[:, :300]), g_out[:, 300:]
    assert_matches(kernels.gaussian_log_density(g_x, g_mu, g_logvar),
                   D.gaussian_log_density(x, mu, logvar), dtype)
    for got, ref in zip(kernels.gaussian_log_density_grad(g_x, g_mu, g_logvar),
                        D.gaussian_log_density_grad(x, mu, logvar)):
        assert_matches(got, ref, dtype)
    # z of shape (K, B, D) against mu of shape (B, D) broadcasts as in NumPy (log q(z|x) in L_k)
    z = rng.standard_normal((4, 37, 300)).astype(dtype)
    assert_matches(kernels.gaussian_log_density(backend.cupy.asarray(z), g_mu, g_logvar),
                   D.gaussian_log_density(z, mu, logvar), dtype)
    assert launches["gaussian_log_density_rows"] == 2 and launches["gaussian_log_density_grad"] == 1


LAYERS = {"tanh": A.Tanh, "relu": A.ReLU, "sigmoid": A.Sigmoid, "softplus": A.Softplus}


@gpu
@pytest.mark.parametrize("name", sorted(LAYERS))
@dtypes
def test_activation_forward_and_backward(dtype, name, launches):
    rng = np.random.default_rng(4)
    a = rng.normal(0, 3, (37, 300)).astype(dtype)
    a[0, :6] = [-1e4, 1e4, -60.0, 60.0, 0.0, -0.0]
    dy = rng.standard_normal(a.shape).astype(dtype)
    layer = LAYERS[name]()
    y = layer.forward(a)
    da = layer.backward(dy)
    g_a, g_dy = backend.cupy.asarray(a), backend.cupy.asarray(dy)
    assert_matches(getattr(kernels, name)(g_a), y, dtype)
    # the backward from the very cache the reference used (y, or a for softplus): with a y
    # one rounding away, 1 - y^2 near y = 1 would differ by far more than the kernel's error
    cached = backend.cupy.asarray(layer.cache)
    assert_matches(getattr(kernels, f"{name}_backward")(g_dy, cached), da, dtype)
    assert_matches(getattr(kernels, name)(g_a.T), LAYERS[name]().forward(a.T), dtype)  # copied first
    assert launches[f"{name}_forward"] == 2 and launches[f"{name}_backward"] == 1


@gpu
@pytest.mark.parametrize("cls, kwargs", [(Adam, {"lr": 1e-2}), (Adagrad, {"lr": 0.1})])
@dtypes
def test_optimizer_update_matches_numpy(dtype, cls, kwargs, launches):
    """Three steps of the fused update on the GPU against three of the NumPy update."""
    rng = np.random.default_rng(5)
    shapes = {"W": (300, 20), "b": (20,)}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(3)]
    host_p = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    dev_p = {k: backend.cupy.asarray(v) for k, v in host_p.items()}
    host_g = {k: np.empty_like(v) for k, v in host_p.items()}
    dev_g = {k: backend.cupy.empty_like(v) for k, v in dev_p.items()}
    host = cls([(k, host_p[k], host_g[k]) for k in shapes], **kwargs)
    dev = cls([(k, dev_p[k], dev_g[k]) for k in shapes], **kwargs)
    for g in grads:
        for k in shapes:
            host_g[k][...] = g[k]
            dev_g[k][...] = backend.cupy.asarray(g[k])
        host.step()
        dev.step()
    for k in shapes:
        assert_matches(dev_p[k], host_p[k], dtype)
        for s in host.state_names:
            assert_matches(dev.state[s][k], host.state[s][k], dtype)
    assert launches["adam_update" if cls is Adam else "adagrad_update"] == 3 * len(shapes)


@gpu
def test_kernels_refuse_mixed_dtypes_by_name_and_the_switch_passes_them_by(launches):
    cupy = backend.cupy
    mu, logvar = cupy.zeros((4, 3), np.float32), cupy.zeros((4, 3), np.float64)
    assert kernels.active(mu, logvar) is False     # the library then uses CuPy's expressions
    with pytest.raises(TypeError, match="logvar has dtype float64"):
        kernels.kl_standard_normal(mu, logvar)
    assert D.kl_standard_normal(mu, logvar).shape == (4,)
    assert sum(launches.values()) == 0
    with kernels.use_kernels(False):
        assert kernels.active(mu, mu) is False
    assert kernels.active(mu, mu) is True
