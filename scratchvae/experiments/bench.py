"""``scratchvae bench``: how fast scratchvae trains, beside PyTorch doing the same work.

The work is the paper's MNIST model: a 784-400-20 VAE with ReLU hidden layers and a
Bernoulli decoder on grey pixel values, trained with Adam (lr 1e-3) in float32 on the
9000 / 1000 split of the MNIST test file (or the standard split when the training files
are present). Each contender trains its own copy of the same initial weights on the
same minibatches, and their epochs are interleaved so that a busy machine slows all of
them alike:

    scratchvae    train_step (VAE.loss_and_grads + Adam.step), on NumPy: the library's default
    sv overlapped the same step with the decoder's weight gradients and update on a second
                  thread during the encoder's backward (training/overlap.py, off by default in
                  training): a copy of its own, timed beside the plain step where a core is
                  idle (``--overlap``), so that a quiet run shows whether it pays
    torch         the same model in PyTorch, default Adam        (if PyTorch is installed)
    torch fused   the same, Adam(fused=True)                     (if PyTorch is installed)
    GEMM floor    only the epoch's matrix products, with NumPy's BLAS at the same shapes

An epoch is ``N // batch_size`` full minibatches of a fresh permutation. The report
gives, for each contender, the median epoch time and the spread (min-max) of the
epochs, the ratios of the medians, and each model's held-out negative ELBO after 3
epochs: the models do the same work only if these agree (within about 2 nats),
otherwise the comparison is void. ``--frey`` adds the paper's Frey Face workload
(560-200-20 tanh, Gaussian decoder, Adagrad, batch 100) beside the same model in
PyTorch, per step, at each number of threads; ``--memory`` the resident memory of a
20-epoch run (peak, and growth across epochs); ``--scale`` how epoch time grows with
the hidden width and the batch size, against the GEMM floor at each point.

A benchmark that cannot flatter: the report names the CPU, NumPy's BLAS library and the
kernel it chose for this CPU (threadpoolctl), and the load average before and after. It
also counts the CPU time that other processes used during each comparison, and marks
the comparison NOISY when that, or the load before it, exceeds 0.3 per core: two-thread
BLAS waits for its second thread, so other work on the second core slows scratchvae and
PyTorch unequally. Where the environment sets ``OPENBLAS_CORETYPE`` (which forces
OpenBLAS's kernel), the command measures again in a process without it and prints both;
the headline is the run as the environment sets it. (Tests and CI never change it.)

Why an epoch can cost more than ``steps x`` the median step that ``profile_step.py``
reports: the epoch is the *sum* of its steps, and on a busy machine a few steps whose
two-thread matrix products wait for a preempted BLAS thread take many times the median.
The report gives the share of the epoch spent in its slowest tenth of steps.

Threads: every comparison runs at each of ``--threads`` (default 1 and 2), NumPy's BLAS
limited through threadpoolctl and PyTorch through ``torch.set_num_threads``. The first is
the headline: one thread, the library's rule (README, "Threads"), against PyTorch held to
one thread as well; two threads stand beside it.

PyTorch is an optional peer, never a dependency: without it the benchmark compares
scratchvae with the GEMM floor only, and says so.
"""
import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..data.datasets import load_dataset
from ..distributions import LOG_2PI
from ..data.download import MissingDataError
from ..optim import Adagrad, Adam
from ..training.overlap import make_overlap, why_off
from ..training.step import train_step
from ..vae import VAE

BATCH_SIZES = (128, 32, 512)
WIDTHS = (200, 400, 800, 1600)
SCALE_BATCHES = (32, 64, 128, 256, 512, 1024)
ELBO_EPOCHS = 3          # held-out -ELBO compared after this many epochs
ELBO_TOLERANCE = 2.0     # nats: beyond this the two models did not do the same work
SHARED_DATA = Path("..") / "shared" / "data"   # an optional local copy beside the project
CONTENDERS = ("scratchvae", "scratchvae_overlap", "torch", "torch_fused", "gemm_floor")
LABELS = {"scratchvae": "scratchvae", "scratchvae_overlap": "sv overlapped", "torch": "torch",
          "torch_fused": "torch fused", "gemm_floor": "GEMM floor"}
# (batch size, what, numerator, denominator, at most)
THREADS = (1, 2)         # the first is the headline: the library's rule
# (batch size, threads, what, numerator, denominator, at most)
GOALS = ((128, 1, "scratchvae / torch fused", "scratchvae", "torch_fused", 0.9),
         (128, 2, "scratchvae / torch fused", "scratchvae", "torch_fused", 1.0),
         (32, 1, "scratchvae / torch fused", "scratchvae", "torch_fused", 0.9),
         (32, 2, "scratchvae / torch fused", "scratchvae", "torch_fused", 0.9),
         (128, 1, "scratchvae / GEMM floor", "scratchvae", "gemm_floor", 1.6))
FREY_GOAL = 0.7          # the Frey step at one thread, scratchvae / torch, at most
QUIET_LOAD = 0.3         # per core: above it, other work ran beside the benchmark
FREY_UNIT_EPOCHS = 10    # Frey's 1500 images make 15 steps: time 10 epochs as one unit
FREY_AGREE_STEPS = 5     # Frey: contenders judged to do the same work after this many steps ...
FREY_AGREE_TOLERANCE = 1.0    # ... when their held-out -ELBO agrees within this (nats; see agreement)


