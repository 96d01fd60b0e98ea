"""What ``scratchvae bench`` times: the data, the model, the minibatch order that every
contender shares, and the contenders, each training (or multiplying) through one epoch of it."""
import gc
import time
from pathlib import Path

import numpy as np

from ...data.datasets import load_dataset
from ...data.download import MissingDataError
from ...distributions import LOG_2PI
from ...optim import Adam
from ...training.overlap import make_overlap, why_off
from ...training.step import train_step
from ...vae import VAE

SHARED_DATA = Path("..") / "shared" / "data"   # an optional local copy beside the project
CONTENDERS = ("scratchvae", "scratchvae_overlap", "torch", "torch_fused", "gemm_floor")
LABELS = {"scratchvae": "scratchvae", "scratchvae_overlap": "sv overlapped", "torch": "torch",
          "torch_fused": "torch fused", "gemm_floor": "GEMM floor"}


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


def import_torch(wanted=True):
    """``(torch, None)``, or ``(None, why not)``: PyTorch is optional."""
    if not wanted:
        return None, "--no-torch was given"
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed (pip install torch)"
    return torch, None


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
