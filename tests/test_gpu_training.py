"""The whole model on the GPU with the hand-written kernels: gradients, training, transfers.

Each test here needs CuPy and a CUDA GPU and is skipped, with the reason, without them.

* The gradient of the mean negative ELBO, by manual backprop through the kernels,
  matches central differences for every parameter tensor (float64, eps frozen).
* A short training run on the GPU follows the CPU run of the same model, data, noise
  and optimizer: the loss at every step agrees to 1e-9 relative in float64 (rounding
  only: cuBLAS and NumPy's BLAS sum in different orders) and to 1e-3 in float32.
* A training step makes no transfer between host and device (see the last test).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchvae as sv
from scratchvae import backend, kernels
from scratchvae.data.datasets import load_dataset
from scratchvae.gradcheck import THRESHOLD


def gpu(test):
    """Mark a test that needs CuPy and a CUDA GPU; it is skipped, with the reason, without them."""
    reason = "CuPy is not installed" if backend.cupy is None else "CuPy finds no CUDA GPU"
    return pytest.mark.gpu(pytest.mark.skipif(not backend.gpu_available(), reason=reason)(test))


# the kernels one step of each model launches: the switch must really switch
EXPECTED = {"bernoulli": {"bernoulli_log_likelihood_rows", "bernoulli_log_likelihood_grad"},
            "gaussian": {"gaussian_log_density_rows", "gaussian_log_density_grad", "sigmoid_forward"}}
COMMON = {"reparameterize_forward", "reparameterize_backward", "kl_standard_normal_rows",
          "kl_standard_normal_grad"}


@gpu
@pytest.mark.parametrize("use", [True, False], ids=["kernels", "cupy expressions"])
@pytest.mark.parametrize("likelihood, activation", [("bernoulli", "tanh"), ("gaussian", "softplus"),
                                                    ("bernoulli", "sigmoid"), ("gaussian", "tanh")])
def test_gradient_check_on_the_gpu(likelihood, activation, use):
    """Every parameter tensor, float64, eps frozen: relative error below THRESHOLD, or,
    for derivatives too small for that to be measurable, an absolute error below the
    central difference's own resolution (scratchvae.gradcheck.resolution)."""
    model = sv.VAE(7, z_dim=3, hidden_dims=(6, 5), likelihood=likelihood, activation=activation,
                   weight_decay=0.05, dtype="float64", device="gpu", seed=3)
    rng = np.random.default_rng(0)
    x = backend.cupy.asarray(rng.uniform(0.05, 0.95, (8, 7)))
    eps = backend.cupy.asarray(rng.standard_normal((2, 8, 3)))         # L = 2 samples, frozen
    kernels.LAUNCHES.clear()
    with kernels.use_kernels(use):
        loss, _ = model.loss_and_grads(x, eps=eps)
        launched = set(kernels.LAUNCHES)
        grads = {k: g.copy() for k, g in model.gradients().items()}
        reports = sv.check_gradients(lambda: model.loss(x, eps=eps), model.parameters(), grads)
        rel, _, _ = sv.check_directional(lambda: model.loss(x, eps=eps), model.parameters(), grads)
    want = COMMON | EXPECTED[likelihood] | {f"{activation}_forward", f"{activation}_backward"}
    assert launched >= want if use else launched == set()
    assert len(reports) == 12
    assert max(r.worst for r in reports) < THRESHOLD, sv.format_report(reports)
    assert rel < THRESHOLD


def _digits(n=500):
    return load_dataset("digits").train[:n]


def _loss_curve(device, dtype, likelihood, activation, optimizer, steps=40, B=50, seed=0):
    """The batch loss at every step of a short run; data order and eps come from NumPy
    generators on the host, so the CPU and the GPU run see exactly the same numbers."""
    x_all = _digits().astype(dtype)
    model = sv.VAE(64, z_dim=8, hidden_dims=(32,), likelihood=likelihood, activation=activation,
                   dtype=dtype, device=device, seed=seed)
    opt = {"adam": sv.Adam, "adagrad": sv.Adagrad}[optimizer](model.named_parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        x = x_all[rng.choice(len(x_all), B, replace=False)]
        eps = rng.standard_normal((1, B, 8)).astype(dtype)
        loss, _ = model.loss_and_grads(sv.to_device(x, device), eps=sv.to_device(eps, device))
        opt.step()
        losses.append(loss)
    return np.array(losses)


@gpu
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-3)])
@pytest.mark.parametrize("likelihood, activation, optimizer", [("bernoulli", "relu", "adam"),
                                                               ("gaussian", "tanh", "adagrad")])
def test_training_on_the_gpu_follows_the_cpu(likelihood, activation, optimizer, dtype, rtol):
    cpu = _loss_curve("cpu", dtype, likelihood, activation, optimizer)
    with kernels.use_kernels(True):
        gpu_ = _loss_curve("gpu", dtype, likelihood, activation, optimizer)
    assert cpu[-10:].mean() < cpu[:10].mean() - 1.0          # the run does learn
    np.testing.assert_allclose(gpu_, cpu, rtol=rtol)


# A kernel that keeps the GPU busy for a given time, read from the GPU's nanosecond clock.
SPIN = r"""
extern "C" __global__ void spin(long long nanoseconds) {
    long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (now - start < nanoseconds);
}
"""


