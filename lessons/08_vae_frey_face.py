# %% [markdown]
# # Lesson 8: the VAE on Frey Face, and the variance-collapse hazard
#
# Full mode takes about a minute on 2 CPU cores; fast mode runs on scikit-learn's 8 x 8 digits.
#
# Frey Face is a video of one face, 1,965 frames of 28 x 20 grey pixels. Grey values call for a
# continuous likelihood; as in Kingma & Welling (2013) the decoder outputs a mean and a
# log-variance for every pixel:
#
#     [a, logvar_x] = decoder(z),   mu_x = sigmoid(a),
#     log p(x|z) = -1/2 sum_d [log 2pi + logvar_x_d + (x_d - mu_x_d)^2 / exp(logvar_x_d)]
#
# (`GaussianDecoder`, 200 tanh hidden units as in the paper). The paper's Figure 4a shows the
# learned 2-D manifold of faces; this lesson draws it, after a look at a hazard that every
# continuous likelihood with a learned variance carries.

# %%
import time

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np

from _lesson import Lesson
from scratchvae import VAE, Adam
from scratchvae.distributions import LOG_2PI, gaussian_log_density
from scratchvae.activations import sigmoid, softplus
from scratchvae.backend import get_array_module
from scratchvae.gradcheck import THRESHOLD, check_directional, check_gradients, format_report
from scratchvae.module import Module
from scratchvae.training.plots import manifold_figure
from scratchvae.training.trainer import Trainer

run = Lesson("08_vae_frey_face")
data = run.load("frey")
x_dim = data.train.shape[1]
print(f"  {data.split}; Gaussian decoder")
hidden = run.pick(fast=64, full=200)

# %% [markdown]
# ## Nats need the constant
#
# Note 003 writes the reconstruction cost (its line 99) as
#
#     $$-\log(p(x^{(i)}|z^{(i)})) = \sum_{j=1}^D \frac{1}{2} \log(\sigma_{x_j}^2) + \frac{(x_j^{(i)} - \mu_{x_j})^2}{2\sigma_{x_j}^2}$$
#
# which drops D/2 log 2pi: for a 560-pixel face every ELBO would come out 514.6 nats too high, and
# could not be compared with anyone's log-likelihoods. Checked on a decoder's output:

# %%
model = VAE(x_dim, z_dim=2, hidden_dims=(hidden,), likelihood="gaussian", activation="tanh", seed=run.seed)
z = np.random.default_rng(run.seed).standard_normal((5, 2)).astype(np.float32)
mu_x, logvar_x = model.decoder.forward(z)
x = data.train[:5]
note003 = (0.5 * logvar_x + (x - mu_x) ** 2 / (2 * np.exp(logvar_x))).sum(axis=1)
run.check("-log p(x|z) - note 003's value = D/2 log 2pi", -gaussian_log_density(x, mu_x, logvar_x) - note003,
          np.full(5, x_dim / 2 * LOG_2PI), tol=1e-5)

# %% [markdown]
# ## Why a learned variance can collapse
#
# A density is not a probability: it can exceed 1, and a Gaussian evaluated at its own mean,
#
#     log N(x; mu = x, sigma^2) = -1/2 log 2pi - log sigma,
#
# grows without bound as sigma shrinks. A decoder that reproduces a training image exactly in
# some pixel can therefore raise its likelihood forever by shrinking that pixel's variance,
# while any image it does not reproduce exactly (a held-out one) pays (x - mu)^2 / (2 sigma^2),
# which explodes. The maximum-likelihood problem has no maximum; it is the same degeneracy as a
# mixture component collapsing onto one data point, which EM in lesson 2 prevents with
# `reg_covar`, a floor under every variance.
#
# The same cure here: keep logvar_x above a floor. A smooth way that keeps every gradient:
#
#     logvar_x = floor + softplus(r - floor),   d logvar_x / d r = sigmoid(r - floor),
#
# with r the network's raw output. It is a small module appended to the decoder's network, with
# its backward beside its forward, like every layer of the library.

# %%
class LogvarFloor(Module):
    """[a, r] -> [a, floor + softplus(r - floor)]: the second half of the decoder's output, the
    log-variances, never goes below ``floor``; the first half (the mean's logits) passes through."""

    def __init__(self, floor):
        super().__init__()
        self.floor = floor

    def forward(self, out):
        xp = get_array_module(out)
        d = out.shape[-1] // 2
        r = out[:, d:] - self.floor
        self.cache = sigmoid(r)                                  # d softplus(r) / dr
        return xp.concatenate([out[:, :d], self.floor + softplus(r)], axis=1)

    def backward(self, dy):
        xp = get_array_module(dy)
        d = dy.shape[-1] // 2
        return xp.concatenate([dy[:, :d], dy[:, d:] * self.cache], axis=1)