# ---------------------------------------------------------------------------------------
# Setup: data, threads, PyTorch
# ---------------------------------------------------------------------------------------
def load_images(dataset, data_dir):
    """``(train, test, split)``: float32 grey images in [0, 1] (no binarization).

    Without ``data_dir``, files already in the default folder come first, then a local
    copy in ../shared/data, then a download into the default folder."""
    try:
        data = load_dataset(dataset, data_dir=data_dir, download=False)
    except MissingDataError:
        if data_dir is None and (SHARED_DATA / dataset).is_dir():
            data = load_dataset(dataset, data_dir=SHARED_DATA, download=False)
        else:
            data = load_dataset(dataset, data_dir=data_dir)
    return data.train, data.test, data.split


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


def blas_threads():
    """What NumPy's BLAS libraries report: ``[{'library': ..., 'threads': ...}]``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"library": i.get("internal_api"), "version": i.get("version"),
             "threads": i.get("num_threads")} for i in threadpool_info() if i.get("user_api") == "blas"]


def import_torch(wanted=True):
    """``(torch, None)``, or ``(None, why not)``: PyTorch is optional."""
    if not wanted:
        return None, "--no-torch was given"
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed (pip install torch)"
    return torch, None


# ---------------------------------------------------------------------------------------
# The machine: what it is, and whether anything else ran while we measured
# ---------------------------------------------------------------------------------------
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


def spread(values):
    """``{'median', 'min', 'max'}`` of a list of timings."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# ---------------------------------------------------------------------------------------
# The contenders: each trains (or multiplies) through one epoch of the same minibatches
# ---------------------------------------------------------------------------------------
def make_model(x_dim, hidden, z_dim, seed):
    return VAE(x_dim, z_dim, (hidden,), likelihood="bernoulli", activation="relu", seed=seed)


def linear_layers(model):
    """The Linear layers of a VAE in forward order, encoder first."""
    return [layer for net in (model.encoder, model.decoder.net) for layer in net.layers if layer.params]


def torch_copy(torch, model, activation):
    """The encoder and decoder MLPs of a scratchvae VAE as two ``torch.nn.Sequential``, with
    copies of its weights and ``activation`` (a ``torch.nn`` class) between the layers."""
    layers = linear_layers(model)
    linears = [torch.nn.Linear(layer.in_dim, layer.out_dim) for layer in layers]
    with torch.no_grad():
        for lin, layer in zip(linears, layers):  # torch keeps W as (out, in): x W^T + b
            lin.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.params["b"].copy()))

    def mlp(lins):
        mods = []
        for i, lin in enumerate(lins):
            mods += [lin] + ([activation()] if i < len(lins) - 1 else [])
        return torch.nn.Sequential(*mods)

    n_enc = len(model.hidden_dims) + 1
    return mlp(linears[:n_enc]), mlp(linears[n_enc:])


class ScratchRun:
    """scratchvae on NumPy: what a training loop does each step, the plain step or (``overlap``
    'on', or 'auto' where a core is idle, decided when the run is built, under the threads it
    runs at) the overlapped one: ``name`` says which ran, ``overlap_state`` why."""

    def __init__(self, model, lr, optimizer=None, overlap="off"):
        self.model = model
        self.optimizer = Adam(model.named_parameters(), lr=lr) if optimizer is None else optimizer
        self.overlap = make_overlap(model, self.optimizer, overlap)
        self.name = "scratchvae_overlap" if self.overlap else "scratchvae"
        self.overlap_state = "on" if self.overlap else (
            "off" if overlap == "off" else f"off ({why_off(model, self.optimizer)})")
        self.step_times = []   # every step's seconds: their median times the steps is what
                               # profile_step.py predicts; the epoch's time is their sum

    def epoch(self, x, order, batch_size):
        clock = time.perf_counter
        for start in range(0, len(order) - batch_size + 1, batch_size):
            began = clock()
            xb = x[order[start:start + batch_size]]
            if self.overlap is not None:
                self.overlap.step(xb)
            else:
                train_step(self.model, self.optimizer, xb)
            self.step_times.append(clock() - began)

    def heldout_nelbo(self, x, eps):
        return -float(self.model.elbo(x, eps=eps).elbo.mean())


