# %% [markdown]
# # Lesson 7: the VAE on MNIST
#
# Full mode takes about 4 minutes on 2 CPU cores (four models of 80 epochs on 9,000 images);
# fast mode runs on scikit-learn's 8 x 8 digits in seconds.
#
# The model of Kingma & Welling (2013), with a Bernoulli decoder for the pixels:
#
#     [mu, logvar] = encoder(x)                 q(z|x) = N(mu, diag(exp(logvar)))
#     z = mu + exp(logvar / 2) * eps,   eps ~ N(0, I)
#     logits = decoder(z)                       p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d))
#     elbo = log p(x|z) - kl,   kl = KL(q(z|x) || N(0, I))   (closed form, lesson 5)
#
# and their Algorithm 1: draw a minibatch, one eps per image, step theta along the gradient of
# the mean ELBO (`scratchvae.training.trainer.Trainer`, which also measures the ELBO on held-out images).
# As in the paper: one hidden layer of 500 tanh units on each side, minibatches of 100. Unlike
# it: Adam instead of Adagrad, and a few hundred thousand training samples instead of 10^8.
#
# This reproduces the paper's MNIST figures on the data at hand: the lower bound during training
# (Figure 2), the learned 2-D manifold (Figure 4b) and samples from 2, 5, 10 and 20-D latent
# spaces (Figure 5). Without the 60,000 training images (the offline reference folder has only
# the 10,000 test images) the training set is 9,000 of those and the held-out set the other 1,000.

# %%
import time

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np

from _lesson import Lesson
from scratchvae import VAE, Adam
from scratchvae.gradcheck import THRESHOLD, check_directional, check_gradients, format_report
from scratchvae.training.plots import latent_grid, tile
from scratchvae.training.trainer import Trainer

run = Lesson("07_vae_mnist")
data = run.load("mnist")
print(f"  {data.split}")
hidden, epochs = run.pick(fast=(128, 60), full=(500, 80))
latent_sizes = [2, 5, 10, 20]

# %% [markdown]
# ## The gradient, checked
#
# Before training anything: the hand-written backward pass of the whole model against central
# differences of the loss, eps frozen, in float64, for every parameter tensor (a few coordinates
# of each), and along one random direction through all of them at once.

# %%
small = VAE(12, z_dim=3, hidden_dims=(7,), likelihood="bernoulli", activation="tanh",
            dtype="float64", seed=1)
rng = np.random.default_rng(run.seed)
xs = (rng.random((5, 12)) < 0.4).astype(np.float64)
eps = rng.standard_normal((5, 3))
small.loss_and_grads(xs, eps=eps)
grads = {name: g.copy() for name, g in small.gradients().items()}
reports = check_gradients(lambda: small.loss(xs, eps=eps), small.parameters(), grads)
print(format_report(reports))
assert all(r.worst < THRESHOLD for r in reports)
rel, analytic, numeric = check_directional(lambda: small.loss(xs, eps=eps), small.parameters(), grads)
run.check("directional derivative, all parameters at once", analytic, numeric, tol=THRESHOLD)

# %% [markdown]
# ## Training four models
#
# Latent sizes 2, 5, 10 and 20. Pixels are binarized afresh for every minibatch (a draw of
# Bernoulli(pixel value) per pixel); the held-out images are binarized once. The ELBO of
# held-out and training images is measured after every epoch.

# %%
models, histories = {}, {}
for z_dim in latent_sizes:
    model = VAE(data.train.shape[1], z_dim=z_dim, hidden_dims=(hidden,), likelihood="bernoulli",
                activation="tanh", seed=run.seed)
    optimizer = Adam(model.named_parameters(), lr=run.pick(fast=3e-3, full=1e-3))
    trainer = Trainer(model, optimizer, data.train, data.test, batch_size=100, binarization="dynamic",
                      seed=run.seed, progress=False, eval_size=1000)
    start = time.perf_counter()
    histories[z_dim] = trainer.fit(epochs=epochs)
    models[z_dim] = model
    last = histories[z_dim][-1]
    print(f"  z = {z_dim:2d}: {epochs} epochs in {time.perf_counter() - start:5.1f} s, ELBO per image "
          f"train {last['train_elbo']:8.2f}, held-out {last['test_elbo']:8.2f} "
          f"(rec {last['test_rec']:.2f}, kl {last['test_kl']:.2f})")
    run.check(f"z = {z_dim}: held-out elbo = rec - kl", last["test_elbo"], last["test_rec"] - last["test_kl"],
              tol=1e-6)

# %% [markdown]
# ## Figure 2: the lower bound during training
#
# More latent dimensions give a higher bound; the training bound (dashed) drawing away from the
# held-out one (solid) is overfitting, which a small training set brings on early.

# %%
fig, ax = plt.subplots(figsize=(7.5, 5))
for i, z_dim in enumerate(latent_sizes):
    history = histories[z_dim]
    n = [r["samples"] for r in history]
    ax.plot(n, [r["test_elbo"] for r in history], "-", color=f"C{i}", label=f"z = {z_dim}, held-out")
    ax.plot(n, [r["train_elbo"] for r in history], "--", color=f"C{i}", label=f"z = {z_dim}, train")
ax.set(xscale="log", xlabel="training samples seen", ylabel="ELBO per image (nats)",
       title=f"lower bound during training ({data.name}, {data.train.shape[0]} training images)")
ax.grid(True, which="both", alpha=0.3)
ax.xaxis.set_minor_formatter(NullFormatter())
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()
run.save(fig, "elbo_curves")

# %% [markdown]
# ## Figure 4: the learned 2-D manifold
#
# Left, the encoder means mu(x) of held-out images, coloured by their digit: the classes form
# regions although no label was ever seen. Right, decoder means E[x|z] on a grid of z; the grid is
# evenly spaced in probability (the inverse normal CDF of evenly spaced points of the unit
# square, `plots.latent_grid`), so each image covers an equal share of the prior.

# %%
model = models[2]
n_grid = 20 if min(data.image_shape) >= 16 else 12
mu, _ = model.encode(data.test)
fig, axes = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw=dict(width_ratios=[1.15, 1]))
points = axes[0].scatter(mu[:, 0], mu[:, 1], c=data.test_labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
fig.colorbar(points, ax=axes[0], ticks=range(10), label="digit")
axes[0].set(title="encoder means mu(x) of held-out images", xlabel="z_1", ylabel="z_2")
grid = model.decode(latent_grid(n_grid).astype(model.dtype))
axes[1].imshow(tile(grid, data.image_shape, n_grid), cmap="gray", vmin=0, vmax=1)
axes[1].set_axis_off()
axes[1].set_title(f"decoder means on a {n_grid} x {n_grid} grid of z")
fig.tight_layout()
run.save(fig, "manifold")

# %% [markdown]
# ## Figure 5: samples from the prior
#
# Decoder means E[x|z] for z ~ N(0, I), 100 draws per model.

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 5))
for ax, z_dim in zip(axes, latent_sizes):
    samples = models[z_dim].sample(100, rng=np.random.default_rng(run.seed))
    ax.imshow(tile(samples, data.image_shape, 10), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"{z_dim}-D latent space")
fig.tight_layout()
run.save(fig, "samples")

# %% [markdown]
# ## What to remember
#
# * The whole algorithm is a minibatch gradient step on the mean ELBO, one eps per image.
# * Held-out ELBO, not training ELBO, says how good a model is; a small training set overfits.
# * A 2-D latent space is easy to look at; more dimensions fit better and sample better.
# * The ELBO is only a bound; lesson 9 estimates how far it is from log p(x).