def gaussian_vae(z_dim, floor=None, x_dim=x_dim, hidden_dims=(hidden,), dtype="float32"):
    """The paper's Frey Face model; with ``floor``, log-variances stay above it."""
    model = VAE(x_dim, z_dim=z_dim, hidden_dims=hidden_dims, likelihood="gaussian", activation="tanh",
                dtype=dtype, seed=run.seed)
    if floor is not None:
        model.decoder.net.layers.append(LogvarFloor(floor))
    return model


# %% [markdown]
# The new module's backward, checked on its own: for an upstream gradient dy, the derivative of
# sum(dy * forward(out)) with respect to out, against central differences, every entry.
# Then the whole model with the floor, along a random direction through all its parameters.

# %%
rng = np.random.default_rng(run.seed)
floor_layer = LogvarFloor(-1.0)
# raw outputs within 3 of the floor (slopes >= 0.05, resolvable by finite differences), dy of size ~1
out = -1.0 + rng.uniform(-3.0, 3.0, (5, 8))
dy = rng.choice([-1.0, 1.0], (5, 8)) * rng.uniform(0.5, 1.5, (5, 8))
floor_layer.forward(out)
reports = check_gradients(lambda: (dy * floor_layer.forward(out)).sum(), {"out": out},
                          {"out": floor_layer.backward(dy)})
print(format_report(reports))
assert reports[0].worst < THRESHOLD
assert floor_layer.forward(out - 30.0)[:, 4:].min() >= -1.0       # far below the floor: still above it

small = gaussian_vae(3, floor=-1.0, x_dim=7, hidden_dims=(8,), dtype="float64")
xs, eps = rng.uniform(0.05, 0.95, (8, 7)), rng.standard_normal((2, 8, 3))
small.loss_and_grads(xs, eps=eps)
rel, analytic, numeric = check_directional(lambda: small.loss(xs, eps=eps), small.parameters(),
                                           {name: g.copy() for name, g in small.gradients().items()})
run.check("VAE with the floor: directional derivative", analytic, numeric, tol=THRESHOLD)

# %% [markdown]
# ## The hazard, on 100 training images
#
# Few training images make it quick to show: a 10-D latent space and 100 frames (every 15th),
# trained without a floor and with floors at sigma_x >= 0.05 (logvar_x >= -6) and sigma_x >= 0.135
# (logvar_x >= -4). Without a floor the training ELBO keeps climbing while the held-out ELBO falls
# by thousands of nats; with a floor the fall is bounded.