class TorchRun:
    """The same model in PyTorch, starting from a copy of the scratchvae weights.

    ``loss = -1/B sum_b [sum_d (x_d l_d - softplus(l_d)) - KL_b]``, the Bernoulli term
    through ``binary_cross_entropy_with_logits``, the KL in closed form, autograd for the
    gradients."""

    def __init__(self, torch, model, lr, fused):
        self.torch = torch
        self.name = "torch_fused" if fused else "torch"
        self.z_dim = model.z_dim
        self.encoder, self.decoder = torch_copy(torch, model, torch.nn.ReLU)
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=lr, fused=fused)

    def elbo(self, x, eps):
        F = self.torch.nn.functional
        h = self.encoder(x)
        mu, logvar = h[:, : self.z_dim], h[:, self.z_dim:]
        z = mu + self.torch.exp(0.5 * logvar) * eps
        logits = self.decoder(z)
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return rec - kl

    def epoch(self, x, order, batch_size):
        torch = self.torch
        x, order = torch.from_numpy(x), torch.from_numpy(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            xb = x[order[start:start + batch_size]]
            loss = -self.elbo(xb, self.noise(batch_size)).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss.item()  # the training loop reads the loss each step, as scratchvae's does

    def noise(self, batch_size):
        """eps for one step, from PyTorch's generator."""
        return self.torch.randn(batch_size, self.z_dim)

    def heldout_nelbo(self, x, eps):
        with self.torch.inference_mode():
            return -float(self.elbo(self.torch.from_numpy(x), self.torch.from_numpy(eps)).mean())


class TorchFreyRun(TorchRun):
    """The paper's Frey Face model in PyTorch, from a copy of the scratchvae weights: tanh
    hidden layers, a Gaussian decoder ``[a, logvar_x] = net(z)``, ``mu_x = sigmoid(a)``,
    Adagrad with the weight prior as its weight decay (the gradient of lambda/2 ||theta||^2,
    which scratchvae's VAE adds in its backward). Its eps come from a NumPy generator seeded
    like the scratchvae model's, so both draw the very same noise and follow the same
    trajectory up to rounding: their held-out bounds must then agree closely."""

    def __init__(self, torch, model, lr):
        self.torch = torch
        self.name = "torch"
        self.rng = np.random.default_rng(model.seed)
        self.z_dim, self.x_dim = model.z_dim, model.x_dim
        self.encoder, self.decoder = torch_copy(torch, model, torch.nn.Tanh)
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adagrad(params, lr=lr, eps=1e-8, weight_decay=model.weight_decay)

    def elbo(self, x, eps):
        torch = self.torch
        h = self.encoder(x)
        mu, logvar = h[:, : self.z_dim], h[:, self.z_dim:]
        z = mu + torch.exp(0.5 * logvar) * eps
        out = self.decoder(z)
        mu_x, logvar_x = torch.sigmoid(out[:, : self.x_dim]), out[:, self.x_dim:]
        rec = -0.5 * (LOG_2PI + logvar_x + (x - mu_x) ** 2 * torch.exp(-logvar_x)).sum(dim=1)
        kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return rec - kl

    def noise(self, batch_size):
        """eps for one step, from the NumPy generator seeded like the scratchvae model's."""
        return self.torch.from_numpy(self.rng.standard_normal((batch_size, self.z_dim), dtype=np.float32))


class Repeated:
    """Runs ``run.epoch`` ``times`` times as one timed unit (Frey's epochs are 15 steps)."""

    def __init__(self, run, times):
        self.run, self.times, self.name = run, times, run.name

    def epoch(self, x, order, batch_size):
        for _ in range(self.times):
            self.run.epoch(x, order, batch_size)

    def heldout_nelbo(self, x, eps):
        return self.run.heldout_nelbo(x, eps)


class GemmFloor:
    """Only the matrix products of an epoch, at the model's shapes, with NumPy's BLAS.

    Per step and Linear layer (row convention, y = x W + b): the forward ``x W``, the
    weight gradient ``x^T dy`` and, except for the first layer, whose input is the data,
    the input gradient ``dy W^T``. Outputs are preallocated, so only the products count."""
    name = "gemm_floor"

    def __init__(self, model, batch_size, seed=0):
        rng = np.random.default_rng(seed)
        self.products = []
        for i, layer in enumerate(linear_layers(model)):
            n_in, n_out = layer.in_dim, layer.out_dim
            x = rng.standard_normal((batch_size, n_in), dtype=np.float32)
            W = rng.standard_normal((n_in, n_out), dtype=np.float32)
            dy = rng.standard_normal((batch_size, n_out), dtype=np.float32)
            self.products.append((x, W, np.empty((batch_size, n_out), np.float32)))
            self.products.append((x.T, dy, np.empty((n_in, n_out), np.float32)))
            if i > 0:
                self.products.append((dy, W.T, np.empty((batch_size, n_in), np.float32)))

    def epoch(self, x, order, batch_size):
        for _ in range(len(order) // batch_size):
            for a, b, out in self.products:
                np.matmul(a, b, out=out)



def time_epoch(run, x, order, batch_size):
    gc.collect()
    start = time.perf_counter()
    run.epoch(x, order, batch_size)
    return time.perf_counter() - start


def epoch_order(n, seed, epoch):
    """The minibatch order of one epoch, shared by every contender."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# ---------------------------------------------------------------------------------------
# One comparison at one batch size
# ---------------------------------------------------------------------------------------
def compare(train, test, batch_size, hidden, z_dim, lr, repeats, seed, torch, log=print,
            contenders=CONTENDERS, load_before=None, overlap="auto"):
    """Interleaved epochs of every contender; returns times, medians, ratios, held-out -ELBO.
    The overlapped step (``overlap``: as in :class:`ScratchRun`) trains a copy of its own."""
    model = make_model(train.shape[1], hidden, z_dim, seed)
    runs = []
    overlap_state = "not timed"
    for name in contenders:  # the torch copies start from the untrained scratchvae weights
        if name == "scratchvae":
            runs.append(ScratchRun(model, lr))
        elif name == "scratchvae_overlap":
            run = ScratchRun(make_model(train.shape[1], hidden, z_dim, seed), lr, overlap=overlap)
            overlap_state = run.overlap_state
            if run.overlap is not None:
                runs.append(run)
        elif name == "gemm_floor":
            runs.append(GemmFloor(model, batch_size, seed))
        elif torch is not None:
            runs.append(TorchRun(torch, model, lr, fused=name == "torch_fused"))
    eps = np.random.default_rng([seed, 1]).standard_normal((test.shape[0], z_dim), dtype=np.float32)
    quiet = Quietness(load_before)
    times = {run.name: [] for run in runs}
    nelbo = {}
    elbo_epoch = min(ELBO_EPOCHS, repeats)
    for epoch in range(repeats):
        order = epoch_order(train.shape[0], seed, epoch)
        for run in runs:
            times[run.name].append(time_epoch(run, train, order, batch_size))
            if epoch + 1 == elbo_epoch and not isinstance(run, GemmFloor):
                nelbo[run.name] = run.heldout_nelbo(test, eps)
        log(f"  batch {batch_size:4d} epoch {epoch + 1}/{repeats}: " + "  ".join(
            f"{LABELS[k]} {v[-1]:.3f} s" for k, v in times.items()))
    median = {k: statistics.median(v) for k, v in times.items()}
    ratios = {f"{a}/{b}": median[a] / median[b] for a in median for b in median
              if b != a and (a, b) != ("scratchvae", "scratchvae_overlap")
              and a in ("scratchvae", "scratchvae_overlap")}
    nelbo_spread = max(nelbo.values()) - min(nelbo.values()) if len(nelbo) > 1 else 0.0
    steps = train.shape[0] // batch_size
    out = {"batch_size": batch_size, "steps_per_epoch": steps,
           "epochs": repeats, "times_s": times, "median_s": median, "ratios": ratios,
           "spread_s": {k: spread(v) for k, v in times.items()},
           "heldout_nelbo": nelbo, "heldout_after_epochs": elbo_epoch,
           "nelbo_spread": nelbo_spread, "valid": nelbo_spread <= ELBO_TOLERANCE,
           "quiet": quiet.result()}
    scratch = next((run for run in runs if run.name == "scratchvae"), None)
    if "scratchvae_overlap" in contenders:
        out["overlap"] = overlap_state
    if scratch is not None and scratch.step_times:   # an epoch is the sum of its steps, not
        step = scratch.step_times                     # steps x the median step
        out["scratchvae_steps"] = {"median_step_s": statistics.median(step),
                                   "mean_step_s": statistics.fmean(step),
                                   "median_step_x_steps_s": statistics.median(step) * steps,
                                   "slowest_tenth_share": _slowest_share(step, 0.1)}
    return out


def _slowest_share(values, fraction):
    """The share of the total time spent in the slowest ``fraction`` of the values."""
    ordered = sorted(values, reverse=True)
    return sum(ordered[:max(1, int(len(ordered) * fraction))]) / sum(ordered)


def compare_frey(train, test, threads, repeats, torch, seed=0, hidden=200, z_dim=20,
                 lr=0.02, batch_size=100, unit_epochs=FREY_UNIT_EPOCHS, log=print, load_before=None,
                 overlap="auto"):
    """The paper's Frey Face workload (560-200-20 tanh, Gaussian decoder, Adagrad, weight
    prior 1/N, batch 100, paper init) in scratchvae and in PyTorch, interleaved, at each
    number of threads. Returns per-step medians and spreads, ratios and held-out -ELBO."""
    out = {"model": f"{train.shape[1]}-{hidden}-{z_dim} tanh Gaussian VAE, Adagrad lr {lr:g}, "
                    f"weight prior 1/N, batch {batch_size}", "threads": {}}
    steps = (train.shape[0] // batch_size) * unit_epochs

    def contenders():
        model = VAE(train.shape[1], z_dim, (hidden,), likelihood="gaussian", activation="tanh",
                    init="paper", weight_decay=1.0 / train.shape[0], seed=seed)
        runs = [ScratchRun(model, lr, Adagrad(model.named_parameters(), lr=lr))]
        if overlap != "off":   # the overlapped step on a copy of its own, where it runs
            twin = VAE(train.shape[1], z_dim, (hidden,), likelihood="gaussian", activation="tanh",
                       init="paper", weight_decay=1.0 / train.shape[0], seed=seed)
            run = ScratchRun(twin, lr, Adagrad(twin.named_parameters(), lr=lr), overlap=overlap)
            state.append(run.overlap_state)
            if run.overlap is not None:
                runs.append(run)
        if torch is not None:
            runs.append(TorchFreyRun(torch, model, lr))
        return runs

    for n in threads:
        state = []              # the overlapped step's: on, or why it is off
        with limit_threads(n, torch):
            eps = np.random.default_rng([seed, 1]).standard_normal((test.shape[0], z_dim),
                                                                   dtype=np.float32)
            agree = agreement(contenders(), train, test, eps, batch_size, seed)
            fresh = contenders()
            runs = [Repeated(run, unit_epochs) for run in fresh]
            quiet = Quietness(load_before)
            per_step = {run.name: [] for run in runs}
            nelbo = {}
            for unit in range(repeats):
                order = epoch_order(train.shape[0], seed, unit)
                for run in runs:
                    per_step[run.name].append(time_epoch(run, train, order, batch_size) / steps)
                    if unit + 1 == min(3, repeats):
                        nelbo[run.name] = run.heldout_nelbo(test, eps)
            log(f"  Frey, {n} thread{'s' * (n > 1)}: " + "  ".join(
                f"{k} {1e3 * statistics.median(v):.3f} ms/step" for k, v in per_step.items()))
        median = {k: statistics.median(v) for k, v in per_step.items()}
        agree_spread = max(agree.values()) - min(agree.values())
        out["threads"][str(n)] = {
            "steps_per_unit": steps, "units": repeats, "step_s": per_step, "median_step_s": median,
            "spread_step_s": {k: spread(v) for k, v in per_step.items()},
            "ratios": {f"{a}/{b}": median[a] / median[b] for a in ("scratchvae", "scratchvae_overlap")
                       for b in ("torch", "scratchvae") if a != b and a in median and b in median},
            # after hundreds of steps the bounds differ by rounding chaos (information only) ...
            "heldout_nelbo": nelbo, "nelbo_spread": max(nelbo.values()) - min(nelbo.values()),
            # ... so whether the contenders do the same work is judged before it grows
            "agree_steps": FREY_AGREE_STEPS, "agree_nelbo": agree, "agree_spread": agree_spread,
            "valid": agree_spread <= FREY_AGREE_TOLERANCE, "quiet": quiet.result(),
            "overlap": state[-1] if state else "off"}
    return out


def agreement(runs, train, test, eps, batch_size, seed, steps=FREY_AGREE_STEPS):
    """The held-out -ELBO of each of ``runs`` (fresh copies of one model) after ``steps`` steps
    on the same minibatches with the same noise.

    On Frey Face the contenders cannot be compared after the timed units: from the same
    start, float32 rounding in another order (another BLAS thread count, another library)
    changes the first gradients by a few 1e-7 of their size, and Adagrad's first step,
    lr g / (|g| + eps), turns that into a step of +-lr for the gradients near zero. The runs
    part from there, chaotically (measured on the paper's model, scratchvae against PyTorch
    from the same weights, batches and noise: 3e-5 nats apart after 1 step, 0.03 after 5,
    0.4 after 10, 0.8 after 20; scratchvae at 1 and 2 BLAS threads: 0.3 after 20 steps,
    34 after 100, 2 to 27 nats at 500 to 2000, as far apart as runs with other seeds).
    After 5 steps a real difference is thousands of times larger than rounding: PyTorch with
    a learning rate 1 % higher is 90 nats away, 10 % higher 197, without the weight prior
    182 (the tolerance, 1 nat, sits between)."""
    n = train.shape[0]
    order = np.concatenate([epoch_order(n, seed, e) for e in range(-(-steps * batch_size // n))])
    order = order[: steps * batch_size]
    for run in runs:
        run.epoch(train, order, batch_size)
    return {run.name: run.heldout_nelbo(test, eps) for run in runs}


def check_goals(results, frey=None):
    """Each goal of :data:`GOALS` and the Frey goal: its value, and whether it is met (None
    where its comparison was not run). ``results``: ``{threads: {batch size: comparison}}``."""
    goals = []
    for batch_size, threads, what, a, b, limit in GOALS:
        r = results.get(str(threads), {}).get(str(batch_size))
        value = r["median_s"][a] / r["median_s"][b] if r and b in r["median_s"] else None
        goals.append({"where": f"batch {batch_size}, {threads} thread{'s' * (threads > 1)}",
                      "what": what, "at_most": limit, "value": value,
                      "met": None if value is None else bool(value <= limit and r["valid"]),
                      "noisy": bool(r and r["quiet"]["noisy"])})
    one = (frey or {}).get("threads", {}).get("1")
    value = one["ratios"].get("scratchvae/torch") if one else None
    goals.append({"where": "Frey Face, 1 thread", "what": "scratchvae / torch per step",
                  "at_most": FREY_GOAL, "value": value,
                  "met": None if value is None else bool(value <= FREY_GOAL and one["valid"]),
                  "noisy": bool(one and one["quiet"]["noisy"])})
    return goals


# ---------------------------------------------------------------------------------------
# Memory: a separate process trains for 20 epochs and reports its resident memory
# ---------------------------------------------------------------------------------------
def rss_bytes():
    """Resident memory of this process now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return peak_rss_bytes()


def peak_rss_bytes():
    """Peak resident memory of this process: VmHWM on Linux (getrusage's ru_maxrss would
    include the parent's memory at the fork that started this process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def memory_child(args):
    """Runs in the child process: train, measure, print one JSON line."""
    import tracemalloc

    train, _, _ = load_images(args.dataset, args.data_dir)
    with limit_threads(args.thread_counts[0]):
        run = ScratchRun(make_model(train.shape[1], args.hidden, args.z_dim, args.seed), args.lr)
        batch_size = args.batch_sizes[0]
        after_setup = rss_bytes()
        rss = []
        for epoch in range(args.memory_epochs):
            run.epoch(train, epoch_order(train.shape[0], args.seed, epoch), batch_size)
            rss.append(rss_bytes())
        # What one step and one Adam update allocate, as NumPy reports it to tracemalloc.
        x = train[:batch_size]
        tracemalloc.start()
        run.model.loss_and_grads(x)
        step_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run.optimizer.step()
        adam_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    n_params = sum(p.size for p in run.model.parameters().values())
    print(json.dumps({"batch_size": batch_size, "epochs": args.memory_epochs,
                      "rss_after_setup": after_setup, "rss_per_epoch": rss,
                      "peak_rss": peak_rss_bytes(), "parameters": int(n_params),
                      "step_peak_traced": step_peak, "adam_step_traced": adam_peak}))
    return 0


def measure_memory(args, log=print):
    """Start the memory child (a fresh process: PyTorch must not share its memory)."""
    argv = [sys.executable, "-m", "scratchvae.experiments.bench", "--memory-child",
            "--dataset", args.dataset, "--hidden", str(args.hidden), "--z-dim", str(args.z_dim),
            "--batch-sizes", str(args.batch_sizes[0]), "--threads", str(args.thread_counts[0]),
            "--memory-epochs", str(args.memory_epochs), "--seed", str(args.seed)]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent.parent)   # the folder holding scratchvae/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log(f"  memory: training {args.memory_epochs} epochs in a separate process")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory run failed:\n{done.stderr.strip()}")
    m = json.loads(done.stdout.strip().splitlines()[-1])
    rss = m["rss_per_epoch"]
    m["growth_after_first_epoch"] = rss[-1] - rss[0]
    return m


# ---------------------------------------------------------------------------------------
# Scale: epoch time against the GEMM floor as the width and the batch size grow
# ---------------------------------------------------------------------------------------
def measure_scale(train, test, args, torch, log=print):
    contenders = ("scratchvae", "torch_fused", "gemm_floor")
    points = [(w, 128) for w in WIDTHS] + [(400, b) for b in SCALE_BATCHES if b != 128]
    rows = []
    for hidden, batch_size in points:
        r = compare(train, test, batch_size, hidden, args.z_dim, args.lr, args.scale_repeats,
                    args.seed, torch, log=lambda *_: None, contenders=contenders, overlap=args.overlap)
        row = {"hidden": hidden, "batch_size": batch_size, "median_s": r["median_s"],
               "ratios": r["ratios"]}
        rows.append(row)
        log(f"  scale: hidden {hidden:4d} batch {batch_size:4d}: " + "  ".join(
            f"{LABELS[k]} {v:.3f} s" for k, v in r["median_s"].items()))
    return rows


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def _s(value):
    return "-" if value is None else f"{value:.3f}"


def _x(value):
    return "-" if value is None else f"{value:.2f}x"


def _spread(sp):
    """``median (min-max)`` of one contender, in the table's unit."""
    return "-" if sp is None else f"{sp['median']:.3f} ({sp['min']:.3f}-{sp['max']:.3f})"


def _quiet(q):
    others = "-" if q["others_cores"] is None else f"{q['others_cores']:.2f}"
    return (f"load {q['load_before'][0]:.2f} -> {q['load_after'][0]:.2f}, others used {others} "
            f"cores" + ("  NOISY: other work ran" if q["noisy"] else ""))


def format_table(report):
    cfg, mach = report["config"], report["machine"]
    blas = mach["blas"]
    threads = cfg["threads"]
    lines = [f"scratchvae bench: {cfg['model']}, Adam lr {cfg['lr']:g}, float32, {cfg['data']}; "
             f"median (min-max) of {cfg['repeats']} interleaved epochs; threads "
             + ", ".join(map(str, threads)) + f" (the headline: {threads[0]}"
             + (", the library's rule" if threads[0] == 1 else "") + ")",
             f"CPU: {mach['cpu']} ({mach['cpus']} CPUs); BLAS: {blas.get('library')} "
             f"{blas.get('version') or ''}, kernel {blas.get('kernel')}"
             + (f", OPENBLAS_CORETYPE={blas['openblas_coretype']}" if blas.get("openblas_coretype")
                else "") + f"; NumPy {mach['numpy']}; PyTorch {report['torch']['version'] or '-'}",
             f"load average {mach['load_before'][0]:.2f} before, {mach['load_after'][0]:.2f} after"
             + ("; the machine was NOT quiet (load above "
                f"{QUIET_LOAD} per core, or other processes used the CPUs): treat the ratios as noisy"
                if report.get("noisy") else "; quiet")]
    if report["torch"]["version"] is None:
        lines.append(f"PyTorch: not compared ({report['torch']['why_not']}); "
                     "scratchvae against the GEMM floor only")
    head = (f"{'batch':>5} {'steps':>5} {'thr':>3} | {'scratchvae':>19} {'sv overlapped':>19} {'torch':>19} "
            f"{'torch fused':>19} {'GEMM floor':>19} | {'/torch':>6} {'/fused':>6} {'/GEMM':>6} {'ovl/sv':>6}")
    lines += [head, "-" * len(head)]
    comparisons = [r for batch_size in cfg["batch_sizes"] for n in threads
                   for r in [report["comparisons"].get(str(n), {}).get(str(batch_size))] if r]
    for r in comparisons:
        sp, q = r["spread_s"], r["ratios"]
        lines.append(f"{r['batch_size']:>5} {r['steps_per_epoch']:>5} {r['threads']:>3} | "
                     + " ".join(f"{_spread(sp.get(k)):>19}" for k in CONTENDERS) + " | "
                     f"{_x(q.get('scratchvae/torch')):>6} {_x(q.get('scratchvae/torch_fused')):>6} "
                     f"{_x(q.get('scratchvae/gemm_floor')):>6} {_x(q.get('scratchvae_overlap/scratchvae')):>6}")
    lines.append("(seconds per epoch; thr: BLAS and PyTorch threads; /torch, /fused, /GEMM: "
                 "scratchvae's median over theirs; ovl/sv: the overlapped step's over the plain one's)")
    for r in comparisons:
        e = r["heldout_nelbo"]
        nelbo = ", ".join(f"{e[k]:.2f}" if k in e else "-"
                          for k in ("scratchvae", "scratchvae_overlap", "torch", "torch_fused"))
        verdict = "" if len(e) < 2 else ("ok" if r["valid"] else
                                          f"VOID: differ by {r['nelbo_spread']:.1f} nats")
        steps = r.get("scratchvae_steps")
        tail = ("" if not steps else f"; scratchvae median step x steps {steps['median_step_x_steps_s']:.3f}"
                f" s, slowest tenth of steps {100 * steps['slowest_tenth_share']:.0f} % of the time")
        lines.append(f"batch {r['batch_size']}, {r['threads']} thread{'s' * (r['threads'] > 1)}: "
                     f"{_quiet(r['quiet'])}; overlap {r.get('overlap', '-')}; -ELBO after "
                     f"{r['heldout_after_epochs']} epochs (sv, overlapped, torch, fused) {nelbo} {verdict}{tail}")
    frey = report.get("frey")
    if frey:
        lines.append(f"Frey Face ({frey['model']}), milliseconds per step, median (min-max) of "
                     f"{cfg['frey_repeats']} interleaved units of {FREY_UNIT_EPOCHS} epochs:")
        for n, r in frey["threads"].items():
            sp = {k: {s: 1e3 * v for s, v in d.items()} for k, d in r["spread_step_s"].items()}
            e = r["heldout_nelbo"]
            lines.append(f"  {n} thread{'s' * (n != '1')}: scratchvae {_spread(sp['scratchvae'])}  "
                         f"overlapped {_spread(sp.get('scratchvae_overlap'))}  "
                         f"torch {_spread(sp.get('torch'))}  "
                         f"/torch {_x(r['ratios'].get('scratchvae/torch'))}  "
                         f"ovl/sv {_x(r['ratios'].get('scratchvae_overlap/scratchvae'))} | "
                         f"-ELBO after {r['agree_steps']} steps "
                         f"{', '.join(f'{v:.2f}' for v in r['agree_nelbo'].values())} "
                         f"{'same work' if r['valid'] else 'VOID: not the same work'}; after 3 units "
                         f"{', '.join(f'{v:.1f}' for v in e.values())} (rounding chaos) | "
                         f"{_quiet(r['quiet'])}; overlap {r.get('overlap', '-')}")
    for g in report["goals"]:
        state = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        lines.append(f"goal at {g['where']}: {g['what']} <= {g['at_most']}: {_x(g['value'])} {state}"
                     + (" (noisy)" if g["noisy"] and g["met"] is not None else ""))
    mem = report.get("memory")
    if mem:
        mib = 2.0 ** 20
        lines.append(f"memory, {mem['epochs']} epochs at batch {mem['batch_size']}: peak RSS "
                     f"{mem['peak_rss'] / mib:.1f} MiB; RSS after epoch 1 "
                     f"{mem['rss_per_epoch'][0] / mib:.1f} MiB, after epoch {mem['epochs']} "
                     f"{mem['rss_per_epoch'][-1] / mib:.1f} MiB (growth "
                     f"{mem['growth_after_first_epoch'] / mib:+.2f} MiB); one step allocates at most "
                     f"{mem['step_peak_traced'] / mib:.2f} MiB at once, one Adam update "
                     f"{mem['adam_step_traced']} bytes ({mem['parameters']} parameters)")
    if report.get("scale"):
        lines.append(f"scale ({cfg['scale_repeats']} interleaved epochs each):")
        lines.append(f"{'hidden':>6} {'batch':>5} | {'scratchvae':>10} {'fused':>7} {'GEMM':>7} | "
                     f"{'/fused':>6} {'/GEMM':>6}")
        for row in report["scale"]:
            m, q = row["median_s"], row["ratios"]
            lines.append(f"{row['hidden']:>6} {row['batch_size']:>5} | {_s(m.get('scratchvae')):>10} "
                         f"{_s(m.get('torch_fused')):>7} {_s(m.get('gemm_floor')):>7} | "
                         f"{_x(q.get('scratchvae/torch_fused')):>6} {_x(q.get('scratchvae/gemm_floor')):>6}")
    other = report.get("coretype_unset")
    if other:
        lines.append("")
        lines.append(f"The table above is the headline: OPENBLAS_CORETYPE={blas['openblas_coretype']} "
                     "as this environment sets it. The same measurement with it unset (OpenBLAS "
                     "picks its kernel for this CPU):")
        lines.append(format_table(other))
    return "\n".join(lines)


def write_json(report, path):
    """Write to a temporary file beside ``path``, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


def machine_info():
    return {"cpu": cpu_model(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas_info()}


def rerun_without_coretype(args, log=print):
    """The same benchmark in a child process whose environment lacks OPENBLAS_CORETYPE
    (OpenBLAS reads it when it loads, so only a new process can measure without it).
    Only the benchmark command does this; tests and CI never change the variable."""
    import tempfile
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unset.json"
        argv = [sys.executable, "-m", "scratchvae.experiments.bench", *_argv_of(args),
                "--json", str(path), "--coretype-child"]
        log("  OPENBLAS_CORETYPE unset: the same measurement in a separate process")
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the run without OPENBLAS_CORETYPE failed:\n{done.stderr.strip()}")
        return json.loads(path.read_text())


def _argv_of(args):
    """The command line of ``args``, for a child process (memory and scale stay with the parent)."""
    argv = ["--dataset", args.dataset, "--batch-sizes", *map(str, args.batch_sizes),
            "--repeats", str(args.repeats), "--hidden", str(args.hidden), "--z-dim", str(args.z_dim),
            "--lr", str(args.lr), "--threads", *map(str, args.thread_counts), "--seed", str(args.seed),
            "--frey-repeats", str(args.frey_repeats), "--overlap", args.overlap]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    if args.no_torch:
        argv.append("--no-torch")
    if args.frey or args.all:
        argv.append("--frey")
    return argv


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(p):
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist",
                   help="mnist (default; 9000 / 1000 of the test file when the training files "
                   "are absent) or digits (embedded 8x8, for a quick run)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ (default: "
                   "$SCRATCHVAE_DATA_DIR or ./data, then ../shared/data if present)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=list(BATCH_SIZES),
                   metavar="B", help="batch sizes to compare (default: 128 32 512)")
    p.add_argument("--repeats", type=_positive_int, default=7,
                   help="interleaved epochs per contender (default: 7)")
    p.add_argument("--hidden", type=_positive_int, default=400, help="hidden width (default: 400)")
    p.add_argument("--z-dim", type=_positive_int, default=20, help="latent size (default: 20)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default: 1e-3)")
    p.add_argument("--threads", type=_positive_int, nargs="+", default=list(THREADS),
                   dest="thread_counts", metavar="N",
                   help="BLAS / PyTorch threads, each measured in turn; the first is the headline "
                   "(default: 1 2: the library's rule first)")
    p.add_argument("--overlap", choices=("auto", "on", "off"), default="auto",
                   help="time scratchvae's overlapped step (the decoder's weight gradients and "
                   "update on a second core during the encoder's backward; training/overlap.py) "
                   "beside the plain one, interleaved: auto where a core is idle, on at every "
                   "thread count, off never (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default: 0)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--memory", action="store_true",
                   help="also report the resident memory of a --memory-epochs run")
    p.add_argument("--memory-epochs", type=_positive_int, default=20, help="(default: 20)")
    p.add_argument("--scale", action="store_true",
                   help="also time hidden widths 200..1600 and batch sizes 32..1024 against the "
                   "GEMM floor")
    p.add_argument("--scale-repeats", type=_positive_int, default=3, help="(default: 3)")
    p.add_argument("--frey", action="store_true",
                   help="also time the paper's Frey Face workload (560-200-20 tanh, Gaussian "
                   "decoder, Adagrad, batch 100) against PyTorch, per step, at each --threads")
    p.add_argument("--frey-repeats", type=_positive_int, default=7, help="(default: 7)")
    p.add_argument("--all", action="store_true", help="--memory, --scale and --frey")
    p.add_argument("--coretype-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default="bench.json", metavar="PATH",
                   help="where to write the results (default: bench.json)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    return p


def run(args):
    if args.memory_child:
        return memory_child(args)
    torch, why_not = import_torch(not args.no_torch)
    if torch is None:
        print(f"PyTorch: {why_not}; comparing scratchvae with the GEMM floor only")
    train, test, split = load_images(args.dataset, args.data_dir)
    quiet = Quietness()
    if quiet.load_before[0] / quiet.cpus > QUIET_LOAD:
        print(f"warning: load average {quiet.load_before[0]:.2f} on {quiet.cpus} CPUs: other work "
              "is running, the timings will be noisy")
    sizes = [train.shape[1], args.hidden, args.z_dim]
    report = {"config": {"model": "-".join(map(str, sizes)) + " ReLU Bernoulli VAE",
                         "data": f"{split} ({train.shape[0]} / {test.shape[0]} images, grey)",
                         "lr": args.lr, "threads": args.thread_counts, "repeats": args.repeats,
                         "scale_repeats": args.scale_repeats, "frey_repeats": args.frey_repeats,
                         "seed": args.seed, "batch_sizes": args.batch_sizes, "overlap": args.overlap},
              "torch": {"version": getattr(torch, "__version__", None), "why_not": why_not},
              "comparisons": {}}     # {threads: {batch size: comparison}}, the headline first
    headline = args.thread_counts[0]
    with limit_threads(headline, torch):
        report["machine"] = machine_info()
    for threads in args.thread_counts:
        with limit_threads(threads, torch):
            for batch_size in args.batch_sizes:
                r = compare(train, test, batch_size, args.hidden, args.z_dim, args.lr, args.repeats,
                            args.seed, torch, load_before=quiet.load_before, overlap=args.overlap)
                report["comparisons"].setdefault(str(threads), {})[str(batch_size)] = dict(r, threads=threads)
    if args.scale or args.all:
        with limit_threads(headline, torch):
            report["scale"] = measure_scale(train, test, args, torch)
    if args.frey or args.all:
        frey_train, frey_test, _ = load_images("frey", args.data_dir)
        report["frey"] = compare_frey(frey_train, frey_test, args.thread_counts, args.frey_repeats,
                                      torch, seed=args.seed, load_before=quiet.load_before,
                                      overlap=args.overlap)
    if args.memory or args.all:
        report["memory"] = measure_memory(args)
    q = quiet.result()
    report["machine"].update(load_before=q["load_before"], load_after=q["load_after"],
                             others_cores=q["others_cores"])
    report["noisy"] = q["noisy"] or any(r["quiet"]["noisy"] for by_batch in report["comparisons"].values()
                                        for r in by_batch.values())
    report["goals"] = check_goals(report["comparisons"], report.get("frey"))
    if os.environ.get("OPENBLAS_CORETYPE") and not args.coretype_child:
        report["coretype_unset"] = rerun_without_coretype(args)
        report["headline"] = f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} (as set)"
    if not args.coretype_child:
        print(format_table(report))
    write_json(report, args.json)
    if not args.coretype_child:
        print(f"wrote {args.json}")
    return 0


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(
        prog="scratchvae bench", description=__doc__.split("\n\n")[0].strip("`"),
        formatter_class=argparse.RawDescriptionHelpFormatter))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
