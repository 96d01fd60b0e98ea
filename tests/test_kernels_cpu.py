"""Every CUDA kernel run on the CPU and held to its NumPy reference, without a GPU.

The ``.cu`` files are compiled unchanged by the host C++ compiler against
``scratchvae/kernels/cpu/cuda_on_cpu.h`` (one std::thread per CUDA thread of a block,
``__syncthreads()`` a real barrier) and launched through the very wrappers the GPU
uses, with their grid, block and argument list (``on=`` the CPU launcher). Each result
must match the reference to the GPU tests' tolerances (tests/test_kernels.py): 1e-12
relative in float64, 1e-5 in float32. The inputs are the awkward ones: column slices
read in place (``h[:, :Z]``, rows 2Z apart), broadcast rows (a leading dimension of
0), rows longer and shorter than a block, odd sizes, logits of +-1e4 and exponentials
that overflow. Outputs start as NaN inside NaN fences, so a missed element or a
write past the end fails too.

Most tests go through the library itself: with the dispatch rule switched to accept
NumPy arrays and each wrapper pointed at the CPU launcher, ``D.kl_standard_normal``
takes the path it takes on a GPU, and is compared with the same call on the formula.

Without a C++ compiler these tests are skipped, with the reason; the checks of the
argument lists against the kernels' signatures (the first section) need none.
"""
import contextlib
import functools
import inspect
import math

import numpy as np
import pytest

import scratchvae as sv
import scratchvae.activations as A
import scratchvae.distributions as D
from scratchvae import kernels
from scratchvae.kernels import cpu, launch
from scratchvae.optim import Adagrad, Adam

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
dtypes = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def _params(f):
    try:
        return inspect.signature(f).parameters
    except (TypeError, ValueError):
        return {}


WRAPPERS = sorted(name for name in kernels.__all__ if "on" in _params(getattr(kernels, name)))

needs_compiler = pytest.mark.skipif(cpu.compiler() is None,
                                    reason="no C++ compiler (g++, c++ or clang++ on PATH, or $CXX)")


# =====================================================================================
# The argument lists against the kernels' signatures (no compiler needed)
# =====================================================================================
class Recorder(launch.Launcher):
    """Runs nothing: checks each launch's arguments against the kernel's signature."""
    name = "NumPy"
    xp = np

    def __init__(self):
        self.launched = []

    def launch(self, filename, name, dtype, blocks, threads, args):
        launch.check_args(filename, name, dtype, args)
        self.launched.append((filename, name, np.dtype(dtype).name, blocks, threads))


def test_signatures_are_read_from_every_kernel_source():
    for filename, names in launch.KERNELS.items():
        found = launch.signatures(filename)
        assert sorted(found) == sorted(names), filename
        for name, params in found.items():
            assert params and all(kind in ("const T*", "T*", "T", "long long") for kind, _ in params)
    assert launch.signatures("kl.cu")["kl_standard_normal_rows"] == (
        ("const T*", "mu"), ("long long", "ld_mu"), ("const T*", "logvar"), ("long long", "ld_logvar"),
        ("T*", "kl"), ("long long", "cols"))


