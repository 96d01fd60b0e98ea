# %% [markdown]
# # Lesson 1: latent variable models and ancestral sampling
#
# A latent variable model explains each observation $x$ by an unobserved cause $z$:
#
# $$
# p(x, z) = p(x \mid z) \, p(z)
# $$
#
# $p(z)$ is a simple prior and $p(x \mid z)$ a simple conditional; the data's own distribution is
# the marginal $p(x) = \sum_z p(x, z)$ (or $\int p(x, z) \, dz$ when $z$ is continuous). Sampling
# needs no marginal at all: **ancestral sampling** draws the parent first, then the child,
#
# $$
# z \sim p(z), \quad \text{then} \quad x \sim p(x \mid z),
# $$
#
# and the pair $(x, z)$ is a draw from $p(x, z)$, so $x$ alone is a draw from $p(x)$.
#
# Two models, both in the library (the first two examples of the lecture notes this course
# follows):
#
# * a **mixture of Gaussians**: $z \sim \operatorname{Categorical}(\pi)$ picks a component,
#   $x \mid z = k \sim \mathcal{N}(\mu_k, \Sigma_k)$;
# * a **deep latent-variable model**: $z \sim \mathcal{N}(0, I)$,
#   $x \mid z \sim \mathcal{N}(\mu(z), \Sigma(z))$ with $\mu(z) = \operatorname{sigmoid}(A z + c)$
#   and $\Sigma(z) = \operatorname{diag}(\exp(\operatorname{sigmoid}(B z + d)))$,
#   $\theta = (A, B, c, d)$.
#
# (The lecture notes, note 000, write this prior as
#
# $$\mathbf{z} \sim \mathcal{N}(0, l)$$
#
# a normal with mean 0 and covariance "$l$". The $l$ stands where the identity matrix $I$ belongs;
# the prior is $\mathcal{N}(0, I)$, independent standard normal coordinates.)

# %%
import matplotlib.pyplot as plt
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from _lesson import Lesson
from scratchvae.distributions import logsumexp
from scratchvae.models.deep_lvm import DeepLVM
from scratchvae.models.mixture import GaussianMixture

run = Lesson("01_latent_variable_models")
rng = np.random.default_rng(run.seed)
N = run.pick(fast=20_000, full=400_000)

# %% [markdown]
# ## A discrete $z$: the mixture of Gaussians
#
# `GaussianMixture.sample` draws $z$ from $\operatorname{Categorical}(\pi)$ (through its inverse
# CDF), then $x$ from the chosen Gaussian. Two identities check the draws, each with an error that
# shrinks like $1/\sqrt{N}$: the label frequencies match $\pi$, and the mean and total variance of
# $x$ match
#
# $$
# \mathbb{E}[x] = \sum_k \pi_k \mu_k, \qquad
# \operatorname{Cov}[x]
# = \sum_k \pi_k \left(\Sigma_k + \mu_k \mu_k^\top\right) - \mathbb{E}[x] \, \mathbb{E}[x]^\top
# $$
#
# (the laws of total expectation and total covariance, `mean()` and `covariance_matrix()`).

# %%
pi = np.array([0.5, 0.3, 0.2])
mu = np.array([[0.0, 0.0], [3.0, 1.0], [1.0, 3.5]])
cov = np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.4, -0.2], [-0.2, 0.6]], [[0.8, 0.0], [0.0, 0.2]]])
mixture = GaussianMixture(pi, mu, cov)
x_mix, z_mix = mixture.sample(N, rng)

tol = 5 / np.sqrt(N)                         # a few standard errors at this N
run.check("label frequencies vs pi", np.bincount(z_mix, minlength=3) / N, pi, tol=tol)
run.check("|sample mean| vs |sum_k pi_k mu_k|", np.linalg.norm(x_mix.mean(axis=0)),
          np.linalg.norm(mixture.mean()), tol=tol)
run.check("total variance tr Cov[x]", np.trace(np.cov(x_mix.T)), np.trace(mixture.covariance_matrix()),
          tol=tol)

