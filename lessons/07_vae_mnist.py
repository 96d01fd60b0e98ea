# %% [markdown]
# # Lesson 7: the VAE on MNIST
#
# Full mode takes about 4 minutes on 2 CPU cores (four models of 80 epochs on 9,000 images);
# fast mode runs on scikit-learn's 8 x 8 digits in seconds.
#
# The model of Kingma & Welling (2013), with a Bernoulli decoder for the pixels:
#
# $$
# \begin{aligned}
# {[\mu, \log\sigma^2]} &= \operatorname{encoder}(x), \\
# q(z|x) &= \mathcal{N}\bigl(\mu, \operatorname{diag}(\sigma^2)\bigr), \\
# z &= \mu + \sigma \odot \epsilon, \quad
#   \sigma = \exp(\tfrac12 \log\sigma^2), \quad \epsilon \sim \mathcal{N}(0, I), \\
# \text{logits} &= \operatorname{decoder}(z), \\
# p(x|z) &= \prod_d \operatorname{Bernoulli}\bigl(x_d; \operatorname{sigmoid}(\text{logits}_d)\bigr), \\
# \mathrm{ELBO} &= \log p(x|z) - \mathrm{KL}, \\
# \mathrm{KL} &= \mathrm{KL}\bigl(q(z|x) \,\|\, \mathcal{N}(0, I)\bigr) \quad \text{(closed form, lesson 5)}
# \end{aligned}
# $$
#
# and their Algorithm 1: draw a minibatch, one $\epsilon$ per image, step $\theta$ along the gradient of
# the mean ELBO (`scratchvae.training.trainer.Trainer`, which also measures the ELBO on held-out images).
# As in the paper: one hidden layer of 500 tanh units on each side, minibatches of 100. Unlike
# it: Adam instead of Adagrad, and a few hundred thousand training samples instead of $10^8$.
#
# This reproduces the paper's MNIST figures on the data at hand: the lower bound during training
# (Figure 2), the learned 2-D manifold (Figure 4b) and samples from 2, 5, 10 and 20-D latent
# spaces (Figure 5). Without the 60,000 training images (the offline reference folder has only
# the 10,000 test images) the training set is 9,000 of those and the held-out set the other 1,000.
#
# First, though, the lesson takes apart the computation that trains the model, `VAE.backward`:
# each of its lines derived from the formula above and checked on its own.

# %%
import inspect
import time

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np

from _lesson import Lesson
import scratchvae.vae
from scratchvae import VAE, Adam
from scratchvae.distributions import (bernoulli_log_likelihood, bernoulli_log_likelihood_grad, kl_standard_normal,
                                      kl_standard_normal_grad, reparameterize, reparameterize_backward)
from scratchvae.gradcheck import THRESHOLD, check_directional, check_gradients, format_report, numerical_gradient
from scratchvae.training.plots import latent_grid, tile
from scratchvae.training.trainer import Trainer, heldout_images

run = Lesson("07_vae_mnist")
data = run.load("mnist")
print(f"  {data.split}")
hidden, epochs = run.pick(fast=(128, 60), full=(500, 80))
latent_sizes = [2, 5, 10, 20]

# %% [markdown]
# ## The backward pass, line by line
#
# Lesson 0 derived the backward of a linear layer, an activation and an MLP; lessons 5 and 6 the
# KL's gradient and the reparameterization's. `VAE.backward` chains them. Here is its code, printed
# from the installed library (so it is the code that runs, whatever version you have):

# %%
print(inspect.getsource(VAE.backward))