def _every_wrapper_call(dtype, on):
    """Each wrapper once, on small NumPy arrays with column slices and broadcasts."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=(5, 6)).astype(dtype)
    mu, logvar = h[:, :3], h[:, 3:]                       # rows 6 apart
    eps = rng.normal(size=(2, 5, 3)).astype(dtype)
    x = rng.uniform(size=(5, 3)).astype(dtype)
    a = rng.normal(size=(7,)).astype(dtype)
    p, g, s1, s2 = (rng.normal(size=(4, 3)).astype(dtype) for _ in range(4))
    return {
        "reparameterize": lambda: kernels.reparameterize(mu, logvar, eps, on=on),
        "reparameterize_backward": lambda: kernels.reparameterize_backward(eps, logvar, eps, on=on),
        "kl_standard_normal": lambda: kernels.kl_standard_normal(mu[:1], logvar, on=on),
        "kl_standard_normal_grad": lambda: kernels.kl_standard_normal_grad(mu, logvar, on=on),
        "bernoulli_log_likelihood": lambda: kernels.bernoulli_log_likelihood(x, mu, on=on),
        "bernoulli_log_likelihood_grad": lambda: kernels.bernoulli_log_likelihood_grad(x, mu, on=on),
        "bernoulli_log_likelihood_and_grad": lambda: kernels.bernoulli_log_likelihood_and_grad(x, mu, on=on),
        "gaussian_log_density": lambda: kernels.gaussian_log_density(eps, mu, logvar, on=on),
        "gaussian_log_density_grad": lambda: kernels.gaussian_log_density_grad(x, mu, logvar, on=on),
        **{f: functools.partial(getattr(kernels, f), a, on=on)
           for f in ("tanh", "relu", "sigmoid", "softplus")},
        **{f: functools.partial(getattr(kernels, f), x, mu, on=on)
           for f in ("tanh_backward", "relu_backward", "sigmoid_backward", "softplus_backward")},
        "adam_update": lambda: kernels.adam_update(p, g, s1, s2, 0.9, 0.999, 1e-3, 1e-8, on=on),
        "adagrad_update": lambda: kernels.adagrad_update(p, g, s1, 0.1, 1e-8, on=on),
    }


@dtypes
def test_every_wrapper_passes_the_arguments_its_kernel_takes(dtype):
    """The arguments of every launch fit the signature in the .cu file (count, array
    dtypes, numpy.float32 or float64 scalars as T, numpy.int64 as long long, each
    leading dimension the row stride of its array), and every kernel is launched."""
    on = Recorder()
    calls = _every_wrapper_call(dtype, on)
    assert sorted(calls) == WRAPPERS
    for call in calls.values():
        call()
    launched = {(f, name) for f, name, *_ in on.launched}
    assert launched == {(f, name) for f, names in launch.KERNELS.items() for name in names}
    for filename, name, _, blocks, threads in on.launched:
        rows_kernel = name.endswith("_rows")
        assert threads == (launch.ROW_THREADS if rows_kernel else launch.THREADS), name


def _kl_args(dtype, ld=None, scalar=np.int64):
    mu = np.zeros((4, 6), dtype)[:, :3]
    return (mu, np.int64(6 if ld is None else ld), mu, np.int64(6), np.zeros(4, dtype), scalar(3))


@pytest.mark.parametrize("args, message", [
    (_kl_args(np.float32), None),
    (_kl_args(np.float32)[:-1], "takes 6 arguments"),
    (_kl_args(np.float32, ld=3), "ld_mu = 3 elements apart"),                      # a wrong leading dimension
    (_kl_args(np.float32, scalar=int), "must be numpy.int64, got int"),
    ((np.zeros((4, 3), np.float64), np.int64(3)) + _kl_args(np.float32)[2:], "must be a float array, got float64"),
    (_kl_args(np.float32)[:4] + (np.zeros((4, 2), np.float32)[:, 0],) + _kl_args(np.float32)[5:],
     "must be C-contiguous"),
])
def test_check_args_refuses_what_a_gpu_would_misread(args, message):
    if message is None:
        launch.check_args("kl.cu", "kl_standard_normal_rows", np.float32, args)
    else:
        with pytest.raises((TypeError, ValueError), match=message):
            launch.check_args("kl.cu", "kl_standard_normal_rows", np.float32, args)


def test_check_args_refuses_a_python_float_where_the_kernel_wants_a_float():
    theta = np.zeros(4, np.float32)
    good = (theta, theta, theta, theta) + tuple(np.float32(v) for v in (0.1, 0.001, 1e-3, 1e-8)) \
        + (np.int64(4),)
    launch.check_args("optim.cu", "adam_update", np.float32, good)
    for k, wrong in ((4, 0.9), (5, np.float64(0.1))):
        args = good[:k] + (wrong,) + good[k + 1:]
        with pytest.raises(TypeError, match=r"argument %d \(float one_minus_b1|argument %d \(float one_minus_b2" % (k, k)):
            launch.check_args("optim.cu", "adam_update", np.float32, args)
    with pytest.raises(TypeError, match="as a double"):
        launch.check_args("optim.cu", "adam_update", np.float32, good[:4] + (0.9,) + good[5:])


# =====================================================================================
# The kernels on the CPU
# =====================================================================================
@pytest.fixture(scope="session")
def on_cpu(tmp_path_factory):
    """The CPU launcher, compiled once per test session."""
    if cpu.compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++ on PATH, or $CXX)")
    return cpu.launcher(str(tmp_path_factory.mktemp("cpu-kernels")))


def _numpy_active(*arrays):
    """The dispatch rule of scratchvae.kernels.active, for NumPy arrays."""
    dtype = getattr(arrays[0], "dtype", None)
    return dtype in (np.float32, np.float64) and all(
        isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim > 0 for a in arrays)


@contextlib.contextmanager
def library_on_cpu(on):
    """The library's functions take their kernel path for NumPy arrays, and every kernel
    runs on the CPU: what a GPU run does, with the CPU launcher in place of CuPy."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "HAVE_CUPY", True)   # the dispatch runs as it would with CuPy
        patch.setattr(kernels, "active", _numpy_active)
        for name in WRAPPERS:
            patch.setattr(kernels, name, functools.partial(getattr(kernels, name), on=on))
        yield