# %% [markdown]
# ## Evaluating $p(x)$ for a discrete $z$: logsumexp
#
# Sampling needed no $p(x)$, but fitting a model to data (lesson 2) does. For the mixture,
#
# $$
# \log p(x) = \log \sum_k \exp(a_k), \qquad
# a_k = \log p(x, z = k) = \log \pi_k + \log \mathcal{N}(x; \mu_k, \Sigma_k)
# $$
#
# (`GaussianMixture.log_joint(x)` holds the $a_k$, one row per $x$). Computed as written,
# $\exp(a_k)$ underflows to 0 once $a_k$ is below about $-745$ ($e^{-746}$ is smaller than
# float64's smallest positive number, 5e-324), and if every term underflows the log is $-\infty$.
# That is no corner case: an image of 784 pixels adds one log-density per pixel to $a_k$, and
# $-745$ is ordinary. The fix pulls the largest term out of the sum, $m = \max_k a_k$:
#
# $$
# \log \sum_k \exp(a_k) = m + \log \sum_k \exp(a_k - m)
# $$
#
# (multiply and divide the sum by $e^{m}$). Every exponent is now $\le 0$ and the largest term is
# exactly $e^{0} = 1$, so the sum lies between 1 and $K$: nothing overflows, nothing underflows to
# $-\infty$, and $\log p(x)$ lies between $\max_k a_k$ and $\max_k a_k + \log K$. This is
# `scratchvae.distributions.logsumexp(a, axis)`. Below, on the mixture's draws: it agrees with the
# naive formula where that one works, and still works when every term is 1000 nats lower (every
# $\exp(a_k)$ multiplied by $e^{-1000}$, where the naive sum is 0).

# %%
a = mixture.log_joint(x_mix[:1000])                      # (1000, 3): log p(x_n, z = k)
lse = logsumexp(a, axis=1)
run.check("logsumexp vs log(sum(exp(a))) where the latter is representable", lse,
          np.log(np.exp(a).sum(axis=1)), tol=1e-12)
with np.errstate(divide="ignore"):
    naive_low = np.log(np.exp(a - 1000).sum(axis=1))
print(f"  1000 nats lower: the naive formula gives {naive_low[0]}, "
      f"logsumexp {logsumexp(a - 1000, axis=1)[0]:.4f}")
run.check("logsumexp(a - 1000) + 1000 vs logsumexp(a)", logsumexp(a - 1000, axis=1) + 1000, lse, tol=1e-12)
assert np.all(a.max(axis=1) <= lse) and np.all(lse <= a.max(axis=1) + np.log(3))

# %% [markdown]
# ## A continuous $z$: the deep latent-variable model
#
# Here $z \sim \mathcal{N}(0, 1)$ is one number and $x$ has two coordinates. `DeepLVM.sample` draws
# $z$, computes $\mu(z)$ and $\log\sigma^2(z) = \operatorname{sigmoid}(B z + d)$ (`logvar`), and draws
# $x = \mu(z) + \exp(\log\sigma^2(z) / 2) \, \epsilon$. As $z$ runs over the real line, $\mu(z)$
# traces a curve inside the unit square: the "skeleton" of $p(x)$.
#
# The same two identities hold with the sum over components replaced by an integral over $z$,
# done here by Gauss-Hermite quadrature:
#
# $$
# \mathbb{E}[x] = \mathbb{E}_z[\mu(z)], \qquad
# \operatorname{tr} \operatorname{Cov}[x]
# = \mathbb{E}_z\Big[\sum_j \Sigma_{jj}(z)\Big] + \operatorname{tr} \operatorname{Cov}_z[\mu(z)]
# $$

# %%
lvm = DeepLVM.random(x_dim=2, z_dim=1, scale=5.0, seed=1)
x_lvm, z_lvm = lvm.sample(N, rng)

nodes, weights = hermegauss(60)                                # ∫ f(z) exp(-z^2/2) dz
weights = weights / weights.sum()                              # -> E_{z ~ N(0, 1)} f(z)
mu_z, logvar_z = lvm.likelihood_params(nodes[:, None])
mean_x = weights @ mu_z
total_var = weights @ np.exp(logvar_z).sum(axis=1) + weights @ ((mu_z - mean_x) ** 2).sum(axis=1)
run.check("|sample mean| vs |E_z mu(z)|", np.linalg.norm(x_lvm.mean(axis=0)), np.linalg.norm(mean_x),
          tol=tol)
run.check("total variance tr Cov[x]", np.trace(np.cov(x_lvm.T)), total_var, tol=tol)
print(f"  Sigma(z) = exp(sigmoid(.)) lies in (1, e) = (1, {np.e:.3f}): here between "
      f"{np.exp(logvar_z).min():.3f} and {np.exp(logvar_z).max():.3f}, while mu(z) stays in the unit square")

# %% [markdown]
# ## The picture
#
# (a) mixture draws coloured by their component $z$; (b) deep-LVM draws coloured by their $z$, with
# the curve $\mu(z)$; (c) a few of the Gaussians $p(x \mid z)$ that the draws come from (one-sigma
# ellipses), each simple, together making $p(x)$.
#
# Note how wide the conditionals are: with
# $\Sigma(z) = \operatorname{diag}(\exp(\operatorname{sigmoid}(B z + d)))$ every variance is at
# least 1, while the means stay in the unit square, so the noise swamps the curve and $p(x)$ is one
# soft blob. Lesson 3 shrinks the variances to show the infinite mixture underneath.

