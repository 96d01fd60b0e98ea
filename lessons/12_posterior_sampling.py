# %% [markdown]
# # Lesson 12: sampling the posterior for real — HMC, the marginal likelihood, Monte Carlo EM
#
# Full mode takes a few minutes on 2 CPU cores (MNIST); fast mode runs on scikit-learn's 8 x 8
# digits in seconds.
#
# The posterior $p(z|x) = p(x|z)\, p(z) / p(x)$ is usually called intractable (note 002 of the
# lecture notes does), because its normalizer $p(x) = \int p(x|z)\, p(z)\, dz$ is an integral over
# every $z$ with no closed form for a neural decoder. That is why the VAE fits an approximation
# $q(z|x)$. But $p(z|x)$ is known *up to* the constant $p(x)$, and so is its gradient in $z$,
#
# $$
# \nabla_z \log p(z|x) = \nabla_z \log p(x, z) = \nabla_z \log p(x|z) - z
# \qquad \text{(prior } \mathcal{N}(0, I)\text{)},
# $$
#
# and the first term is what the decoder's backward already computes: the VAE sends exactly this
# gradient on to the encoder. Hybrid Monte Carlo (`scratchvae.models.hmc`) uses it to move $z$ like
# a ball rolling on the surface $-\log p(x, z)$ with a random kick $p \sim \mathcal{N}(0, I)$: leapfrog
# steps of size $e$, with $g = \nabla_z \log p(x, z)$ at the current $z$,
#
# $$
# p \leftarrow p + \tfrac{e}{2}\, g; \qquad z \leftarrow z + e\, p; \qquad p \leftarrow p + \tfrac{e}{2}\, g,
# $$
#
# then a Metropolis test on the energy $H = -\log p(x, z) + \tfrac12 |p|^2$ that accepts with
# probability $\min\bigl(1, \exp(H_\text{old} - H_\text{new})\bigr)$. The leapfrog is reversible and
# keeps volume, so the test makes the chain sample $p(z|x)$ exactly, however coarse the step; the
# step only sets how often it accepts.
#
# This lesson samples a 2-D posterior where the exact one can be drawn on a grid, measures
# $\log p(x)$ with the estimator of Kingma & Welling (2013, appendix D) against $L_k$ and the ELBO,
# and trains a decoder with no encoder at all by Monte Carlo EM (appendix E).

# %%
import time

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np

from _lesson import Lesson
from scratchvae import VAE, Adagrad, Adam
from scratchvae.distributions import logsumexp
from scratchvae.data.datasets import binarize
from scratchvae.models import hmc
from scratchvae.models.mcem import MCEM
from scratchvae.training.evaluate import evaluate_elbo, importance_sampled_bound
from scratchvae.training.marginal_likelihood import estimate_log_marginal

run = Lesson("12_posterior_sampling")
data = run.load("mnist")
print(f"  {data.split}")
rng = np.random.default_rng(run.seed)
n_train = run.pick(fast=1000, full=9000)
x_train = binarize(data.train[:n_train], rng).astype(np.float32)
x_test = binarize(data.test[:run.pick(fast=100, full=500)], rng).astype(np.float32)

# %% [markdown]
# ## A model with a 2-D latent space
#
# A VAE as in lesson 7 with $z$ in 2-D, so that $p(x, z)$ can be evaluated on a grid of $z$ and the
# posterior normalized by brute force: that is the answer HMC must reproduce.

