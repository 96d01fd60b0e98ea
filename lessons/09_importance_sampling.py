# %% [markdown]
# # Lesson 9: how good is the model? $L_k$ against the ELBO
#
# Full mode takes about 3.5 minutes on 2 CPU cores (two MNIST models, then up to 5,000 importance
# samples per image, three times over); fast mode runs on scikit-learn's 8 x 8 digits in seconds.
#
# The ELBO is a lower bound on $\log p(x)$; how loose is it? Draw $k$ samples $z_1, \dots, z_k$ from
# the encoder's $q(z|x)$ and average the importance weights $p(x, z_i) / q(z_i|x)$ (Burda et al. 2016):
#
# $$
# L_k(x) = \mathbb{E}\Bigl[\log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i|x)}\Bigr],
# \qquad z_i \sim q(z|x).
# $$
#
# $L_1$ is the ELBO, $L_k \le L_{k+1} \le \log p(x)$, and $L_k \to \log p(x)$ as $k$ grows, because the
# average of the weights is an unbiased estimate of $p(x)$ (Jensen's gap shrinks with its variance).
# These are statements about the expectation $\mathbb{E}[\dots]$. What a program computes is one
# *estimate* of each $L_k$: the log of the average of $k$ weights for one draw of $z_1, \dots, z_k$.
# An estimate is random; it need not obey $L_k \le L_{k+1}$, and it can even land above $\log p(x)$.
# This lesson shows how far the estimates spread, so that a difference can be told apart from noise.
# The distance the ELBO leaves is exactly the one from lesson 5,
#
# $$
# \log p(x) - \mathrm{ELBO} = \mathrm{KL}\bigl(q(z|x) \,\|\, p(z|x)\bigr),
# $$
#
# how far the encoder's Gaussian is from the true posterior. `scratchvae.training.evaluate` computes
# $L_k$ (`importance_sampled_bound`, log-mean-exp in chunks) and the ELBO (`evaluate_elbo`).
#
# With a 2-D latent space $\log p(x) = \log \int p(x|z)\, p(z)\, dz$ can also be computed on a grid
# of $z$, and so can $\mathrm{KL}(q \,\|\, p(z|x))$: the limit $L_k$ approaches is then known, and
# every identity checked.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from _lesson import Lesson
from scratchvae import VAE, Adam
from scratchvae.distributions import (bernoulli_log_likelihood, gaussian_log_density, kl_standard_normal,
                                      log_mean_exp, logsumexp, reparameterize, standard_normal_log_density)
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
# A 2-D latent space, where $\log p(x)$ is computable, and a 20-D one, like the paper's best. Both as
# in lesson 7; the held-out images are binarized once, so every bound below is for the same $x$.

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
# ## One estimate by hand
#
# For one image: $k$ draws $z_i = \mu + \exp(\tfrac12 \log\sigma^2) \odot \epsilon_i$ from $q(z|x)$,
# the log weights
#
# $$
# \log w_i = \log p(x|z_i) + \log p(z_i) - \log q(z_i|x),
# $$
#
# and the estimate $\log \bigl(\frac1k \sum_i w_i\bigr)$. The weights themselves are tiny numbers
# ($e^{-25}$ for a digit here, $e^{-100}$ and less for an MNIST image), so the average is taken in
# log space: `log_mean_exp(a)` computes
#
# $$
# \log \Bigl(\frac1k \sum_i \exp(a_i)\Bigr) = m + \log \Bigl(\frac1k \sum_i \exp(a_i - m)\Bigr),
# \qquad m = \max_i a_i,
# $$
#
# as logsumexp in lesson 1. Shifting every log weight by $-1000$ nats shows why: the naive formula
# underflows to $\log 0 = -\infty$, `log_mean_exp` just shifts too.