# %%
show = run.pick(fast=2_000, full=5_000)                          # points drawn in the scatter
fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
for k in range(3):
    sel = z_mix[:show] == k
    axes[0].scatter(*x_mix[:show][sel].T, s=3, alpha=0.5, color=f"C{k}", label=f"z = {k}  (pi = {pi[k]})")
axes[0].plot(*mu.T, "k+", ms=10, mew=2, label="mu_k")
axes[0].set(title="(a) mixture of Gaussians: z ~ Cat(pi), x ~ N(mu_z, Sigma_z)", xlabel="x_1",
            ylabel="x_2", aspect="equal")
axes[0].legend(fontsize=8, loc="lower right")

sc = axes[1].scatter(*x_lvm[:show].T, s=3, c=z_lvm[:show, 0], cmap="coolwarm", vmin=-2.5, vmax=2.5)
t = np.linspace(-3, 3, 400)[:, None]
curve = lvm.likelihood_params(t)[0]
axes[1].plot(*curve.T, "k", lw=2, label="mu(z), z in [-3, 3]")
axes[1].set(title="(b) deep LVM: z ~ N(0, 1), x ~ N(mu(z), Sigma(z))", xlabel="x_1", ylabel="x_2",
            aspect="equal")
axes[1].legend(fontsize=8)
fig.colorbar(sc, ax=axes[1], label="z")

angle = np.linspace(0, 2 * np.pi, 100)
axes[2].plot(*curve.T, "k", lw=2, label="mu(z)")
for zi in [-2.0, -0.5, 0.0, 0.5, 2.0]:
    m, lv = lvm.likelihood_params(np.array([[zi]]))
    s = np.exp(lv[0] / 2)
    color = plt.cm.coolwarm((zi + 2.5) / 5)
    axes[2].plot(m[0, 0] + s[0] * np.cos(angle), m[0, 1] + s[1] * np.sin(angle), color=color,
                 label=f"p(x | z = {zi:+.1f})")
    axes[2].plot(*m[0], "o", color=color)
axes[2].set(title="(c) each p(x|z) is a simple Gaussian (one-sigma ellipses)", xlabel="x_1",
            ylabel="x_2", aspect="equal")
axes[2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
run.save(fig, "ancestral_sampling")

# %% [markdown]
# ## What to remember
#
# * $p(x, z) = p(x \mid z) \, p(z)$: sample $z$ first, then $x$ given $z$.
# * Moments of $x$ follow from those of the conditionals averaged over $z$ (sums for a discrete
#   $z$, integrals for a continuous one), which is how the draws were checked.
# * Sampling is easy; *evaluating* $p(x)$ needs the sum or integral over $z$ (lessons 2 and 3), and
#   *inferring* $z$ from $x$ needs $p(z \mid x)$ (lessons 2 and 5).
# * Sum probabilities in log space with logsumexp: $m + \log \sum_k \exp(a_k - m)$,
#   $m = \max_k a_k$.
#
# ## Exercises
#
# Start a workbook once; it holds the exercises of every lesson, one file per topic:
#
#     scratchvae exercises start my-workbook
#
# This lesson's function is in `my-workbook/01_latent_variables.py`, with the library's signature
# and docstring and its body left to you; grade it with
# `scratchvae exercises check my-workbook logsumexp`. Worked answers to the questions:
# `lessons/answers/01_latent_variable_models.md`.
#
# 1. **logsumexp** (code): `logsumexp(a, axis=-1)`, $\log \sum_i \exp(a_i)$ along `axis`, by the
#    shift above. A row whose terms are all $-\infty$ (an observation every component rules out)
#    must give $-\infty$, not NaN. `scratchvae exercises check my-workbook logsumexp`
# 2. **By hand** (question). What does `log(sum(exp(a)))` give in float64 for
#    $a = (-800, -801, -802)$, and what is the right value, to five decimals, from the shifted
#    formula?
# 3. **Where the total variance comes from** (question). Derive
#    $\operatorname{Cov}[x] = \sum_k \pi_k (\Sigma_k + \mu_k \mu_k^\top) - \mathbb{E}[x] \mathbb{E}[x]^\top$
#    from the law of total covariance,
#    $\operatorname{Cov}[x] = \mathbb{E}_z[\operatorname{Cov}[x \mid z]] +
#    \operatorname{Cov}_z[\mathbb{E}[x \mid z]]$,
#    and compute both parts of $\operatorname{tr} \operatorname{Cov}[x]$ for the lesson's mixture.
#    Which part is larger?
# 4. **How loose is the tolerance?** (question). The label frequencies are checked with a tolerance
#    of $5 / \sqrt{N}$ on the relative error $|f_k - \pi_k| / (f_k + \pi_k)$. How many standard errors
#    of that relative error is the tolerance for each component, and how often would a correct
#    sampler fail the check?