@contextlib.contextmanager
def launched(on, *names):
    """Checks that the block launched exactly the named kernels (each once per name)."""
    before = on.launches.copy()
    yield
    ran = sorted(name for (name, _), n in (on.launches - before).items() for _ in range(n))
    assert ran == sorted(names)


def assert_matches(got, ref, dtype):
    """As in tests/test_kernels.py: relative to each element or, near zero, to the median
    size of the result."""
    assert isinstance(got, np.ndarray) and got.dtype == ref.dtype == dtype and got.shape == ref.shape
    rtol = RTOL[dtype]
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * float(np.median(np.abs(ref))))


def _encoder_output(on, dtype, B=37, Z=20, L=3, seed=0):
    """mu = h[:, :Z] and logvar = h[:, Z:] of h (B, 2Z), and eps (L, B, Z), fenced."""
    rng = np.random.default_rng(seed)
    h = on.fenced(rng.normal(0, 1.5, (B, 2 * Z)).astype(dtype))
    h[0, Z:Z + 2] = [90.0, -90.0]              # exp(logvar / 2) near float32's largest, and tiny
    eps = on.fenced(rng.standard_normal((L, B, Z)).astype(dtype))
    return h[:, :Z], h[:, Z:], eps


@needs_compiler
@pytest.mark.parametrize("L", [1, 3])
@dtypes
def test_reparameterize_forward_and_backward(on_cpu, dtype, L):
    mu, logvar, eps = _encoder_output(on_cpu, dtype, L=L)
    dz = on_cpu.fenced(np.random.default_rng(1).standard_normal(eps.shape).astype(dtype))
    with library_on_cpu(on_cpu), launched(on_cpu, "reparameterize_forward", "reparameterize_forward",
                                          "reparameterize_backward"):
        z = D.reparameterize(mu, logvar, eps)
        z0 = D.reparameterize(mu, logvar, eps[0])      # eps without a sample axis
        dmu, dlogvar = D.reparameterize_backward(dz, logvar, eps)
    assert_matches(z, D.reparameterize(mu, logvar, eps), dtype)
    assert_matches(z0, D.reparameterize(mu, logvar, eps[0]), dtype)
    for got, ref in zip((dmu, dlogvar), D.reparameterize_backward(dz, logvar, eps)):
        assert_matches(got, ref, dtype)