# %%
hidden, epochs = run.pick(fast=(64, 40), full=(200, 30))
model = VAE(x_train.shape[1], z_dim=2, hidden_dims=(hidden,), activation="tanh", seed=run.seed)
opt = Adam(model.named_parameters(), lr=3e-3)
start = time.perf_counter()
for epoch in range(epochs):
    for idx in np.array_split(rng.permutation(n_train), n_train // 100):
        model.loss_and_grads(x_train[idx])
        opt.step()
print(f"  trained {epochs} epochs in {time.perf_counter() - start:.1f} s; held-out ELBO "
      f"{evaluate_elbo(model, x_test, n_samples=10).elbo:.2f}")

# %% [markdown]
# ## HMC beside the exact posterior
#
# One image $x$. On a grid of $z$ with spacings $\Delta z_1$ and $\Delta z_2$,
# $\log p(z|x) = \log p(x, z) - \log p(x)$ with
# $\log p(x) = \operatorname{logsumexp}_{z'} \log p(x, z') + \log(\Delta z_1 \Delta z_2)$ over the grid
# (the sum times the cell area).
# HMC runs 2000 independent chains for the same $x$ (1000 in fast mode; one row each, all in one
# array), 10 leapfrog steps per transition, the step tuned during burn-in towards 90 % acceptance.
# The last state of each chain is one sample, independent of the others: their mean must match the
# grid's posterior mean within its standard error. For the picture each chain gives 5 samples (its
# last 5 states, which are correlated within a chain but each distributed as $p(z|x)$).

# %%
x0 = x_test[:1]
u = np.linspace(-4, 4, 241)
Z1, Z2 = np.meshgrid(u, u)
grid = np.stack([Z1.ravel(), Z2.ravel()], axis=1).astype(np.float32)
target_grid = hmc.decoder_log_joint(model.decoder, np.repeat(x0, grid.shape[0], 0))
log_joint = target_grid(grid)[0].astype(np.float64)
log_dz = 2 * np.log(u[1] - u[0])
log_px_grid = float(logsumexp(log_joint) + log_dz)
post = np.exp(log_joint - log_px_grid + log_dz)                 # probability of each grid cell
post_mean = post @ grid.astype(np.float64)

n_chains = run.pick(fast=1000, full=2000)
x_rep = np.repeat(x0, n_chains, 0)
target = hmc.decoder_log_joint(model.decoder, x_rep)
mu0, _ = model.encode(x0)
out = hmc.sample(target, np.repeat(mu0, n_chains, 0), 5, n_burnin=run.pick(fast=60, full=150),
                 n_leapfrog=10, step_size=0.05, target_accept=0.9, rng=np.random.default_rng(1))
z = out["z"][-1].astype(np.float64)                     # the last state of each chain
z_all = out["z"].reshape(-1, 2).astype(np.float64)      # all 5 states of each chain, for the picture
se = z.std(0, ddof=1) / np.sqrt(n_chains)
print(f"  acceptance {out['accept_rate']:.2f}, tuned step {np.median(out['step_size']):.3f}")
print(f"  posterior mean: HMC {z.mean(0).round(4)} +- {se.round(4)}, grid {post_mean.round(4)}")
assert (np.abs(z.mean(0) - post_mean) < 4.5 * se).all(), "HMC's mean is off the exact posterior's"
run.check("HMC's posterior mean against the grid's (Monte Carlo, so loose)", z.mean(0), post_mean,
          tol=run.pick(fast=0.2, full=0.1))

# %% [markdown]
# The picture: (a) the exact posterior density on the grid; (b) a kernel density estimate of the
# HMC samples (`scipy.stats.gaussian_kde`), on the same colour scale, with the exact density's
# contours drawn over it; (c) both marginals, exact curves against histograms of the samples.

# %%
from scipy.stats import gaussian_kde

density = post.reshape(Z1.shape) / np.exp(log_dz)           # p(z|x) per unit area
inside = density > density.max() * np.exp(-8.0)            # where the posterior has its mass ("4 sigma")
lo = np.maximum(np.array([Z1[inside].min(), Z2[inside].min()]) - 0.2, u[0])     # within the grid
hi = np.minimum(np.array([Z1[inside].max(), Z2[inside].max()]) + 0.2, u[-1])
v1, v2 = np.linspace(lo[0], hi[0], 90), np.linspace(lo[1], hi[1], 90)
K1, K2 = np.meshgrid(v1, v2)
kde = gaussian_kde(z_all.T)(np.stack([K1.ravel(), K2.ravel()])).reshape(K1.shape)
levels = np.linspace(0, density.max(), 16)
lines = levels[2::3]
ticks = [t for t in MaxNLocator(5).tick_values(0, levels[-1]) if t <= levels[-1]]

fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw=dict(width_ratios=[1.25, 1.25, 1]))
exact_fill = axes[0].contourf(Z1, Z2, density, levels=levels, cmap="viridis", extend="max")
fig.colorbar(exact_fill, ax=axes[0], label="density of z", ticks=ticks)
axes[0].set_title(f"(a) exact p(z|x) on a grid, log p(x) = {log_px_grid:.2f}", fontsize=10)
filled = axes[1].contourf(K1, K2, kde, levels=levels, cmap="viridis", extend="max")
axes[1].contour(Z1, Z2, density, levels=lines, colors="w", linewidths=0.8)
axes[1].plot([], [], color="w", label="exact p(z|x), contours")
axes[1].legend(fontsize=8, facecolor="0.3", labelcolor="w", loc="upper right")
fig.colorbar(filled, ax=axes[1], label="density of z (same scale as (a))", ticks=ticks)
axes[1].set_title(f"(b) kernel density of {len(z_all)} HMC samples", fontsize=10)
for ax in axes[:2]:
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="z_1", ylabel="z_2")
    ax.set_aspect("equal")