def _transfers(fn, seconds=1.0):
    """Whether ``fn()`` moves data between host and device, seen two ways at once.

    * A copy to the host (``float()``, ``bool()``, ``.get()``) must wait for the
      device to finish the work queued before it. So queue a kernel that keeps the GPU
      busy for ``seconds``, run ``fn()``: if the GPU is still busy when ``fn`` returns,
      ``fn`` never waited, so it read nothing back.
    * A copy from the host goes through CuPy's pinned (page-locked) staging memory;
      ``cupy.cuda.set_pinned_memory_allocator`` (documented CuPy API) lets us count
      those allocations.
    """
    cupy = backend.cupy
    spin = cupy.RawKernel(SPIN, "spin")
    pool = cupy.get_default_pinned_memory_pool()
    staged = []

    def counting_malloc(size):
        staged.append(size)
        return pool.malloc(size)

    stream = cupy.cuda.get_current_stream()
    spin((1,), (1,), (np.int64(seconds * 1e9),))
    cupy.cuda.set_pinned_memory_allocator(counting_malloc)
    try:
        fn()
        waited = stream.done        # a query, not a wait: True only if fn waited for the spin
    finally:
        cupy.cuda.set_pinned_memory_allocator(pool.malloc)
        stream.synchronize()
    return {"read back": waited, "copied in": len(staged) > 0}


@gpu
@pytest.mark.parametrize("use", [True, False], ids=["kernels", "cupy expressions"])
def test_a_training_step_makes_no_host_device_transfer(use):
    """A training step on the GPU: the ELBO (its data checked once beforehand, hence
    check=False), backward, the optimizer's update, the loss summed on the device, eps
    drawn on the device. Three steps in a row neither read anything back nor copy
    anything in; the controls show that the check sees each kind of transfer."""
    cupy = backend.cupy
    host_x = _digits(100)
    model = sv.VAE(64, z_dim=8, hidden_dims=(32,), likelihood="bernoulli", activation="relu",
                   device="gpu", seed=0)
    opt = sv.Adam(model.named_parameters(), lr=1e-3)
    x = cupy.asarray(host_x)
    loss_sum = cupy.zeros((), model.dtype)

    def step():
        terms = model.elbo(x, check=False)
        model.backward()
        opt.step()
        cupy.subtract(loss_sum, terms.elbo.mean(), out=loss_sum)

    with kernels.use_kernels(use):
        step()                         # the first steps compile kernels and fill the memory pool
        step()                         # (two: the cache of one step is alive during the next)
        assert _transfers(lambda: [step() for _ in range(3)]) == {"read back": False, "copied in": False}
        assert _transfers(lambda: float(loss_sum))["read back"]          # the loss as a Python float
        assert _transfers(lambda: model.elbo(x))["read back"]            # checking the values of x
        assert _transfers(lambda: cupy.asarray(host_x))["copied in"]     # a batch from the host
    assert np.isfinite(float(loss_sum)) and opt.t == 5


def test_elbo_without_value_checks_still_checks_shape_dtype_and_device(xp):
    """check=False (the GPU training step's) skips only the checks that read values."""
    device = "cpu" if xp is np else "gpu"
    model = sv.VAE(4, z_dim=2, hidden_dims=(3,), device=device, seed=0)
    x = xp.asarray(np.full((5, 4), 0.5, np.float32))
    np.testing.assert_array_equal(backend.as_numpy(model.elbo(x, eps=xp.zeros((5, 2), np.float32)).elbo),
                                  backend.as_numpy(model.elbo(x, eps=xp.zeros((5, 2), np.float32),
                                                              check=False).elbo))
    bad = x.copy()
    bad[0, 0] = 2.0                                        # not a probability
    with pytest.raises(ValueError, match="x must lie in"):
        model.elbo(bad)
    assert model.elbo(bad, check=False).elbo.shape == (5,)
    with pytest.raises(ValueError, match="x must have shape"):
        model.elbo(x[:, :3], check=False)
    with pytest.raises(TypeError, match="dtype float32"):
        model.elbo(x.astype(np.float64), check=False)


@pytest.mark.skipif(backend.gpu_available(), reason="with a GPU the benchmark would run for minutes")
def test_gpu_benchmark_explains_that_it_needs_a_gpu():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"
    done = subprocess.run([sys.executable, str(script), "--out", ""], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert "this benchmark needs a CUDA GPU" in done.stderr and "Nothing was measured" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@gpu
@pytest.mark.parametrize("binarization", ["none", "dynamic"])
def test_the_trainers_step_makes_no_host_device_transfer(binarization):
    """The same property for Trainer: its batches are sliced from images kept on the device
    (the epoch's order is copied over once, when the epoch starts) and its loss stays there."""
    from scratchvae.training.step import train_step
    from scratchvae.training.trainer import Trainer

    host_x = _digits(400)
    model = sv.VAE(64, z_dim=8, hidden_dims=(32,), device="gpu", seed=0)
    trainer = Trainer(model, sv.Adam(model.named_parameters()), host_x, host_x[:100],
                      batch_size=50, binarization=binarization, progress=False)
    it = trainer.images.epoch_batches(trainer.batch_size)
    losses = []

    def step():
        losses.append(train_step(model, trainer.optimizer, next(it)))

    step()
    step()
    assert _transfers(lambda: [step() for _ in range(3)]) == {"read back": False, "copied in": False}
    assert all(np.isfinite(float(loss)) for loss in losses)