# %% [markdown]
# The loss of a minibatch of $B$ images, with $S$ samples of $\epsilon$ per image, is
#
# $$
# \begin{aligned}
# \text{loss} &= -\frac1B \sum_b \mathrm{ELBO}_b, \\
# \mathrm{ELBO}_b &= \frac1S \sum_s \log p(x_b|z_{sb}) - \mathrm{KL}_b, \\
# z_{sb} &= \mu_b + \exp(\tfrac12 \log\sigma_b^2) \odot \epsilon_{sb}, \\
# \mathrm{KL}_b &= \frac12 \sum_j \bigl[\mu_{bj}^2 + \exp(\log\sigma_{bj}^2) - 1 - \log\sigma_{bj}^2\bigr]
# \end{aligned}
# $$
#
# and the backward pass goes through it from the end:
#
# 1. **dlogp.** Each $\log p(x_b|z_{sb})$ enters the loss once, with weight $-1/B$ (the batch mean)
#    times $1/S$ (the sample mean): $\partial\,\text{loss} / \partial \log p(x_b|z_{sb}) = -1/(SB)$,
#    the same number for every pair.
# 2. **The decoder.** $\log p(x|z) = \sum_d [x_d l_d - \operatorname{softplus}(l_d)]$ for logits
#    $l = \operatorname{decoder}(z)$. Since $\operatorname{softplus}' = \operatorname{sigmoid}$,
#    $\partial \log p / \partial l_d = x_d - \operatorname{sigmoid}(l_d)$: the data minus the
#    decoder's probability. Times `dlogp` (one number per row), then the MLP's chain rule
#    (lesson 0) back to $z$ gives `dz`, of shape $(S, B, Z)$, and on the way every decoder weight's
#    gradient.
# 3. **The reparameterization.** $z = \mu + \exp(\tfrac12 \log\sigma^2)\,\epsilon$, so
#    $\partial z / \partial \mu = 1$ and
#    $\partial z / \partial \log\sigma^2 = \tfrac12\,\epsilon \exp(\tfrac12 \log\sigma^2)$ (the $\tfrac12$
#    from the square root in $\sigma$). Every sample $z_{sb}$ was made from the same $\mu_b$ and
#    $\log\sigma_b^2$, so their contributions add: a **sum** over $s$ (the $1/S$ is already inside
#    `dlogp`).
# 4. **The KL.** $\mathrm{KL}_b$ depends on $\mu_b$ and $\log\sigma_b^2$ directly:
#    $\partial\,\mathrm{KL} / \partial \mu = \mu$,
#    $\partial\,\mathrm{KL} / \partial \log\sigma^2 = \tfrac12 (\exp(\log\sigma^2) - 1)$, and
#    $\mathrm{KL}_b$ enters the loss with weight $+1/B$ (the sign: the loss is minus the ELBO, and
#    the ELBO is minus the KL).
# 5. **The encoder.** Steps 3 and 4 reach the same two outputs of the encoder, so their gradients
#    add:
#
#    $$
#    \begin{aligned}
#    \text{dmu} &= \sum_s \text{dz}_s + \frac1B \mu, \\
#    \text{dlogvar} &= \sum_s \text{dz}_s\, \epsilon_s \tfrac12 \exp(\tfrac12 \log\sigma^2)
#      + \frac1B \cdot \tfrac12 (\exp(\log\sigma^2) - 1).
#    \end{aligned}
#    $$
#
#    The encoder's output is `[mu, logvar]` side by side, so its backward gets `[dmu, dlogvar]` side
#    by side and returns the encoder weights' gradients.
#
# The last lines of the code add the gradient of the weight prior, `weight_decay` $\cdot\, \theta$,
# when the model has one (lesson 11's models do; these do not).
#
# Each step, checked on its own in float64 against central differences (lesson 0), on a small
# model with $S = 2$ samples per image and the noise $\epsilon$ frozen (a loss that draws fresh
# $\epsilon$ at every call is not a function that finite differences can differentiate). First the
# forward pass by hand, keeping every intermediate:

# %%
small = VAE(12, z_dim=3, hidden_dims=(7,), likelihood="bernoulli", activation="tanh",
            dtype="float64", seed=1)
rng = np.random.default_rng(run.seed)
S, B, Z = 2, 5, 3
xs = (rng.random((B, 12)) < 0.4).astype(np.float64)
eps = rng.standard_normal((S, B, Z))
loss_library, _ = small.loss_and_grads(xs, eps=eps)                 # VAE.backward fills the gradients
grads = {name: g.copy() for name, g in small.gradients().items()}

out = small.encoder.forward(xs)
mu, logvar = out[:, :Z].copy(), out[:, Z:].copy()                   # (B, Z) each
z = reparameterize(mu, logvar, eps)                                 # (S, B, Z)
x_rep = np.broadcast_to(xs, (S, B, 12)).reshape(S * B, 12)           # row s*B + b is x_b
log_lik = bernoulli_log_likelihood(x_rep, small.decoder.forward(z.reshape(S * B, Z))).reshape(S, B)
kl = kl_standard_normal(mu, logvar)                                 # (B,)
run.check("the forward pass by hand = VAE.loss", -(log_lik.mean(axis=0) - kl).mean(), loss_library, tol=1e-12)

