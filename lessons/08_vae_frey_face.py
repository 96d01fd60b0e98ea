# %% [markdown]
# # Lesson 8: the VAE on Frey Face, and the variance-collapse hazard
#
# Full mode takes about a minute and a half on 2 CPU cores. Fast mode runs on scikit-learn's 8 x 8 digits
# instead, with the same Gaussian decoder: the hazard and its cure show just as well on them, but
# the manifold then shows digits, not faces (the lesson says which it drew).
#
# Frey Face is a video of one face, 1,965 frames of 28 x 20 grey pixels. Grey values call for a
# continuous likelihood; as in Kingma & Welling (2013) the decoder outputs a mean and a
# log-variance for every pixel:
#
# $$
# \begin{aligned}
# {[a, \log\sigma_x^2]} &= \operatorname{decoder}(z), \qquad \mu_x = \operatorname{sigmoid}(a), \\
# \log p(x|z) &= -\frac12 \sum_d \Bigl[\log 2\pi + \log\sigma_{x,d}^2
#   + \frac{(x_d - \mu_{x,d})^2}{\exp(\log\sigma_{x,d}^2)}\Bigr]
# \end{aligned}
# $$
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
if data.name != "frey":
    print(f"  Fast mode: the {data.train.shape[0]} {data.image_shape[0]} x {data.image_shape[1]} {data.name} stand "
          f"in for Frey Face's faces, as grey values with the same Gaussian decoder. Every number and figure "
          f"below is about them; run without --fast (with Frey Face) for the faces.")
hidden = run.pick(fast=64, full=200)

# %% [markdown]
# ## Nats need the constant
#
# The negative log-density of the decoder's Gaussian, for an image of $D$ pixels, is
#
# $$
# -\log p(x|z) = \sum_d \Bigl[\tfrac12 \log 2\pi + \tfrac12 \log\sigma_{x,d}^2
#   + \frac{(x_d - \mu_{x,d})^2}{2 \exp(\log\sigma_{x,d}^2)}\Bigr].
# $$
#
# A common shortcut drops the first term, $\frac{D}{2} \log 2\pi$, because it does not depend on the
# weights, so the gradient is the same with or without it. Note 003 of the lecture notes writes the
# reconstruction cost that way (its line 99):
#
# $$-\log(p(x^{(i)}|z^{(i)})) = \sum_{j=1}^D \frac{1}{2} \log(\sigma_{x_j}^2) + \frac{(x_j^{(i)} - \mu_{x_j})^2}{2\sigma_{x_j}^2}$$
#
# Fine for training, wrong for reporting: the result is no longer a log-density, so it is not in
# nats. For a 560-pixel face every ELBO would come out $\frac{D}{2} \log 2\pi = 514.6$ nats too high,
# and could not be compared with anyone's log-likelihoods. Checked on a decoder's output:

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
# $$
# \log \mathcal{N}(x; \mu = x, \sigma^2) = -\tfrac12 \log 2\pi - \log\sigma,
# $$
#
# grows without bound as $\sigma$ shrinks. A decoder that reproduces a training image exactly in
# some pixel can therefore raise its likelihood forever by shrinking that pixel's variance,
# while any image it does not reproduce exactly (a held-out one) pays $(x - \mu)^2 / (2\sigma^2)$,
# which explodes. The maximum-likelihood problem has no maximum; it is the same degeneracy as a
# mixture component collapsing onto one data point, which EM in lesson 2 prevents with
# `reg_covar`, a floor under every variance.
#
# The same cure here: keep $\log\sigma_x^2$ above a floor. A smooth way that keeps every gradient:
#
# $$
# \log\sigma_x^2 = \text{floor} + \operatorname{softplus}(r - \text{floor}), \qquad
# \frac{\partial \log\sigma_x^2}{\partial r} = \operatorname{sigmoid}(r - \text{floor}),
# $$
#
# with $r$ the network's raw output. It is a small module appended to the decoder's network, with
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
# The new module's backward, checked on its own: for an upstream gradient `dy`, the derivative of
# $\sum \text{dy} \odot \operatorname{forward}(\text{out})$ with respect to `out`, against central
# differences, every entry. Then the whole model with the floor, along a random direction through all
# its parameters.

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
# Few training images make it quick to show: a 10-D latent space and 100 training images (in
# full mode every 15th frame of the video), trained without a floor and with floors at
# $\sigma_x \ge 0.05$ ($\log\sigma_x^2 \ge -6$) and $\sigma_x \ge 0.135$ ($\log\sigma_x^2 \ge -4$).
# Without a floor the training ELBO keeps climbing while the held-out ELBO falls by thousands of
# nats; with a floor the fall is bounded.

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
# ## Figure 4a: the learned manifold
#
# The full training set, a 2-D latent space, and the floor $\sigma_x \ge 0.05$. Decoder means on a
# grid of $z$ evenly spaced in probability, as in the paper: 20 x 20 faces of Frey Face in full mode,
# 12 x 12 of the 8 x 8 digits in fast mode.

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
      f"(without the D/2 log 2pi, as note 003 writes it: {last['test_elbo'] + x_dim / 2 * LOG_2PI:.1f})")