@needs_compiler
@pytest.mark.parametrize("Z", [5, 300])      # rows shorter and longer than a block of 256
@dtypes
def test_kl_and_its_gradient(on_cpu, dtype, Z):
    mu, logvar, _ = _encoder_output(on_cpu, dtype, B=9, Z=Z, L=1)
    logvar = logvar.copy()
    logvar[1, :2] = [-104.0, 89.0] if dtype == np.float32 else [-750.0, 710.0]   # exp under- and overflows
    with library_on_cpu(on_cpu), launched(on_cpu, "kl_standard_normal_rows", "kl_standard_normal_grad"):
        kl = D.kl_standard_normal(mu, logvar)
        grads = D.kl_standard_normal_grad(mu, logvar)
    with np.errstate(over="ignore"):
        ref_kl, ref_grads = D.kl_standard_normal(mu, logvar), D.kl_standard_normal_grad(mu, logvar)
    assert_matches(kl, ref_kl, dtype)
    for got, ref in zip(grads, ref_grads):
        assert_matches(got, ref, dtype)
    assert np.isinf(kl[1]) and np.isinf(grads[1][1, 1])    # overflowed on both paths


@needs_compiler
@dtypes
def test_kl_gradient_has_the_broadcast_shape_on_both_paths(on_cpu, dtype):
    """mu (1, 5) against logvar (3, 5): three rows of KL, so three rows of gradient, on
    the kernel (mu read with a leading dimension of 0) and on the formula alike."""
    rng = np.random.default_rng(6)
    for mu_shape, logvar_shape in (((1, 5), (3, 5)), ((3, 5), (1, 5)), ((5,), (2, 3, 5))):
        mu = on_cpu.fenced(rng.normal(size=mu_shape).astype(dtype))
        logvar = on_cpu.fenced(rng.normal(size=logvar_shape).astype(dtype))
        with library_on_cpu(on_cpu):
            got = D.kl_standard_normal_grad(mu, logvar)
        ref = D.kl_standard_normal_grad(mu, logvar)
        shape = np.broadcast_shapes(mu_shape, logvar_shape)
        for g, r in zip(got, ref):
            assert g.shape == r.shape == shape
            assert_matches(g, r, dtype)


@needs_compiler
@pytest.mark.parametrize("pixels", [5, 784])     # fewer and more columns than threads per row
@dtypes
def test_bernoulli_log_likelihood_and_its_gradient(on_cpu, dtype, pixels):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (11, pixels)).astype(dtype)
    x[:, ::3] = np.round(x[:, ::3])                                      # binary and grey pixels
    wide = rng.normal(0, 4, (11, pixels + 7)).astype(dtype)             # logits: a column slice
    wide[0, :4] = [-1e4, 1e4, -80.0, 80.0][: min(4, pixels)]            # far in the tails
    x, logits = on_cpu.fenced(x), on_cpu.fenced(wide)[:, :pixels]
    with library_on_cpu(on_cpu), launched(on_cpu, *["bernoulli_log_likelihood_rows",
                                                    "bernoulli_log_likelihood_grad"] * 2):
        logp = D.bernoulli_log_likelihood(x, logits)
        dlogits = D.bernoulli_log_likelihood_grad(x, logits)
        both = D.bernoulli_log_likelihood_and_grad(x, logits)
    assert_matches(logp, D.bernoulli_log_likelihood(x, logits), dtype)
    assert_matches(dlogits, D.bernoulli_log_likelihood_grad(x, logits), dtype)
    for got, ref in zip(both, D.bernoulli_log_likelihood_and_grad.reference(x, logits)):
        assert_matches(got, ref, dtype)