du = u[1] - u[0]
for j, (name, color) in enumerate((("z_1", "C0"), ("z_2", "C1"))):
    marginal = post.reshape(Z1.shape).sum(axis=j) / du          # axis 0 sums over z_2 -> p(z_1|x)
    axes[2].plot(u, marginal, color=color, label=f"p({name}|x), exact")
    axes[2].hist(z_all[:, j], bins=40, density=True, histtype="step", color=color, ls="--",
                 label=f"{name}, HMC samples")
axes[2].set(xlim=(lo.min(), hi.max()), xlabel="z", ylabel="density")
axes[2].set_title("(c) the marginals", fontsize=10)
axes[2].legend(fontsize=8)
fig.tight_layout()
run.save(fig, "hmc_vs_grid")

# %% [markdown]
# ## The marginal likelihood from posterior samples (appendix D)
#
# For every $x$: sample $L$ values from the posterior with HMC, fit a density $q(z)$ to them, sample
# $L$ new values and average $q(z) / p(x, z)$, whose expectation under $p(z|x)$ is $1 / p(x)$. Why a
# **Gaussian** $q$: the ratio's variance contains
#
# $$
# \mathbb{E}_p\bigl[q(z)^2 / p(z|x)^2\bigr] = \int \frac{q(z)^2}{p(z|x)}\, dz,
# $$
#
# finite only when $q(z)^2 / p(z|x)$ is integrable, which asks $q$ to fall off faster than
# $\sqrt{p(z|x)}$ in the tails. A Gaussian fitted to the samples has the posterior's spread and
# Gaussian tails, light enough for the posteriors of these decoders; a heavy-tailed $q$ (a Student-t,
# a wide kernel estimate) can make the variance infinite, and the estimate then jumps from run to run.
#
# Three numbers for the same model on the same images, each in log space:
#
# $$
# \mathrm{ELBO} \le L_k \le \log p(x), \qquad \text{the estimate} \approx \log p(x), \qquad
# \text{and (2-D) the grid's exact } \log p(x).
# $$

# %%
n_eval = run.pick(fast=30, full=100)
xe = x_test[:n_eval]
start = time.perf_counter()
est = estimate_log_marginal(model.decoder, 2, xe, n_samples=50, seed=run.seed)
t_est = time.perf_counter() - start
lk = importance_sampled_bound(model, xe, k=run.pick(fast=500, full=5000), seed=run.seed)
elbo = evaluate_elbo(model, xe, n_samples=100).elbo
exact = []
for i in range(n_eval):
    target_all = hmc.decoder_log_joint(model.decoder, np.repeat(xe[i:i + 1], grid.shape[0], 0))
    exact.append(float(logsumexp(target_all(grid)[0].astype(np.float64)) + log_dz))
exact = np.array(exact)
print(f"  on {n_eval} held-out images: ELBO {elbo:.3f}, L_k {lk.mean():.3f}, "
      f"appendix-D estimate {est['log_px'].mean():.3f} ({t_est:.1f} s), grid {exact.mean():.3f}")
run.check("appendix-D estimate against the grid's log p(x), mean over images",
          est["log_px"].mean(), exact.mean(), tol=run.pick(fast=5e-3, full=2e-3))
assert elbo < lk.mean() < exact.mean() + 0.1, "ELBO <= L_k <= log p(x) should hold"

fig, ax = plt.subplots(figsize=(6, 4.5))
order = np.argsort(exact)
ax.plot(exact[order], "k-", label="exact (grid)")
ax.plot(est["log_px"][order], "o", ms=4, label="appendix-D estimate (HMC)")
ax.plot(lk[order], "x", ms=4, label="L_k (encoder)")
ax.set_xlabel("image (sorted by log p(x))")
ax.set_ylabel("nats")
ax.set_title(f"log p(x): mean ELBO {elbo:.1f}, L_k {lk.mean():.1f}, estimate {est['log_px'].mean():.1f}")
ax.legend()
run.save(fig, "estimator")

# %% [markdown]
# ## Monte Carlo EM: a decoder without an encoder (appendix E)
#
# EM (lesson 2) alternates the posterior under the current weights with a step on the weights that
# raises $\mathbb{E}_{p(z|x)}[\log p(x, z)]$. With no closed-form posterior, Monte Carlo EM keeps one
# $z$ per training image and, for every minibatch, moves those $z$ by one HMC transition (10 leapfrog
# steps, the step size tuned to 90 % acceptance), then takes 5 Adagrad steps on the complete-data
# objective
#
# $$
# J = \frac1B \sum_b \log p(x_b, z_b) - \frac{\lambda}{2} \lVert\theta\rVert^2
# $$
#
# with $z$ held fixed (the last term is the weight prior, $\lambda$ = `weight_decay`). Its progress is
# measured with the same estimator.

