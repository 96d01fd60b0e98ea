# %% [markdown]
# # Lesson 3: the deep latent-variable model, a mixture of infinitely many Gaussians
#
# Replace the mixture's discrete label by a continuous $z$ (the deep latent-variable model of
# lesson 1, as the lecture notes this course follows give it):
#
# $$
# \begin{aligned}
# & z \sim \mathcal{N}(0, I), \qquad p(x \mid z) = \mathcal{N}(\mu(z), \Sigma(z)), \\
# & \mu(z) = \operatorname{sigmoid}(A z + c), \qquad
# \Sigma(z) = \operatorname{diag}(\exp(\operatorname{sigmoid}(B z + d))), \qquad \theta = (A, B, c, d).
# \end{aligned}
# $$
#
# Each $p(x \mid z)$ is one simple Gaussian; the marginal
#
# $$
# p(x) = \int p(x \mid z) \, p(z) \, dz = \mathbb{E}_{z \sim \mathcal{N}(0, I)} \, p(x \mid z)
# $$
#
# is a mixture of infinitely many of them, one for every $z$, weighted by the prior. A Monte Carlo
# estimate with $S$ draws $z_1, \dots, z_S$ is literally a mixture of $S$ equal-weight Gaussians,
#
# $$
# \log p(x) \approx \log \frac{1}{S} \sum_{s=1}^{S} \mathcal{N}(x; \mu(z_s), \Sigma(z_s))
# $$
#
# (computed as a log-mean-exp, so nothing underflows), and as $S$ grows it approaches the
# continuous mixture. In `scratchvae.models.deep_lvm.DeepLVM`, `log_marginal` computes this
# estimate and `grid_log_marginal` evaluates it on a 2-D grid.
#
# For two pixels the notes (note 000) write this covariance out as a $2 \times 2$ diagonal matrix,
# `\left.\Sigma_{\theta}(\mathbf{z})=\operatorname{diag}(\exp (\sigma(B \mathbf{z}+d)))\right)=...`,
# whose first diagonal entry is $\exp(\operatorname{sigmoid}(b_1 z + d_1))$ and whose second is
# garbled (`\exp \left(\sigma_{\left.2 z+d_{2}\right)}\right)`): it is
# $\exp(\operatorname{sigmoid}(b_2 z + d_2))$, like the first, with $b_2$ the second row of $B$.

# %%
import matplotlib.pyplot as plt
import numpy as np

from _lesson import Lesson
from scratchvae.distributions import logsumexp, standard_normal_log_density
from scratchvae.models.deep_lvm import DeepLVM
from scratchvae.gradcheck import THRESHOLD, check_gradients, format_report

run = Lesson("03_deep_latent_variable_model")
rng = np.random.default_rng(run.seed)

# %% [markdown]
# ## The gradient of $\log p(x \mid z)$
#
# Learning $\theta$ needs $\partial \log p(x \mid z) / \partial \theta$. With
# $m = \operatorname{sigmoid}(A z + c)$ and $s = \operatorname{sigmoid}(B z + d)$,
#
# $$
# \log p(x \mid z) = -\frac{1}{2} \sum_j \left[ \log 2\pi + s_j + (x_j - m_j)^2 e^{-s_j} \right]
# $$
#
# and the chain rule of lesson 0 goes through the two sigmoids
# ($\operatorname{sigmoid}' = \operatorname{sigmoid} \, (1 - \operatorname{sigmoid})$):
#
# $$
# \begin{aligned}
# dc_j &= (x_j - m_j) \, e^{-s_j} \, m_j (1 - m_j), & dA_{jk} &= dc_j \, z_k \\
# dd_j &= \tfrac{1}{2} \left[(x_j - m_j)^2 e^{-s_j} - 1\right] s_j (1 - s_j), & dB_{jk} &= dd_j \, z_k
# \end{aligned}
# $$
#
# summed over the rows of a batch (`DeepLVM.backward`). Checked against central differences for
# every parameter tensor:

# %%
model = DeepLVM(A=np.array([[1.5], [4.0]]), B=np.array([[2.0], [-2.0]]),   # 2-D x, 1-D z
                c=np.array([0.0, -2.0]), d=np.array([0.0, 0.0]))