# %%
model = models[2]
k_hand = ks[-1]
x_one = x[:1]
mu, logvar = model.encode(x_one)
eps = np.random.default_rng(run.seed).standard_normal((k_hand, 1, 2)).astype(model.dtype)
z = reparameterize(mu, logvar, eps)[:, 0]                                  # (k, 2)
log_w = (bernoulli_log_likelihood(x_one, model.decoder.forward(z)).astype(np.float64)
         + standard_normal_log_density(z.astype(np.float64))
         - gaussian_log_density(z.astype(np.float64), mu.astype(np.float64), logvar.astype(np.float64)))
print(f"  one image, k = {k_hand}: log weights from {log_w.min():.2f} to {log_w.max():.2f}; "
      f"estimate of L_k = log_mean_exp = {log_mean_exp(log_w):.4f}")
with np.errstate(divide="ignore"):
    naive = np.log(np.mean(np.exp(log_w - 1000.0)))
print(f"  log weights shifted by -1000: naive log(mean(exp)) = {naive}, log_mean_exp = "
      f"{log_mean_exp(log_w - 1000.0):.4f}")
run.check("log_mean_exp(a - 1000) = log_mean_exp(a) - 1000", log_mean_exp(log_w - 1000.0),
          log_mean_exp(log_w) - 1000.0, tol=1e-12)
library_one = importance_sampled_bound(model, x_one, k=k_hand, seed=run.seed)[0]
run.check(f"by hand vs importance_sampled_bound, L_{k_hand} of one image (other draws of eps, so loose)",
          log_mean_exp(log_w), library_one, tol=1e-2)

# %% [markdown]
# ## $L_k$ for growing $k$, and how much one estimate varies
#
# For every $k$, the estimate for each of the held-out images, averaged over the images, and this
# repeated with several seeds (independent draws of $\epsilon$). The spread over seeds is the Monte
# Carlo noise of one estimate; the mean over seeds is a better estimate of $\mathbb{E}[L_k]$, whose
# standard error is that spread divided by the square root of the number of seeds.

# %%
n_seeds = run.pick(fast=10, full=3)
bounds = {}                 # bounds[z_dim][k]: (n_seeds, n_images), one estimate per seed and image
for z_dim, model in models.items():
    start = time.perf_counter()
    bounds[z_dim] = {k: np.stack([importance_sampled_bound(model, x, k=k, seed=run.seed + r)
                                  for r in range(n_seeds)]) for k in ks}
    elbo = evaluate_elbo(model, x, n_samples=1000, seed=run.seed).elbo
    print(f"  z = {z_dim:2d} ({time.perf_counter() - start:.1f} s): ELBO {elbo:.3f} (1,000 samples per image); "
          f"mean over {n_images} images of")
    print(f"  {'k':>8} {'seed ' + str(run.seed):>11} {'mean of ' + str(n_seeds) + ' seeds':>16} {'std over seeds':>15}")
    for k, b in bounds[z_dim].items():
        per_seed = b.mean(axis=1)
        print(f"  {'L_' + str(k):>8} {per_seed[0]:11.4f} {per_seed.mean():16.4f} {per_seed.std(ddof=1):15.4f}")
    means = np.array([b.mean() for b in bounds[z_dim].values()])
    ses = np.array([b.mean(axis=1).std(ddof=1) / np.sqrt(n_seeds) for b in bounds[z_dim].values()])
    run.check(f"z = {z_dim}: L_1 vs the ELBO (both Monte Carlo)", means[0], elbo,
              tol=run.pick(fast=5e-2, full=1e-2))
    assert all(b >= a - 3 * np.hypot(sa, sb) for a, b, sa, sb in zip(means, means[1:], ses, ses[1:])), \
        "the mean over seeds of L_k should grow with k"
    one = [b[0].mean() for b in bounds[z_dim].values()]        # the estimates of a single seed
    for (k1, a), (k2, b) in zip(zip(ks, one), zip(ks[1:], one[1:])):
        if b < a:
            spread = bounds[z_dim][k1].mean(axis=1).std(ddof=1)
            print(f"  With seed {run.seed} alone, L_{k2} came out below L_{k1} by {a - b:.4f} nats; one "
                  f"estimate of L_{k1} varies by {spread:.4f} (std over seeds), so this is noise, not a "
                  f"failure of L_k <= L_(k+1), which holds for the expectations.")