# %% [markdown]
# Each image pixel is drawn as a whole number of screen pixels, and the grey scale runs from the
# darkest to the brightest mean: a Gaussian decoder's means use only part of $[0, 1]$
# (`scratchvae.training.plots.manifold_figure`).

# %%
fig = manifold_figure(model, data.image_shape, new_figure=plt.figure)
fig.axes[0].set_title(f"{'Frey Face' if data.name == 'frey' else data.name + ' (fast mode)'}: "
                      f"{fig.axes[0].get_title()}", fontsize=9)
run.save(fig, "manifold")

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
if data.train_labels is None:          # Frey Face: frames of one video, coloured by their order
    colour, cmap, label, extra = np.arange(len(mu)), "viridis", "frame (training, then held-out)", {}
else:                                  # fast mode's digits: coloured by the digit
    colour = np.concatenate([data.train_labels, data.test_labels])
    cmap, label, extra = "tab10", "digit", dict(vmin=-0.5, vmax=9.5)
points = ax.scatter(mu[:, 0], mu[:, 1], c=colour, cmap=cmap, s=4, **extra)
fig.colorbar(points, ax=ax, label=label, **({"ticks": range(10)} if extra else {}))
ax.set(title=f"encoder means mu(x) of every image ({data.name})", xlabel="z_1", ylabel="z_2")
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
# * Report ELBOs with the $\tfrac12 \log 2\pi$ per pixel, so that they are in nats.
#
# ## Exercises
#
# Start a workbook once with `scratchvae exercises start my-workbook` and grade an exercise with
# `scratchvae exercises check my-workbook NAME` (lesson 7 says more). Worked answers to the
# questions: `lessons/answers/08_vae_frey_face.md`; try first.
#
# 1. **Code: the Gaussian log-density and its gradient** (`gaussian_log_density`,
#    `gaussian_log_density_grad`, workbook `08_gaussian_decoder.py`):
#    $\log \mathcal{N}\bigl(x; \mu, \operatorname{diag}(\exp(\log\sigma^2))\bigr)$ summed over the last
#    axis, with the constant, and its gradients with respect to $\mu$, $\log\sigma^2$ and $x$.
#    Derive $\partial / \partial \log\sigma^2$ yourself first: where does its $\tfrac12$ come from? The
#    grader knows what $\exp(\log\sigma^2)$ used as the standard deviation looks like.
# 2. **Question: the cap.** With the floor $\sigma_x \ge 0.05$, what is the most that one pixel can
#    add to $\log p(x|z)$, and so the largest rec any image can reach: a 560-pixel face, a 64-pixel
#    digit? Compare with the training ELBOs printed above.
# 3. **Question: the collapse in numbers.** Without a floor the smallest $\log\sigma_x^2$ printed
#    above (`logvar_x`) is about $-32$ in fast mode ($-14$ in full mode). What does a held-out pixel
#    cost, in nats, when the decoder's mean misses it by 0.1 with that variance? Is the held-out ELBO
#    of the "no floor" model then surprising?
# 4. **Question: positive ELBOs.** The models of this lesson have ELBOs of tens or hundreds of nats
#    *above* zero; lesson 7's are all below zero. Why can one be positive and the other not, and can
#    the two numbers be compared?
