# %% [markdown]
# # Lesson 10: the same code on a GPU
#
# Every function in scratchvae is written once, against an "array module" xp:
#
#     xp = get_array_module(x)     # cupy when x lives on a GPU, numpy otherwise
#     xp.exp(x)                    # runs where x is
#
# so a model built with `device="gpu"` keeps its parameters in CuPy arrays, and the same forward,
# backward and optimizer code runs on the GPU, one CuPy operation (one kernel launch) per array
# expression. For the hot elementwise steps (the reparameterization, the KL, the likelihoods, the
# activations, Adam) `scratchvae.kernels` holds hand-written CUDA kernels that fuse a whole
# expression into one launch. Each library function that has one is marked `@kernels.fused_by(...)`:
# the kernel runs in its place when every array is a CuPy array of one float dtype, and
# `kernels.use_kernels(False)` switches back to plain CuPy to compare.
#
# On a machine without CuPy or a CUDA GPU this lesson says so and shows the CPU side: the shim
# choosing NumPy, the kernel source beside its NumPy reference, and CPU timings.

# %%
import inspect
import time

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
import numpy as np

from _lesson import Lesson
from scratchvae import VAE, Adam, backend, kernels
from scratchvae.distributions import kl_standard_normal, reparameterize
from scratchvae.kernels.launch import source

run = Lesson("10_gpu")
gpu = backend.gpu_available()
if gpu:
    print(f"  GPU: {backend.cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}; "
          f"kernels {'on' if kernels.enabled() else 'off'}")
else:
    reason = "CuPy is not installed" if backend.cupy is None else "CuPy finds no CUDA GPU"
    print(f"  No GPU here ({reason}): the CPU side only. With CuPy and a CUDA GPU "
          f"(pip install scratchvae[gpu]) the same cells also time the GPU.")
devices = ["cpu", "gpu"] if gpu else ["cpu"]

# %% [markdown]
# ## The shim
#
# `get_array_module` looks at the arrays themselves; the library never asks which device it is on.

# %%
rng = np.random.default_rng(run.seed)
mu, logvar = rng.standard_normal((4, 3)), rng.normal(0.0, 0.5, (4, 3))
print(f"  get_array_module(NumPy array) -> {backend.get_array_module(mu).__name__}")
kl_cpu = kl_standard_normal(mu, logvar)
if gpu:
    mu_gpu, logvar_gpu = backend.to_device(mu, "gpu"), backend.to_device(logvar, "gpu")
    print(f"  get_array_module(CuPy array)  -> {backend.get_array_module(mu_gpu).__name__}")
    run.check("KL on the GPU (kernel) vs NumPy, float64", backend.as_numpy(kl_standard_normal(mu_gpu, logvar_gpu)),
              kl_cpu, tol=1e-12)
    with kernels.use_kernels(False):
        run.check("KL on the GPU (plain CuPy) vs NumPy, float64",
                  backend.as_numpy(kl_standard_normal(mu_gpu, logvar_gpu)), kl_cpu, tol=1e-12)

# %% [markdown]
# ## A kernel beside its reference
#
# The NumPy reference, then the CUDA kernel that replaces it on the GPU (from
# `scratchvae/kernels/reparameterize.cu`): one thread per element of z, the same formula.

# %%
print(inspect.getsource(reparameterize))
cuda = source("reparameterize.cu")
start = cuda.index("template <typename T>\n__global__ void reparameterize_forward")
print(cuda[start:cuda.index("}\n", start) + 2])

# %% [markdown]
# ## Precision: why GPUs train in float32 but checks use float64
#
# The same weights and the same $\epsilon$, in float32 and in float64: the losses agree to float32's
# round-off, about 1e-7 relative, far too coarse for finite differences (lesson 0) but plenty for
# training. On a GPU, the CPU and GPU losses in float64 agree to float64's round-off.

# %%
x = (rng.random((100, 784)) < 0.3).astype(np.float64)
eps = rng.standard_normal((100, 20))
loss = {}
for dtype in ("float32", "float64"):
    model = VAE(784, 20, hidden_dims=(200,), likelihood="bernoulli", dtype=dtype, seed=run.seed)
    loss[dtype] = model.loss(x.astype(dtype), eps=eps.astype(dtype))
run.check("loss in float32 vs float64, same weights", loss["float32"], loss["float64"], tol=1e-5)
if gpu:
    model = VAE(784, 20, hidden_dims=(200,), likelihood="bernoulli", dtype="float64", device="gpu",
                seed=run.seed)
    loss_gpu = model.loss(backend.to_device(x, "gpu"), eps=backend.to_device(eps, "gpu"))
    run.check("loss on the GPU vs the CPU, float64, same weights", loss_gpu, loss["float64"], tol=1e-10)