@needs_compiler
@dtypes
def test_gaussian_log_density_and_its_gradients(on_cpu, dtype):
    rng = np.random.default_rng(3)
    out = on_cpu.fenced(rng.normal(0, 1, (13, 600)).astype(dtype))  # a decoder output: [mean, logvar]
    x = on_cpu.fenced(rng.uniform(0, 1, (13, 300)).astype(dtype))
    z = on_cpu.fenced(rng.standard_normal((4, 13, 300)).astype(dtype))
    mu, logvar = A.sigmoid(out[:, :300]), out[:, 300:]
    with library_on_cpu(on_cpu), launched(on_cpu, "sigmoid_forward", "gaussian_log_density_rows",
                                          "gaussian_log_density_rows", "gaussian_log_density_grad"):
        g_mu = A.sigmoid(out[:, :300])
        logp = D.gaussian_log_density(x, mu, logvar)
        logq = D.gaussian_log_density(z, mu, logvar)     # (K, B, D) against (B, D), as in L_k
        grads = D.gaussian_log_density_grad(x, mu, logvar)
    assert_matches(g_mu, mu, dtype)
    assert_matches(logp, D.gaussian_log_density(x, mu, logvar), dtype)
    assert_matches(logq, D.gaussian_log_density(z, mu, logvar), dtype)
    for got, ref in zip(grads, D.gaussian_log_density_grad(x, mu, logvar)):
        assert_matches(got, ref, dtype)


LAYERS = {"tanh": A.Tanh, "relu": A.ReLU, "sigmoid": A.Sigmoid, "softplus": A.Softplus}


@needs_compiler
@pytest.mark.parametrize("name", sorted(LAYERS))
@dtypes
def test_activation_forward_and_backward(on_cpu, dtype, name):
    rng = np.random.default_rng(4)
    wide = rng.normal(0, 3, (7, 310)).astype(dtype)
    wide[0, :8] = [-1e4, 1e4, -60.0, 60.0, 0.0, -0.0, 100.0, -100.0]   # exp(100) overflows float32
    a = on_cpu.fenced(wide)[:, 3:303]                                 # a column slice, 300 wide
    dy = on_cpu.fenced(rng.standard_normal(a.shape).astype(dtype))
    with library_on_cpu(on_cpu), launched(on_cpu, f"{name}_forward", f"{name}_backward",
                                          f"{name}_forward", f"{name}_forward"):
        layer = LAYERS[name]()
        y = layer.forward(a)
        da = layer.backward(dy)
        y_t = LAYERS[name]().forward(a.T)                            # transposed: copied first
        y_1d = LAYERS[name]().forward(a[2])                          # one axis
    ref_layer = LAYERS[name]()
    assert_matches(y, ref_layer.forward(a), dtype)
    # the backward from the very cache the kernel path kept (y, or a for softplus)
    assert_matches(da, getattr(A, f"{name}_backward").reference(dy, layer.cache), dtype)
    assert_matches(y_t, LAYERS[name]().forward(a.T), dtype)
    assert_matches(y_1d, LAYERS[name]().forward(a[2]), dtype)


@needs_compiler
@pytest.mark.parametrize("cls, kwargs", [(Adam, {"lr": 1e-2}), (Adagrad, {"lr": 0.1})])
@dtypes
def test_optimizer_update_matches_numpy(on_cpu, dtype, cls, kwargs):
    """Three steps of the fused update against three of the NumPy update, through the
    optimizers' own step (bias-corrected step sizes and all)."""
    rng = np.random.default_rng(5)
    shapes = {"W": (300, 3), "b": (3,)}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(3)]
    grads[1]["W"][:5, 0] = [1e4, -1e4, 1e-30, 0.0, 3e18]          # saturated and vanishing steps
    start = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    runs = {}
    for path in ("kernel", "formula"):
        p = {k: v.copy() for k, v in start.items()}
        g = {k: np.empty_like(v) for k, v in start.items()}
        opt = cls([(k, p[k], g[k]) for k in shapes], **kwargs)
        with library_on_cpu(on_cpu) if path == "kernel" else contextlib.nullcontext():
            for step in grads:
                for k in shapes:
                    g[k][...] = step[k]
                opt.step()
        runs[path] = (p, opt)
    (p, opt), (ref_p, ref_opt) = runs["kernel"], runs["formula"]
    for k in shapes:
        assert_matches(p[k], ref_p[k], dtype)
        for s in opt.state_names:
            assert_matches(opt.state[s][k], ref_opt.state[s][k], dtype)