# %%
floors = {"no floor": None, "floor: sigma_x >= 0.05": 2 * np.log(0.05), "floor: sigma_x >= 0.135": -4.0}
few = data.train[:: max(1, data.train.shape[0] // 100)][:100]
hazard_epochs = run.pick(fast=400, full=1500)
hazard, hazard_logvar = {}, {}
for name, floor in floors.items():
    model = gaussian_vae(10, floor)
    trainer = Trainer(model, Adam(model.named_parameters(), lr=1e-3), few, data.test, batch_size=100,
                      seed=run.seed, progress=False)
    start = time.perf_counter()
    hazard[name] = trainer.fit(epochs=hazard_epochs, eval_every=len(few) * max(1, hazard_epochs // 30))
    mu, _ = model.encode(few)
    hazard_logvar[name] = model.decoder.forward(mu)[1].ravel()
    last = hazard[name][-1]
    print(f"  {name:<26} {time.perf_counter() - start:5.1f} s: ELBO train {last['train_elbo']:9.1f}, "
          f"held-out {last['test_elbo']:10.1f}, smallest logvar_x {hazard_logvar[name].min():6.2f}")
    if floor is not None:
        assert hazard_logvar[name].min() >= floor

# %% [markdown]
# ## Figure 4a: the learned manifold of faces
#
# The full training set, a 2-D latent space, and the floor sigma_x >= 0.05. Decoder means on a
# 20 x 20 grid of z evenly spaced in probability, as in the paper.

# %%
model = gaussian_vae(2, floors["floor: sigma_x >= 0.05"])
trainer = Trainer(model, Adam(model.named_parameters(), lr=1e-3), data.train, data.test, batch_size=100,
                  seed=run.seed, progress=False)
epochs = run.pick(fast=40, full=200)
start = time.perf_counter()
history = trainer.fit(epochs=epochs, eval_every=data.train.shape[0] * max(1, epochs // 40))
last = history[-1]
print(f"  2-D model, {epochs} epochs in {time.perf_counter() - start:.1f} s: ELBO per image train "
      f"{last['train_elbo']:.1f}, held-out {last['test_elbo']:.1f} nats "
      f"(note 003's formula would say {last['test_elbo'] + x_dim / 2 * LOG_2PI:.1f})")

# %% [markdown]
# Each face pixel is drawn as a whole number of screen pixels, and the grey scale runs from the
# darkest to the brightest mean: a Gaussian decoder's faces use only part of [0, 1]
# (`scratchvae.training.plots.manifold_figure`).

# %%
run.save(manifold_figure(model, data.image_shape, new_figure=plt.figure), "manifold")

fig, axes = plt.subplots(1, 2, figsize=(13, 5))
ax = axes[0]
n = [r["samples"] for r in history]
ax.plot(n, [r["test_elbo"] for r in history], "C0-", label="held-out")
ax.plot(n, [r["train_elbo"] for r in history], "C0--", label="train")
ax.set(xscale="log", xlabel="training samples seen", ylabel="ELBO per image (nats)",
       title="lower bound during training")
ax.xaxis.set_minor_formatter(NullFormatter())
ax.legend(fontsize=8)
ax = axes[1]
mu, _ = model.encode(np.concatenate([data.train, data.test]))
frames = ax.scatter(mu[:, 0], mu[:, 1], c=np.arange(len(mu)), cmap="viridis", s=4)
fig.colorbar(frames, ax=ax, label="frame" if data.name == "frey" else "image index")
ax.set(title="encoder means mu(x) of every image", xlabel="z_1", ylabel="z_2")
fig.tight_layout()
run.save(fig, "training")

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
for i, (name, history) in enumerate(hazard.items()):
    n = [r["samples"] for r in history]
    axes[0].plot(n, [r["test_elbo"] for r in history], "-", color=f"C{i}", label=f"{name}, held-out")
    axes[0].plot(n, [r["train_elbo"] for r in history], "--", color=f"C{i}", label=f"{name}, train")
axes[0].set(xscale="log", xlabel="training samples seen", ylabel="ELBO per image (nats, symmetric log scale)",
            title=f"(a) {len(few)} training images: train up, held-out down")
axes[0].set_yscale("symlog", linthresh=100)
axes[0].set_ylim(top=3 * max(100, max(r["train_elbo"] for history in hazard.values() for r in history)))
axes[0].xaxis.set_minor_formatter(NullFormatter())
axes[0].legend(fontsize=7)

bins = np.linspace(min(v.min() for v in hazard_logvar.values()) - 0.5, 2, 80)
for i, (name, lv) in enumerate(hazard_logvar.items()):
    axes[1].hist(lv, bins=bins, histtype="step", lw=1.5, color=f"C{i}", density=True, label=name)
    if floors[name] is not None:
        axes[1].axvline(floors[name], color=f"C{i}", ls=":")
axes[1].set(title="(b) decoder logvar_x on the training images", xlabel="logvar_x", ylabel="density")
axes[1].legend(fontsize=8)

logvar = np.linspace(-14, 2, 200)
axes[2].plot(logvar, -0.5 * LOG_2PI - logvar / 2, "k", label="log N(x; mu = x, exp(logvar))")
for i, (name, floor) in enumerate(floors.items()):
    if floor is not None:
        capped = floor + softplus(logvar - floor)
        axes[2].plot(logvar, -0.5 * LOG_2PI - capped / 2, color=f"C{i}", label=f"with {name}")
axes[2].set(title="(c) one pixel reproduced exactly", xlabel="logvar the network asks for",
            ylabel="log-density of that pixel (nats)")
axes[2].legend(fontsize=8)
fig.tight_layout()
run.save(fig, "variance_collapse")

# %% [markdown]
# ## What to remember
#
# * A Gaussian decoder with a learned variance gives log-densities, which can be positive and
#   are unbounded above: more is not always better, and held-out ELBO is the judge.
# * A floor under the variance (or any prior that keeps it away from 0) makes the problem
#   well posed, at the price of a cap on how sharp the model may be.
# * Report ELBOs with the 1/2 log 2pi per pixel, so that they are in nats.
