# %% [markdown]
# # Lesson 9: how good is the model? L_k against the ELBO
#
# Full mode takes about 2.5 minutes on 2 CPU cores (two MNIST models, then 5,000 importance
# samples per image); fast mode runs on scikit-learn's 8 x 8 digits in seconds.
#
# The ELBO is a lower bound on log p(x); how loose is it? Draw k samples z_1..z_k from the
# encoder's q(z|x) and average the importance weights p(x, z_i) / q(z_i|x) (Burda et al. 2016):
#
#     L_k(x) = E[ log 1/k sum_{i=1}^k p(x, z_i) / q(z_i|x) ],   z_i ~ q(z|x)
#
# L_1 is the ELBO, L_k <= L_{k+1} <= log p(x), and L_k -> log p(x) as k grows, because the
# average of the weights is an unbiased estimate of p(x) (Jensen's gap shrinks with its variance).
# The distance the ELBO leaves is exactly the one from lesson 5,
#
#     log p(x) - elbo = KL(q(z|x) || p(z|x)),
#
# how far the encoder's Gaussian is from the true posterior. `scratchvae.training.evaluate` computes L_k
# (`importance_sampled_bound`, log-mean-exp in chunks) and the ELBO (`evaluate_elbo`).
#
# With a 2-D latent space log p(x) = log ∫ p(x|z) p(z) dz can also be computed on a grid of z,
# and so can KL(q || p(z|x)): the limit L_k approaches is then known, and every identity checked.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from _lesson import Lesson
from scratchvae import VAE, Adam
from scratchvae.distributions import (bernoulli_log_likelihood, gaussian_log_density, kl_standard_normal,
                                      logsumexp, standard_normal_log_density)
from scratchvae.training.evaluate import evaluate_elbo, importance_sampled_bound
from scratchvae.training.trainer import Trainer, heldout_images

run = Lesson("09_importance_sampling")
data = run.load("mnist")
print(f"  {data.split}")
hidden, epochs = run.pick(fast=(128, 60), full=(500, 50))
ks = run.pick(fast=[1, 5, 50, 500], full=[1, 5, 50, 500, 5000])
n_images = run.pick(fast=20, full=100)           # held-out images for L_k
n_exact = run.pick(fast=20, full=30)             # of those, with log p(x) on a grid (2-D model)

# %% [markdown]
# ## Two models
#
# A 2-D latent space, where log p(x) is computable, and a 20-D one, like the paper's best. Both as in
# lesson 7; the held-out images are binarized once, so every bound below is for the same x.

# %%
models = {}
for z_dim in (2, 20):
    model = VAE(data.train.shape[1], z_dim=z_dim, hidden_dims=(hidden,), likelihood="bernoulli",
                activation="tanh", seed=run.seed)
    trainer = Trainer(model, Adam(model.named_parameters(), lr=run.pick(fast=3e-3, full=1e-3)),
                      data.train, data.test, batch_size=100, binarization="dynamic", seed=run.seed,
                      progress=False, eval_size=1000)
    start = time.perf_counter()
    last = trainer.fit(epochs=epochs)[-1]
    models[z_dim] = model
    print(f"  z = {z_dim:2d}: {epochs} epochs in {time.perf_counter() - start:5.1f} s, held-out ELBO "
          f"{last['test_elbo']:.2f}")
x = heldout_images(data.test, "dynamic", run.seed)[:n_images]

# %% [markdown]
# ## L_k for growing k

# %%
bounds = {}
for z_dim, model in models.items():
    start = time.perf_counter()
    bounds[z_dim] = {k: importance_sampled_bound(model, x, k=k, seed=run.seed) for k in ks}
    elbo = evaluate_elbo(model, x, n_samples=1000, seed=run.seed).elbo
    print(f"  z = {z_dim:2d} ({time.perf_counter() - start:.1f} s): ELBO {elbo:9.3f}; " +
          ", ".join(f"L_{k} {v.mean():.3f}" for k, v in bounds[z_dim].items()))
    run.check(f"z = {z_dim}: L_1 vs the ELBO (both Monte Carlo)", bounds[z_dim][1].mean(), elbo,
              tol=run.pick(fast=5e-2, full=1e-2))
    means = [v.mean() for v in bounds[z_dim].values()]
    assert all(b >= a - 0.05 for a, b in zip(means, means[1:])), "L_k should grow with k"