# %%
mcem = MCEM(x_train.shape[1], n_train, z_dim=2, hidden_dims=(hidden,), weight_decay=1.0 / n_train,
            seed=run.seed)
opt = Adagrad(mcem.named_parameters(), lr=run.pick(fast=0.05, full=0.02))
history = []
steps = run.pick(fast=300, full=3000)
start = time.perf_counter()
for step in range(1, steps + 1):
    idx = rng.permutation(n_train)[:100]
    J = mcem.train_step(x_train[idx], idx, opt)
    if step % (steps // 6) == 0:
        r = estimate_log_marginal(mcem.decoder, 2, x_test[:n_eval], n_samples=20, n_burnin=50,
                                  seed=run.seed)
        history.append((step * 100, J, r["log_px"].mean()))
        print(f"  {step * 100:>8} samples: J {J:8.2f}, estimated held-out log p(x) {r['log_px'].mean():8.2f}, "
              f"HMC step {mcem.step_size:.3f}, acceptance {mcem.accept_rate:.2f}")
print(f"  {steps} MCEM steps in {time.perf_counter() - start:.1f} s")
assert history[-1][2] > history[0][2], "MCEM should raise the marginal likelihood"

fig, ax = plt.subplots(figsize=(6, 4))
s = [h[0] for h in history]
ax.plot(s, [h[1] for h in history], "o-", label="complete-data objective J (minibatch)")
ax.plot(s, [h[2] for h in history], "s-", label="estimated held-out log p(x)")
ax.set_xlabel("training samples")
ax.set_ylabel("nats per image")
ax.set_title("Monte Carlo EM on the digits" if run.fast else "Monte Carlo EM on MNIST")
ax.legend()
run.save(fig, "mcem")

# %% [markdown]
# ## What to remember
#
# * The posterior the ELBO only approximates can be sampled exactly (up to Monte Carlo error) with
#   the gradient the VAE already has: HMC needs $\log p(x, z)$ and its gradient, never $p(x)$.
# * That makes $\log p(x)$ measurable, so the gap $\log p(x) - \mathrm{ELBO} = \mathrm{KL}(q \,\|\, p(z|x))$
#   becomes a number.
# * The same sampler can replace the encoder altogether (MCEM), at the price of several decoder
#   passes per image per step, which is why AEVB's amortized encoder wins on large data sets (the
#   paper's Figure 3; `scratchvae reproduce figure3` runs that comparison).
#
# ## Exercises
#
# Start a workbook once with `scratchvae exercises start my-workbook` and grade an exercise with
# `scratchvae exercises check my-workbook NAME` (lesson 7 says more). Worked answers to the
# questions: `lessons/answers/12_posterior_sampling.md`; try first.
#
# 1. **Code: the leapfrog** (`leapfrog`, workbook `12_hmc.py`): $n$ steps of size $e$ from $(z, p)$
#    for a target that returns ($\log p(x, z)$, its gradient in $z$): a half step of $p$, then
#    alternately a full step of $z$ and of $p$, and a closing half step of $p$. The grader checks that
#    it is reversible (negate $p$, run it again, and you are back) and that it matches the library.
# 2. **Code: the acceptance probability** (`hmc_accept_prob`, workbook `12_hmc.py`):
#    $\min\bigl(1, \exp(H_\text{old} - H_\text{new})\bigr)$ with $H = -\log p(x, z) + \tfrac12 |p|^2$,
#    one value per chain, without overflow when $H_\text{new}$ is far below $H_\text{old}$.
# 3. **Question: no $p(x)$.** The acceptance test compares $p(z_\text{new}|x)$ with $p(z_\text{old}|x)$,
#    yet the code only ever evaluates $\log p(x, z)$. Why is that enough? Which other method of this
#    course has the same property (hint: lesson 9's weights do not)?
# 4. **Question: the step size.** The energy error $H_\text{new} - H_\text{old}$ of a leapfrog
#    trajectory of fixed length $n e$ shrinks like $e^2$. Check it on the 2-D posterior above (or on
#    $\mathcal{N}(0, I)$): halve $e$, double $n$, and compare the mean $|H_\text{new} - H_\text{old}|$
#    over many chains. What does that say about the acceptance rate as the step shrinks, and about
#    the cost per sample?