# %% [markdown]
# Step 1: the loss as a function of the $S \times B$ log-likelihoods, differentiated numerically.

# %%
L = log_lik.copy()
run.check("1. d loss / d log p(x_b|z_sb) = -1/(S B)",
          numerical_gradient(lambda: -(L.mean(axis=0) - kl).mean(), L), np.full((S, B), -1.0 / (S * B)),
          tol=THRESHOLD)
dlogp = np.full(S * B, -1.0 / (S * B))

# %% [markdown]
# Step 2: the Bernoulli gradient on its own, then the decoder's backward, which returns `dz` for the
# upstream `dlogp`: the gradient of $\sum_n \text{dlogp}_n \log p(x_n|z_n)$ with respect to $z$.

# %%
logits = small.decoder.forward(z.reshape(S * B, Z)).copy()
run.check("2a. d log p / d logits = x - sigmoid(logits)", bernoulli_log_likelihood_grad(x_rep, logits),
          numerical_gradient(lambda: bernoulli_log_likelihood(x_rep, logits).sum(), logits), tol=THRESHOLD)

z_flat = z.reshape(S * B, Z).copy()
small.decoder.forward(z_flat)
small.decoder.log_prob(x_rep)
dz = small.decoder.backward(dlogp).reshape(S, B, Z)
numeric = numerical_gradient(
    lambda: (dlogp * bernoulli_log_likelihood(x_rep, small.decoder.forward(z_flat))).sum(), z_flat)
run.check("2b. decoder backward: dz", dz, numeric.reshape(S, B, Z), tol=THRESHOLD)
for name in ("decoder.net.0.W", "decoder.net.2.b"):       # the decoder's weights got theirs on the way
    run.check(f"2c. {name}: the same as VAE.backward's", small.gradients()[name], grads[name], tol=1e-12)

# %% [markdown]
# Step 3: `reparameterize_backward(dz, logvar, eps)` against central differences of
# $\sum \text{dz} \odot z(\mu, \log\sigma^2)$, whose gradient is by definition the chain rule through $z$.

# %%
dmu_path, dlogvar_path = reparameterize_backward(dz, logvar, eps)
mu_v, logvar_v = mu.copy(), logvar.copy()


def through_z():
    return (dz * reparameterize(mu_v, logvar_v, eps)).sum()


run.check("3a. dmu = sum_s dz_s", dmu_path, numerical_gradient(through_z, mu_v), tol=THRESHOLD)
run.check("3b. dlogvar = sum_s dz_s eps_s exp(logvar/2) / 2", dlogvar_path,
          numerical_gradient(through_z, logvar_v), tol=THRESHOLD)

# %% [markdown]
# Step 4: the KL's gradient, divided by $B$, against central differences of the batch mean of the KL.

# %%
dmu_kl, dlogvar_kl = kl_standard_normal_grad(mu, logvar)
run.check("4a. d mean(kl) / dmu = mu / B", dmu_kl / B,
          numerical_gradient(lambda: kl_standard_normal(mu_v, logvar_v).mean(), mu_v), tol=THRESHOLD)
run.check("4b. d mean(kl) / dlogvar = (exp(logvar) - 1) / (2 B)", dlogvar_kl / B,
          numerical_gradient(lambda: kl_standard_normal(mu_v, logvar_v).mean(), logvar_v), tol=THRESHOLD)

# %% [markdown]
# Step 5: the two routes added, checked against central differences of the whole loss as a function
# of the encoder's outputs ($\mu$, $\log\sigma^2$), $\epsilon$ frozen. The library keeps this assembly
# step in a function of its own, `scratchvae.vae.encoder_output_grad(dz, mu, logvar, eps)` (the
# workbook exercise of that name); where the installed version has it, the cell prints it and checks
# it against the lines here.

# %%
dmu = dmu_path + dmu_kl / B
dlogvar = dlogvar_path + dlogvar_kl / B