# %% [markdown]
# ## Timing a training step
#
# One step is `loss_and_grads` on a minibatch and an Adam update, the inner loop of lesson 7, for
# the paper's MNIST shape (784 pixels, 20 latent dimensions) and growing hidden widths. GPU work
# is asynchronous, so the clock stops only after the device has finished.

# %%
def step_time(width, batch, device, steps):
    """Seconds per training step (median of ``steps`` after two warm-up steps)."""
    model = VAE(784, 20, hidden_dims=(width,), likelihood="bernoulli", device=device, seed=run.seed)
    optimizer = Adam(model.named_parameters(), lr=1e-3)
    xb = backend.to_device((rng.random((batch, 784)) < 0.3).astype(np.float32), device)
    sync = backend.cupy.cuda.Device().synchronize if device == "gpu" else (lambda: None)
    times = []
    for i in range(steps + 2):
        sync()
        start = time.perf_counter()
        model.loss_and_grads(xb)
        optimizer.step()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


widths = run.pick(fast=[100, 200, 400], full=[100, 200, 400, 800, 1600])
batches = run.pick(fast=[32, 128, 512], full=[32, 64, 128, 256, 512, 1024])
steps = run.pick(fast=5, full=30)
settings = [("cpu", None)] + ([("gpu", True), ("gpu", False)] if gpu else [])
label = {("cpu", None): "CPU (NumPy)", ("gpu", True): "GPU, kernels", ("gpu", False): "GPU, plain CuPy"}
by_width, by_batch = {}, {}
for device, use in settings:
    with kernels.use_kernels(bool(use)):
        by_width[device, use] = [step_time(w, 128, device, steps) for w in widths]
        by_batch[device, use] = [step_time(400, b, device, steps) for b in batches]
    print(f"  {label[device, use]:<16} ms per step, batch 128, widths {widths}: "
          + ", ".join(f"{1e3 * t:.2f}" for t in by_width[device, use]))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
for (device, use), color in zip(settings, ["C0", "C3", "C1"]):
    axes[0].plot(widths, 1e3 * np.array(by_width[device, use]), "o-", color=color, label=label[device, use])
    axes[1].plot(batches, 1e6 * np.array(by_batch[device, use]) / np.array(batches), "o-", color=color,
                 label=label[device, use])
axes[0].set(xscale="log", yscale="log", xlabel="hidden width", ylabel="ms per training step",
            title="(a) one step, minibatch of 128")
axes[1].set(xscale="log", yscale="log", xlabel="minibatch size", ylabel="microseconds per image",
            title="(b) cost per image, hidden width 400")
for ax, ticks in zip(axes, [widths, batches]):
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    # labels at 1, 2, 5 x 10^k, or finer steps when the times span less than a decade
    low, high = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if high / low > 10 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, title=None if gpu else "no GPU on this machine", title_fontsize=8)
fig.tight_layout()
run.save(fig, "timing")

# %% [markdown]
# ## What to remember
#
# * One code path: arrays decide where the work happens; move data with `to_device`.
# * On a GPU small steps are dominated by launch overhead, which the fused kernels cut; large
#   matrix products are where the GPU pulls ahead of the CPU.
# * Train in float32, check gradients in float64.
#
# ## Exercises
#
# Start a workbook once with `scratchvae exercises start my-workbook` and grade an exercise with
# `scratchvae exercises check my-workbook NAME` (lesson 7 says more). Worked answers:
# `lessons/answers/10_gpu.md`; try first.
#
# 1. **Code, on the GPU if you have one.** Take your `bernoulli_log_likelihood_grad` from lesson 7's
#    exercise (workbook `07_vae.py`; check it first with
#    `scratchvae exercises check my-workbook bernoulli_log_likelihood_grad`). Write it the library's
#    way, with `xp = get_array_module(x, logits)` and only `xp` functions (or the library's
#    `sigmoid`), so that it says where it computes: wherever its arguments live. With CuPy and a
#    GPU, call it on CuPy float64 arrays of shape (1000, 784) and compare with the library's function
#    (which runs the fused kernel there) to a relative error of 1e-12; time both. Without a GPU, the
#    grader's NumPy check is the whole exercise. Question: which `np.` calls would still have worked
#    on CuPy arrays, and which would not?
# 2. **Question: float32 and finite differences.** The losses above agree in float32 and float64 to
#    about 1e-7 relative. Why does that make a central-difference gradient check in float32 useless
#    with $\delta = 10^{-5}$, even for a correct gradient? Estimate the error of one numerical derivative
#    of this loss (about 556 nats) in float32, and say what a larger $\delta$ would trade.
# 3. **Question: launches.** How many GPU kernels does one call of `reparameterize` launch in plain
#    CuPy (`kernels.use_kernels(False)`), and how many with the fused kernel? Why does that matter
#    for the small widths in the timing figure and not for the large ones?