@needs_compiler
@pytest.mark.parametrize("likelihood, activation", [("bernoulli", "tanh"), ("gaussian", "softplus")])
def test_a_training_step_through_the_kernels_matches_the_formulas(on_cpu, likelihood, activation):
    """The loss and every gradient of a VAE, and two Adam steps, with every fused kernel
    of a GPU step run on the CPU, against the same step on the formulas (float64)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 0.95, (19, 30))
    eps = rng.standard_normal((2, 19, 4))
    results = []
    for use_kernels in (True, False):
        model = sv.VAE(30, z_dim=4, hidden_dims=(9,), likelihood=likelihood, activation=activation,
                       dtype="float64", seed=3)
        opt = Adam(model.named_parameters(), lr=1e-2)
        with library_on_cpu(on_cpu) if use_kernels else contextlib.nullcontext():
            before = sum(on_cpu.launches.values())
            loss, _ = model.loss_and_grads(x, eps=eps)
            grads = {k: g.copy() for k, g in model.gradients().items()}
            opt.step()
            model.loss_and_grads(x, eps=eps)
            opt.step()
            ran = sum(on_cpu.launches.values()) - before
        results.append((loss, grads, {name: p.copy() for name, p, _ in model.named_parameters()}, ran))
    (loss, grads, params, ran), (ref_loss, ref_grads, ref_params, ref_ran) = results
    assert ran > 20 and ref_ran == 0
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for k in ref_grads:
        assert_matches(grads[k], ref_grads[k], np.float64)
    for k in ref_params:
        assert_matches(params[k], ref_params[k], np.float64)


# =====================================================================================
# The harness itself
# =====================================================================================
@needs_compiler
def test_a_grid_too_small_leaves_nan_and_a_block_too_large_is_refused(on_cpu):
    mu = np.ones((3, 200))
    dmu, dlogvar = on_cpu.empty(mu.shape, mu.dtype), on_cpu.empty(mu.shape, mu.dtype)
    args = (mu, np.int64(200), mu, np.int64(200), dmu, dlogvar, np.int64(3), np.int64(200))
    on_cpu.launch("kl.cu", "kl_standard_normal_grad", mu.dtype, 2, launch.THREADS, args)  # 512 of 600
    assert np.isnan(dmu).sum() == 600 - 512 and not np.isnan(dmu.ravel()[:512]).any()
    with pytest.raises(RuntimeError, match="invalid launch: 1 blocks of 1025 threads"):
        on_cpu.launch("kl.cu", "kl_standard_normal_grad", mu.dtype, 1, 1025, args)


@needs_compiler
def test_row_kernels_sum_with_every_thread_of_the_block(on_cpu):
    """A row of 1,000 ones sums to exactly 1,000 in the block's shared-memory tree: every
    thread's part arrived, through every __syncthreads(), in every block."""
    x = np.zeros((50, 1000))
    logits = np.zeros((50, 1000))            # x l - softplus(l) = -log 2 for every pixel
    logp = kernels.bernoulli_log_likelihood(x, logits, on=on_cpu)
    np.testing.assert_allclose(logp, -1000 * math.log(2), rtol=1e-13)


# =====================================================================================
# Fused multiply-adds, as nvcc compiles them by default
# =====================================================================================
@pytest.fixture(scope="session")
def on_cpu_fma(tmp_path_factory):
    """The kernels compiled with a * b + c fused into one rounding (nvcc's -fmad=true)."""
    if cpu.compiler() is None or not cpu.fma_available():
        pytest.skip("needs a C++ compiler and a CPU with fused multiply-add instructions")
    return cpu.launcher(str(tmp_path_factory.mktemp("cpu-kernels-fma")), fma=True)


def _margin(got, ref, dtype):
    """The largest error as a fraction of what assert_matches allows (1 = at the limit)."""
    rtol = RTOL[dtype]
    allowed = rtol * np.abs(ref) + rtol * float(np.median(np.abs(ref)))
    return float(np.max(np.abs(got.astype(np.float64) - ref) / allowed))