def loss_of_encoder_output():
    zz = reparameterize(mu_v, logvar_v, eps).reshape(S * B, Z)
    ll = bernoulli_log_likelihood(x_rep, small.decoder.forward(zz)).reshape(S, B)
    return -(ll.mean(axis=0) - kl_standard_normal(mu_v, logvar_v)).mean()


run.check("5a. dmu, the two routes added", dmu, numerical_gradient(loss_of_encoder_output, mu_v), tol=THRESHOLD)
run.check("5b. dlogvar, the two routes added", dlogvar, numerical_gradient(loss_of_encoder_output, logvar_v),
          tol=THRESHOLD)
assembly = getattr(scratchvae.vae, "encoder_output_grad", None)
if assembly is not None:
    print(inspect.getsource(assembly))
    library_dmu, library_dlogvar = assembly(dz, mu, logvar, eps)
    run.check("5c. encoder_output_grad: dmu", library_dmu, dmu, tol=1e-12)
    run.check("5c. encoder_output_grad: dlogvar", library_dlogvar, dlogvar, tol=1e-12)
else:
    print("  (this version of the library assembles them inside VAE.backward, printed above)")

small.encoder.forward(xs)
small.encoder.backward(np.concatenate([dmu, dlogvar], axis=1), input_grad=False)
for name in ("encoder.0.W", "encoder.2.b"):
    run.check(f"5d. encoder backward, {name}: the same as VAE.backward's", small.gradients()[name],
              grads[name], tol=1e-12)

# %% [markdown]
# ## The whole gradient, checked
#
# The pieces are right and they are chained as the library chains them; the last word goes to
# the whole model: `VAE.backward`'s gradient of every parameter tensor against central differences
# of the loss (a few coordinates of each), $\epsilon$ frozen, in float64, and along one random
# direction through all of them at once.

# %%
reports = check_gradients(lambda: small.loss(xs, eps=eps), small.parameters(), grads)
print(format_report(reports))
assert all(r.worst < THRESHOLD for r in reports)
rel, analytic, numeric = check_directional(lambda: small.loss(xs, eps=eps), small.parameters(), grads)
run.check("directional derivative, all parameters at once", analytic, numeric, tol=THRESHOLD)

# %% [markdown]
# ## The update: Adam
#
# The models below are trained with Adam (Kingma & Ba 2015): for a gradient $g$ at step $t$,
#
# $$
# \begin{aligned}
# m &\leftarrow \beta_1 m + (1 - \beta_1)\, g, \\
# v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2, \\
# \hat m &= m / (1 - \beta_1^t), \quad \hat v = v / (1 - \beta_2^t), \\
# \theta &\leftarrow \theta - \mathrm{lr}\, \hat m / \bigl(\sqrt{\hat v} + \epsilon_\text{adam}\bigr)
# \end{aligned}
# $$
#
# (defaults $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon_\text{adam} = 10^{-8}$).
# $m$ and $v$ start at 0, so in the first steps both are too small: after one step $m = 0.1\, g$ and
# $v = 0.001\, g^2$. The bias corrections $1 / (1 - \beta^t)$ undo exactly that shrinkage (for a
# constant $g$, $\hat m = g$ and $\hat v = g^2$ at every $t$). With them, the first step is
# $-\mathrm{lr}\, g / (|g| + \epsilon_\text{adam})$: every parameter moves by almost exactly
# $\mathrm{lr}$, whatever the size of its gradient. The library's fast form (`Adam.step`, which folds
# the corrections into two numbers per step) against that:

# %%
theta = np.array([1.0, 2.0, -3.0])
g = np.array([0.5, -1e-3, 40.0])
Adam([("theta", theta, g)], lr=0.1).step()
run.check("first Adam step = lr g / (|g| + eps)", theta - np.array([1.0, 2.0, -3.0]),
          -0.1 * g / (np.abs(g) + 1e-8), tol=1e-12)