# %% [markdown]
# ## The exact answer for the 2-D model
#
# For each image, first a coarse look over $z \in [-8, 8]^2$ (spacing 0.1) finds where
# $\log p(x, z)$ comes within 30 nats of its maximum (the posterior can reach well beyond the
# encoder's Gaussian); then a fine grid covers that box and 8 encoder standard deviations around
# $\mu$ ($q$ can reach where the posterior does not), with at least 6 points per encoder standard
# deviation. On it, with grid spacings $\Delta z_1$ and $\Delta z_2$:
#
# $$
# \begin{aligned}
# \log p(x) &= \operatorname{logsumexp}_z \bigl[\log p(x|z) + \log p(z)\bigr]
#   + \log (\Delta z_1 \Delta z_2), \\
# \mathrm{ELBO} &= \sum_z q(z|x) \log p(x|z)\, \Delta z_1 \Delta z_2
#   - \mathrm{KL}\bigl(q(z|x) \,\|\, p(z)\bigr) \quad \text{(this KL in closed form)}, \\
# \mathrm{KL}\bigl(q \,\|\, p(z|x)\bigr) &= \sum_z q(z|x) \bigl[\log q(z|x) - \log p(z|x)\bigr]
#   \, \Delta z_1 \Delta z_2,
# \end{aligned}
# $$
#
# checked: the posterior mass on the fine grid's border is negligible, $q$ sums to 1 on it, and
# $\log p(x) = \mathrm{ELBO} + \mathrm{KL}$.

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
L_max = bounds[2][ks[-1]][:, :n_exact]                       # (n_seeds, n_exact)
run.check(f"L_{ks[-1]} (mean of {n_seeds} seeds) vs log p(x) on the grid (mean over {n_exact} images)",
          L_max.mean(), exact["log_px"].mean(), tol=run.pick(fast=1e-2, full=1e-3))
closes = (L_max.mean(axis=1) - exact["elbo"].mean()) / exact["kl_post"].mean()     # one per seed
print(f"  mean gap log p(x) - elbo = KL(q || p(z|x)) = {exact['kl_post'].mean():.3f} nats; the estimate of "
      f"L_{ks[-1]} closes {closes[0]:.0%} of it with seed {run.seed}, {closes.mean():.0%} on average over "
      f"{n_seeds} seeds (from {closes.min():.0%} to {closes.max():.0%})")
if closes.max() > 1:
    noise = L_max.mean(axis=1).std(ddof=1)
    print(f"  More than 100 % means that estimate of L_{ks[-1]} landed above log p(x). The gap is only "
          f"{exact['kl_post'].mean():.3f} nats, and one estimate of L_{ks[-1]} varies by {noise:.4f} nats "
          f"(std over seeds, {noise / exact['kl_post'].mean():.0%} of the gap): once L_k is within a few "
          f"of those of log p(x), an estimate can pass it. The expectation of L_k never exceeds log p(x); "
          f"a single estimate can.")

# %% [markdown]
# ## The picture
#
# Images differ from each other by far more than $L_k$ differs between values of $k$, so the plots
# show the paired difference $L_k(x) - \mathrm{ELBO}(x)$, averaged over images: one grey dot per seed
# (one estimate each), and their mean with its standard error. For the 2-D model $\mathrm{ELBO}(x)$
# and the gap $\mathrm{KL}(q \,\|\, p(z|x))$ come from the grid; for the 20-D model $\mathrm{ELBO}(x)$
# is a 1,000-sample average per image. Right: the true posterior of one image against the encoder's
# Gaussian, contours at the same heights (1, 2 and 3 standard deviations for a Gaussian).