x, z = model.sample(8, rng)
model.log_prob(x, z)
model.backward()
grads = {k: g.copy() for k, g in model.grads.items()}
reports = check_gradients(lambda: model.log_prob(x, z).sum(), model.params, grads)
print(format_report(reports))
assert all(r.worst < THRESHOLD for r in reports)

# %% [markdown]
# ## How good is the Monte Carlo estimate?
#
# With one latent dimension the integral over $z$ can also be done on a fine grid ($z$ spaced 0.004
# apart over $[-8, 8]$), which is exact to round-off. The Monte Carlo estimate agrees up to its
# sampling error, which shrinks like $1/\sqrt{S}$.

# %%
z_grid = np.linspace(-8.0, 8.0, 4001)[:, None]
log_weight = standard_normal_log_density(z_grid) + np.log(z_grid[1, 0] - z_grid[0, 0])
points = np.array([[0.5, 0.5], [2.0, -1.0], [-1.0, 3.0]])
exact = logsumexp(model.pairwise_log_prob(points, z_grid) + log_weight, axis=1)
S = run.pick(fast=20_000, full=400_000)
estimate = model.log_marginal(points, n_samples=S, rng=np.random.default_rng(1))
run.check(f"log p(x), Monte Carlo with S = {S} vs quadrature", estimate, exact, tol=3 / np.sqrt(S))

# %% [markdown]
# ## What is intractable: the integral over $z$, not $p(x \mid z)$
#
# The lecture notes (note 002) explain why a VAE needs an encoder by claiming that $p(x \mid z)$
# itself cannot be computed for every $z$ ("computationally too expensive"), which makes the
# problem intractable. Their line reads
#
# > Problem: impossible to compute $p(x|z)$ for every $z$ ([computationally
#
# But for a given $z$, $p(x \mid z)$ is one pass through the decoder (`model.log_prob(x, z)` above
# gave it for 8 pairs at once). What cannot be done is the integral over *every* $z$,
# $p(x) = \int p(x \mid z) \, p(z) \, dz$: the grid above took 4001 decoder passes for one latent
# dimension, and as fine a grid over a 20-dimensional $z$ would take $4001^{20}$. With $p(x)$ goes
# the posterior $p(z \mid x) = p(x \mid z) \, p(z) / p(x)$, whose normalizer it is; that is why a
# VAE learns $q(z \mid x)$ instead.

# %%
print(f"  log p(x|z) at x = {points[0]}, z = 0.3: {model.log_prob(points[:1], np.array([[0.3]]))[0]:.4f} "
      f"(one decoder pass)")
print(f"  log p(x) at the same x: {exact[0]:.4f} ({z_grid.shape[0]} decoder passes for a 1-D z; "
      f"a 20-D grid as fine: about 10^{20 * np.log10(z_grid.shape[0]):.0f})")

# %% [markdown]
# ## The model as the notes give it is a soft blob
#
# $\exp(\operatorname{sigmoid}(\cdot))$ lies between 1 and $e$, so every conditional has a variance
# of at least 1, while the means stay inside the unit square: $p(x)$ comes out as one smooth blob
# whatever $\theta$ is. To see the infinite mixture underneath, shrink every variance by the same
# factor $e^{-6}$:
# a subclass that changes only `likelihood_params` inherits sampling and the Monte Carlo
# marginal from the library.

# %%
class SharperLVM(DeepLVM):
    """The same model with Sigma(z) = exp(shift) diag(exp(sigmoid(B z + d))), shift < 0."""
    shift = -6.0

    def likelihood_params(self, z):
        mu, logvar = super().likelihood_params(z)
        return mu, logvar + self.shift


sharp = SharperLVM(**{k: v.copy() for k, v in model.params.items()})

# Every estimate is an average of Gaussians, so it integrates to 1; check on a wide grid.
for name, m, lo, hi, n in [("the notes' model", model, -9.0, 10.0, 191),
                           ("sharper model", sharp, -1.0, 2.0, 301)]:
    grid = np.linspace(lo, hi, n)
    mass = np.exp(m.grid_log_marginal(grid, grid, n_samples=300)).sum() * (grid[1] - grid[0]) ** 2
    run.check(f"∫ p(x) dx = 1, {name}", mass, 1.0, tol=1e-3)