# %% [markdown]
# ## Training four models
#
# Latent sizes 2, 5, 10 and 20. Pixels are binarized afresh for every minibatch (a draw of
# $\operatorname{Bernoulli}(\text{pixel value})$ per pixel); the held-out images are binarized once.
# The ELBO of held-out and training images is measured after every epoch.

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
# More latent dimensions give a higher bound. The training bound (dashed) is measured on training
# images, the held-out one (solid) on images the model never saw, both with the same noise after
# every epoch. A training bound that draws away above the held-out one is overfitting: the model
# fits its own training images better than other images like them. How far apart the two end up
# depends on the size of the training set and the length of training; the cell after the figure
# measures it for this run.

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
# Is the gap between the two curves at the end real? Both are averages over a finite set of images,
# and images differ from each other by several nats, so the difference of the two averages has a
# standard error of its own. Measured once more on $n$ training images and $n$ held-out images
# (each binarized once, by another draw than the curves', with 10 samples of $\epsilon$ per image):

# %%
n_eval = min(1000, data.test.shape[0])
eval_sets = {"train": heldout_images(data.train[:n_eval], "dynamic", run.seed),
             "held-out": heldout_images(data.test[:n_eval], "dynamic", run.seed)}
verdict = {}
for z_dim in latent_sizes:
    elbo_of = {name: models[z_dim].elbo(x, n_samples=10).elbo.astype(np.float64) for name, x in eval_sets.items()}
    gap = elbo_of["train"].mean() - elbo_of["held-out"].mean()
    se = np.sqrt(sum(e.var(ddof=1) / e.size for e in elbo_of.values()))
    curves = histories[z_dim][-1]["train_elbo"] - histories[z_dim][-1]["test_elbo"]
    print(f"  z = {z_dim:2d}: train - held-out = {curves:+6.2f} nats at the curves' last point; measured again: "
          f"{gap:+6.2f} +- {se:.2f} nats (n = {n_eval} images each)")
    verdict[z_dim] = "over" if gap > 3 * se else "maybe" if gap > 2 * se else "none"
group = {v: ", ".join(str(z_dim) for z_dim in latent_sizes if verdict[z_dim] == v) for v in ("over", "maybe", "none")}
if group["over"]:
    print(f"  z = {group['over']}: overfitting. The training bound is above the held-out one by more than three "
          f"standard errors: the model has begun to fit its {data.train.shape[0]} training images rather than "
          f"{data.name} in general, and more epochs would widen the gap.")
if group["maybe"]:
    print(f"  z = {group['maybe']}: the training bound is above the held-out one by two to three standard errors: "
          f"probably the start of overfitting ({epochs} passes over the same {data.train.shape[0]} images), but "
          f"not beyond doubt with {n_eval} images per set.")
if group["none"]:
    print(f"  z = {group['none']}: no overfitting measurable; the two bounds agree within two standard errors, and "
          f"which one comes out higher depends on which images (and which binarization) landed in which set.")

# %% [markdown]
# ## Figure 4: the learned 2-D manifold
#
# Left, the encoder means $\mu(x)$ of held-out images, coloured by their digit: the classes form
# regions although no label was ever seen. Right, decoder means $\mathbb{E}[x|z]$ on a grid of $z$,
# evenly spaced in probability (`plots.latent_grid`): the $i$-th of $n$ values along each axis
# ($i = 0, \dots, n - 1$) is
#
# $$
# z = \Phi^{-1}\bigl((i + \tfrac12) / n\bigr),
# $$
#
# $\Phi$ the standard normal CDF, so each image covers an equal share of the prior. The tick labels
# give $z_1$ and $z_2$ at the centres of the images above or beside them: small steps near 0, where
# the prior has most of its mass, wide ones at the edges.