# %%
elbo_20 = np.concatenate([models[20].elbo(x[i:i + 10], n_samples=1000).elbo.astype(np.float64)
                          for i in range(0, n_images, 10)])
fig, axes = plt.subplots(1, 3, figsize=(17, 5))
for ax, z_dim, elbo_per_image in [(axes[0], 2, exact["elbo"]), (axes[1], 20, elbo_20)]:
    n = len(elbo_per_image)
    gain = np.array([(bounds[z_dim][k][:, :n] - elbo_per_image).mean(axis=1) for k in ks])   # (k, seed)
    for i, k in enumerate(ks):
        ax.plot(np.full(n_seeds, k), gain[i], ".", color="0.55", ms=5,
                label=f"one estimate (a seed; {n_seeds} seeds)" if i == 0 else None)
    ax.errorbar(ks, gain.mean(axis=1), yerr=gain.std(axis=1, ddof=1) / np.sqrt(n_seeds), fmt="o-",
                color="C0", capsize=3, label="mean over seeds, with its standard error")
    ax.axhline(0.0, color="C3", ls="--", label="the ELBO")
    if z_dim == 2:
        ax.axhline(exact["kl_post"].mean(), color="k",
                   label="log p(x) - elbo = KL(q || p(z|x)), on a grid")
    bottom, top = ax.get_ylim()
    ax.set_ylim(min(bottom, -0.08 * top), top)                       # keep the ELBO's line in view
    ax.set(xscale="log", xlabel="k (importance samples per image)", ylabel="nats per image above the ELBO",
           title=f"({'ab'[z_dim == 20]}) {z_dim}-D latent space: L_k - elbo, mean over {n} images")
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
# * The ELBO understates $\log p(x)$ by $\mathrm{KL}(q(z|x) \,\|\, p(z|x))$; $L_k$ closes the gap as
#   $k$ grows.
# * $L_k \le L_{k+1} \le \log p(x)$ holds for the expectations. One estimate is random: compare
#   estimates only with their spread (several seeds, or a standard error) beside them.
# * Average weights in log space (`log_mean_exp`): the weights themselves underflow.
# * Report held-out log-likelihoods as $L_k$ with large $k$ (5,000 is customary) and say so.
# * The gap is the price of an encoder that proposes one Gaussian per image; a posterior that is
#   skewed or wider than $q$ leaves it open.
#
# ## Exercises
#
# Start a workbook once with `scratchvae exercises start my-workbook` and grade an exercise with
# `scratchvae exercises check my-workbook NAME` (lesson 7 says more). Worked answers to the
# questions: `lessons/answers/09_importance_sampling.md`; try first.
#
# 1. **Code: `log_mean_exp`** (workbook `09_importance_sampling.py`):
#    $\log \bigl(\frac1k \sum_i \exp(a_i)\bigr)$ along an axis, stable for log weights of $-1000$ and
#    of $+1000$. $L_k$ of an image is `log_mean_exp` of its $k$ log weights.
# 2. **Question: $L_{500}$ below $L_{50}$.** In fast mode, with seed 0, the estimate of $L_{500}$ comes
#    out below that of $L_{50}$ for the 2-D model, and it "closes 104 %" of the gap to $\log p(x)$.
#    Neither can happen to the expectations. What happened, and what in the printed table tells you?
# 3. **Question: why $\mathbb{E}[L_k]$ grows with $k$.** Show that $\mathbb{E}[L_{k+1}] \ge \mathbb{E}[L_k]$.
#    (Hint: the average of $k + 1$ weights is the average, over the $k + 1$ ways to leave one weight
#    out, of the averages of $k$ weights; then Jensen's inequality for the concave log.)
# 4. **Question: how the noise shrinks.** From the "std over seeds" column, how does the noise of one
#    estimate of $L_k$ fall with $k$? What rate do you expect for large $k$, and why?