def _tanh_backward_margin(on):
    """tanh's backward on the inputs of tests/test_kernels.py (float32)."""
    rng = np.random.default_rng(4)
    a = rng.normal(0, 3, (37, 300)).astype(np.float32)
    a[0, :6] = [-1e4, 1e4, -60.0, 60.0, 0.0, -0.0]
    dy = rng.standard_normal(a.shape).astype(np.float32)
    y = A.tanh.reference(a)
    return _margin(kernels.tanh_backward(dy, y, on=on), A.tanh_backward.reference(dy, y), np.float32)


def _adam_margin(on):
    """Three Adam steps on the inputs of tests/test_kernels.py (float32), kernel against formula."""
    rng = np.random.default_rng(5)
    shapes = {"W": (300, 20), "b": (20,)}
    grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(3)]
    start = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    runs = []
    for path in (library_on_cpu(on), contextlib.nullcontext()):
        p = {k: v.copy() for k, v in start.items()}
        g = {k: np.empty_like(v) for k, v in start.items()}
        opt = Adam([(k, p[k], g[k]) for k in shapes], lr=1e-2)
        with path:
            for step in grads:
                for k in shapes:
                    g[k][...] = step[k]
                opt.step()
        runs.append([p[k] for k in shapes] + [opt.state[s][k] for s in opt.state_names for k in shapes])
    return max(_margin(got, ref, np.float32) for got, ref in zip(*runs))


@needs_compiler
def test_float32_margin_with_fused_multiply_adds(on_cpu, on_cpu_fma):
    """nvcc fuses a * b + c into one rounding; NumPy rounds twice. The GPU tests' float32
    inputs must pass either way: with fma, tanh's backward (1 - y^2 cancels where y is
    near +-1) uses about a fifth of the tolerance, Adam's moments a few percent (see
    scratchvae/kernels/README.md). Without fma the kernels round as NumPy does."""
    margins = {("tanh_backward", "exact"): _tanh_backward_margin(on_cpu),
               ("tanh_backward", "fma"): _tanh_backward_margin(on_cpu_fma),
               ("adam_update", "exact"): _adam_margin(on_cpu),
               ("adam_update", "fma"): _adam_margin(on_cpu_fma)}
    assert all(margin < 0.5 for margin in margins.values()), margins
    assert margins["tanh_backward", "exact"] == 0 and margins["adam_update", "exact"] == 0, margins


BREAKAGES = [  # (file, text, replaced by): kernels that compile, and are wrong
    ("kl.cu", "mu[r * ld_mu + c];\n    dlogvar[i] = T(0.5) * (exp(logvar[r * ld_logvar + c])",   # the lds
     "mu[r * ld_logvar + c];\n    dlogvar[i] = T(0.5) * (exp(logvar[r * ld_mu + c])"),        # swapped
    ("kl.cu", "    T total = block_sum(sum);",                                  # a barrier some threads skip
     "    if (threadIdx.x >= cols) return;\n    T total = block_sum(sum);"),
]


@needs_compiler
def test_the_harness_catches_wrong_kernels(tmp_path):
    """A copy of the sources with two bugs nvcc compiles without a word: a gradient that
    reads mu = h[:, :Z] and logvar with each other's leading dimension differs from the
    reference, and a block whose threads do not all reach the barrier is reported."""
    for f in launch.HERE.glob("*.cu*"):
        (tmp_path / f.name).write_text(f.read_text())
    for filename, old, new in BREAKAGES:
        text = (tmp_path / filename).read_text()
        assert old in text
        (tmp_path / filename).write_text(text.replace(old, new, 1))
    broken = cpu.launcher(str(tmp_path / "cache"), source_dir=str(tmp_path))
    h = np.random.default_rng(8).normal(size=(5, 8))
    mu, logvar = h[:, :4], h[:, 4:].copy()                    # rows 8 and 4 apart
    dmu, _ = kernels.kl_standard_normal_grad(mu, logvar, on=broken)
    assert not np.allclose(dmu, mu)
    with pytest.raises(RuntimeError, match=r"block 0: thread 4 called __syncthreads\(\) 0 times, thread 0 9 times"):
        kernels.kl_standard_normal(mu, logvar, on=broken)