# %% [markdown]
# ## The exact answer for the 2-D model
#
# For each image, first a coarse look over z in [-8, 8]^2 (spacing 0.1) finds where
# log p(x, z) comes within 30 nats of its maximum (the posterior can reach well beyond the encoder's
# Gaussian); then a fine grid covers that box and 8 encoder standard deviations around mu (q can
# reach where the posterior does not), with at least 6 points per encoder standard deviation. On it:
#
#     log p(x)         = logsumexp_z [log p(x|z) + log p(z)] + log dz_1 dz_2
#     elbo             = sum_z q(z|x) log p(x|z) dz_1 dz_2 - kl          (kl in closed form)
#     KL(q || p(z|x))  = sum_z q(z|x) [log q(z|x) - log p(z|x)] dz_1 dz_2
#
# checked: the posterior mass on the fine grid's border is negligible, q sums to 1 on it, and
# log p(x) = elbo + KL.

# %%
model = models[2]


def logits_on(z):
    """The decoder's logits for every row of z."""
    return model.decoder.forward(z.astype(model.dtype))


c = np.linspace(-8.0, 8.0, 161)
coarse = np.stack(np.meshgrid(c, c), axis=-1).reshape(-1, 2)
coarse_logits = logits_on(coarse).copy()                     # one decoder pass serves every image
exact = {"log_px": [], "elbo": [], "kl_post": [], "border": [], "points": [], "q_mass": []}
posterior_example = None
start = time.perf_counter()
for i in range(n_exact):
    x_row = x[i:i + 1]
    log_joint_coarse = (bernoulli_log_likelihood(x_row, coarse_logits).astype(np.float64)
                        + standard_normal_log_density(coarse))
    near = coarse[log_joint_coarse > log_joint_coarse.max() - 30.0]
    mu, logvar = (a.astype(np.float64) for a in model.encode(x_row))
    sigma = np.exp(logvar[0] / 2)
    lo = np.minimum(near.min(axis=0) - 0.1, mu[0] - 8 * sigma)     # the posterior's region and q's
    hi = np.maximum(near.max(axis=0) + 0.1, mu[0] + 8 * sigma)
    n = np.clip(np.ceil((hi - lo) / (sigma / 6)).astype(int) + 1, 61, 401)
    u1, u2 = np.linspace(lo[0], hi[0], n[0]), np.linspace(lo[1], hi[1], n[1])
    Z1, Z2 = np.meshgrid(u1, u2)
    z = np.stack([Z1.ravel(), Z2.ravel()], axis=1)
    on_border = np.zeros(Z1.shape, dtype=bool)
    on_border[[0, -1], :] = on_border[:, [0, -1]] = True
    log_dz = float(np.log((u1[1] - u1[0]) * (u2[1] - u2[0])))
    log_lik = bernoulli_log_likelihood(x_row, logits_on(z)).astype(np.float64)
    log_joint = log_lik + standard_normal_log_density(z)
    log_px = float(logsumexp(log_joint) + log_dz)
    log_post = log_joint - log_px
    log_q = gaussian_log_density(z, mu, logvar)
    q_dz = np.exp(log_q + log_dz)
    exact["log_px"].append(log_px)
    exact["elbo"].append(float((q_dz * log_lik).sum() - kl_standard_normal(mu, logvar)[0]))
    exact["kl_post"].append(float((q_dz * (log_q - log_post)).sum()))
    exact["border"].append(float(np.exp(logsumexp(log_post[on_border.ravel()]) + log_dz)))
    exact["points"].append(z.shape[0])
    exact["q_mass"].append(float(q_dz.sum()))
    if i == 0:
        posterior_example = (Z1, Z2, log_post.reshape(Z1.shape), log_q.reshape(Z1.shape))
exact = {k: np.array(v) for k, v in exact.items()}
print(f"  grid integrals for {n_exact} images in {time.perf_counter() - start:.1f} s, "
      f"{int(exact['points'].mean())} points per image on average; largest posterior mass on a grid "
      f"border: {exact['border'].max():.1e}")
assert exact["border"].max() < 1e-6
run.check("q(z|x) sums to 1 on each grid", exact["q_mass"], np.ones(n_exact), tol=1e-9)
run.check("log p(x) = elbo + KL(q || p(z|x)), every image", exact["elbo"] + exact["kl_post"], exact["log_px"],
          tol=1e-9)