# %% [markdown]
# ## The picture: $S$ Gaussians become a continuum
#
# Each row shows the Monte Carlo $p(x)$ with $S = 1$, 10 and many draws of $z$, the curve $\mu(z)$
# in white. Top: the model as the notes give it. Bottom: the same $\theta$ with smaller variances,
# where the mixture of $S$ bumps along $\mu(z)$ visibly fills in to a curved ridge: a density no single
# Gaussian, and no finite mixture of a few, could draw.

# %%
n_grid = run.pick(fast=90, full=200)
S_many = run.pick(fast=1000, full=5000)
curve = model.likelihood_params(np.linspace(-4, 4, 400)[:, None])[0]
fig, axes = plt.subplots(2, 3, figsize=(15, 9.5))
for row, (m, lo, hi) in enumerate([(model, -3.0, 4.0), (sharp, -0.2, 1.2)]):
    grid = np.linspace(lo, hi, n_grid)
    for col, S in enumerate([1, 10, S_many]):
        ax = axes[row, col]
        density = np.exp(m.grid_log_marginal(grid, grid, n_samples=S, rng=np.random.default_rng(2)))
        im = ax.imshow(density, origin="lower", extent=[lo, hi, lo, hi], cmap="magma")
        ax.plot(*curve.T, "w", lw=0.8, alpha=0.8)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="x_1", ylabel="x_2",
               title=f"{'variances exp(sigmoid(.))' if row == 0 else 'variances x exp(-6)'}, S = {S}")
        fig.colorbar(im, ax=ax, fraction=0.046, label="p(x)")
fig.tight_layout()
run.save(fig, "infinite_mixture")

# %% [markdown]
# ## What to remember
#
# * $p(x) = \mathbb{E}_z \, p(x \mid z)$ is a continuous mixture; its Monte Carlo estimate is a
#   finite one.
# * Simple conditionals give a flexible marginal only when they are narrow compared with how far
#   $\mu(z)$ moves; the notes' $\exp(\operatorname{sigmoid}(\cdot))$ keeps every variance in
#   $(1, e)$ and the marginal stays a blob. The VAE's Gaussian decoder learns an unconstrained
#   log-variance instead (lesson 8).
# * Evaluating $p(x)$ this way needs many draws when $p(x \mid z)$ is narrow, because most $z$ miss
#   $x$; the VAE's encoder proposes $z$ where $p(x \mid z)$ is large instead (lessons 5 and 9).
#
# ## Exercises
#
# This lesson has no function of its own in the workbook; the first exercise reuses lesson 1's
# `logsumexp`. Start a workbook once, if you have not yet (`scratchvae exercises start my-workbook`),
# and grade it with `scratchvae exercises check my-workbook logsumexp`. Worked answers:
# `lessons/answers/03_deep_latent_variable_model.md`.
#
# 1. **$p(x)$ by Monte Carlo, with your logsumexp** (code). Draw $z_1, \dots, z_S$ from
#    $\mathcal{N}(0, 1)$, take the $(N, S)$ matrix `model.pairwise_log_prob(points, z)` of
#    $\log p(x_n \mid z_s)$, and turn it into the estimate
#    $\log \frac{1}{S} \sum_s p(x_n \mid z_s)$ with your `logsumexp`. Compare with
#    `model.log_marginal(points, z=z)` (the same draws: they must agree to round-off) and with the
#    quadrature `exact` above (they agree up to the Monte Carlo error).
# 2. **The gradient, by hand** (question). Derive $dc_j$ and $dd_j$ above from $\log p(x \mid z)$,
#    then compute them for the lesson's `model` at $x = (0.5, 0.5)$, $z = 0.3$ and compare with
#    `model.backward()`.
# 3. **Why narrow conditionals need many draws** (question). The estimate of $p(x)$ averages
#    $p(x \mid z_s)$ over $S$ draws, so its relative variance is $r / S$ with
#    $r = \mathbb{E}_z[p(x \mid z)^2] / p(x)^2 - 1$. Compute $r$ by quadrature over the lesson's $z$
#    grid at the point $x = \mu(0.5)$ on the ridge, for `model` and for `sharp`, and the $S$ each
#    needs for a 10 % relative standard error. Explain the difference.