# %%
model = models[2]
n_grid = 20 if min(data.image_shape) >= 16 else 12
mu, _ = model.encode(data.test)
fig, axes = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw=dict(width_ratios=[1.15, 1]))
points = axes[0].scatter(mu[:, 0], mu[:, 1], c=data.test_labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
fig.colorbar(points, ax=axes[0], ticks=range(10), label="digit")
axes[0].set(title="encoder means mu(x) of held-out images", xlabel="z_1", ylabel="z_2")
z_grid = latent_grid(n_grid)                                    # row-major, top row = largest z_2
grid = model.decode(z_grid.astype(model.dtype))
axes[1].imshow(tile(grid, data.image_shape, n_grid), cmap="gray", vmin=0, vmax=1)
(h, w), labelled = data.image_shape, np.unique(np.linspace(0, n_grid - 1, 5).round().astype(int))
axes[1].set_xticks(labelled * (w + 1) + (w - 1) / 2, [f"{z_grid[i, 0]:.2f}" for i in labelled])
axes[1].set_yticks(labelled * (h + 1) + (h - 1) / 2, [f"{z_grid[i * n_grid, 1]:.2f}" for i in labelled])
axes[1].tick_params(length=0)
axes[1].spines[:].set_visible(False)
axes[1].set(xlabel="z_1 = Phi^-1((i + 1/2) / n)", ylabel="z_2 = Phi^-1((j + 1/2) / n)",
            title=f"decoder means on a {n_grid} x {n_grid} grid of z")
fig.tight_layout()
run.save(fig, "manifold")

# %% [markdown]
# ## Figure 5: samples from the prior
#
# Decoder means $\mathbb{E}[x|z]$ for $z \sim \mathcal{N}(0, I)$, 100 draws per model.

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
# * The whole algorithm is a minibatch gradient step on the mean ELBO, one $\epsilon$ per image.
# * Its backward is five short steps: $-1/(SB)$ for every log-likelihood, the decoder's backward to
#   $z$, the reparameterization's (summed over samples), plus the KL's (over $B$), then the encoder's
#   backward. Each can be checked alone against central differences, in float64, with $\epsilon$
#   frozen.
# * Held-out ELBO, not training ELBO, says how good a model is; a gap between the two means
#   something only when it is larger than its standard error.
# * A 2-D latent space is easy to look at; more dimensions fit better and sample better.
# * The ELBO is only a bound; lesson 9 estimates how far it is from $\log p(x)$.
#
# ## Exercises
#
# The code exercises are graded by `scratchvae exercises`. Start a workbook once (it writes one
# file per topic, each function with its signature and docstring and the body left to you):
#
#     scratchvae exercises start my-workbook
#     scratchvae exercises check my-workbook bernoulli_log_likelihood     # one exercise, or several names
#
# (or, from a notebook, `from scratchvae.exercises import check; check("bernoulli_log_likelihood")`).
# The grader runs your function in place of the library's, compares it with central differences
# and with the library on random inputs in float64, and when your output matches a classic
# mistake it names it. Worked answers to the questions: `lessons/answers/07_vae_mnist.md`;
# try first.
#
# 1. **Code: the Bernoulli likelihood** (`bernoulli_log_likelihood`, `bernoulli_log_likelihood_grad`,
#    workbook `07_vae.py`). Write $\log p(x|z) = \sum_d [x_d l_d - \operatorname{softplus}(l_d)]$ from
#    the logits and its gradient $x - \operatorname{sigmoid}(l)$. Then question: why does the library
#    take logits and never probabilities? Try $x \log p + (1 - x) \log(1 - p)$ with
#    $p = \operatorname{sigmoid}(l)$ at $l = 40$ in float32.
# 2. **Code: the assembly step** (`encoder_output_grad`, workbook `07_vae.py`): from `dz` $(S, B, Z)$,
#    $\mu$, $\log\sigma^2$ and $\epsilon$ to (`dmu`, `dlogvar`), steps 3 to 5 above. Then question: the
#    reparameterization's gradient is *summed* over the $S$ samples, while the KL's is divided by $B$
#    and not by $SB$. Why each?
# 3. **Code: the optimizers** (`sgd_momentum_update`, `adagrad_update`, `adam_update`, workbook
#    `07_optimizers.py`), each the textbook update of one tensor. Then question: for a constant
#    gradient $g$, how far does Adam *without* its bias corrections move a parameter at step 1, and
#    at step 10, in units of $\mathrm{lr}$?
# 4. **Question: $\beta = 4$.** A $\beta$-VAE minimizes $-(\text{rec} - \beta\, \text{kl})$. Trained on
#    the 8 x 8 digits like the $z = 20$ model of fast mode, $\beta = 1$ keeps about 5 nats of kl;
#    $\beta = 4$ ends with kl near 0, a decoder that ignores $z$. Why does the KL collapse, and why on
#    these images in particular? (Hint: compare the rec the $z = 20$ model gains over a decoder that
#    only knows each pixel's frequency with the kl it pays for it.)