L_max = bounds[2][ks[-1]][:n_exact]
run.check(f"L_{ks[-1]} vs log p(x) on the grid (mean over {n_exact} images)", L_max.mean(),
          exact["log_px"].mean(), tol=run.pick(fast=1e-2, full=1e-3))
print(f"  mean gap log p(x) - elbo = KL(q || p(z|x)) = {exact['kl_post'].mean():.3f} nats; "
      f"L_{ks[-1]} closes {(L_max.mean() - exact['elbo'].mean()) / exact['kl_post'].mean():.0%} of it")

# %% [markdown]
# ## The picture
#
# Images differ from each other by far more than L_k differs between values of k, so the plots show
# the paired difference L_k(x) - elbo(x), averaged over images, with its standard error. For the
# 2-D model elbo(x) and the gap KL(q || p(z|x)) come from the grid; for the 20-D model elbo(x) is
# a 1,000-sample average per image. Right: the true posterior of one image against the encoder's
# Gaussian, contours at the same heights (1, 2 and 3 standard deviations for a Gaussian).

# %%
elbo_20 = np.concatenate([models[20].elbo(x[i:i + 10], n_samples=1000).elbo.astype(np.float64)
                          for i in range(0, n_images, 10)])
fig, axes = plt.subplots(1, 3, figsize=(17, 5))
for ax, z_dim, elbo_per_image in [(axes[0], 2, exact["elbo"]), (axes[1], 20, elbo_20)]:
    n = len(elbo_per_image)
    gain = np.array([bounds[z_dim][k][:n] - elbo_per_image for k in ks])
    ax.errorbar(ks, gain.mean(axis=1), yerr=gain.std(axis=1) / np.sqrt(n), fmt="o-", color="C0",
                capsize=3, label="L_k - elbo (mean over images)")
    ax.axhline(0.0, color="C3", ls="--", label="the ELBO")
    if z_dim == 2:
        ax.axhline(exact["kl_post"].mean(), color="k",
                   label="log p(x) - elbo = KL(q || p(z|x)), on a grid")
    bottom, top = ax.get_ylim()
    ax.set_ylim(min(bottom, -0.08 * top), top)                       # keep the ELBO's line in view
    ax.set(xscale="log", xlabel="k (importance samples per image)", ylabel="nats per image above the ELBO",
           title=f"({'ab'[z_dim == 20]}) {z_dim}-D latent space, {n} held-out images")
    ax.legend(fontsize=8)

Z1, Z2, log_post, log_q = posterior_example
post, qd = np.exp(log_post), np.exp(log_q)
heights = np.exp(-0.5 * np.array([9.0, 4.0, 1.0]))
axes[2].contourf(Z1, Z2, post, levels=20, cmap="Greys")
axes[2].contour(Z1, Z2, post, levels=post.max() * heights, colors="k", linewidths=1.2)
axes[2].contour(Z1, Z2, qd, levels=qd.max() * heights, colors="C3", linewidths=1.2)
axes[2].plot([], [], color="k", label="p(z|x), the true posterior")
axes[2].plot([], [], color="C3", label="q(z|x), the encoder")
inside = (post > post.max() * np.exp(-8.0)) | (qd > qd.max() * np.exp(-8.0))    # 4 "sigma" of either
pad = 0.15 * np.array([np.ptp(Z1[inside]), np.ptp(Z2[inside])])
axes[2].set(xlim=(Z1[inside].min() - pad[0], Z1[inside].max() + pad[0]),
            ylim=(Z2[inside].min() - pad[1], Z2[inside].max() + pad[1]),
            title="(c) one image: posterior and encoder", xlabel="z_1", ylabel="z_2")
axes[2].legend(fontsize=8)
fig.tight_layout()
run.save(fig, "lk_vs_k")

# %% [markdown]
# ## What to remember
#
# * The ELBO understates log p(x) by KL(q(z|x) || p(z|x)); L_k closes the gap as k grows.
# * Report held-out log-likelihoods as L_k with large k (5,000 is customary) and say so.
# * The gap is the price of an encoder that proposes one Gaussian per image; a posterior that is
#   skewed or wider than q leaves it open.
