# %% [markdown]
# # Lesson 2: the mixture of Gaussians and EM
#
# The shallow latent-variable model of lesson 1: with $K$ components,
#
# $$
# \begin{aligned}
# & z \sim \operatorname{Categorical}(\pi), \qquad x \mid z = k \sim \mathcal{N}(\mu_k, \Sigma_k), \\
# & p(x) = \sum_{k=1}^{K} \pi_k \, \mathcal{N}(x; \mu_k, \Sigma_k).
# \end{aligned}
# $$
#
# (The lecture notes this course follows write this sum as $\sum_{k=1}^{k}$, with the index's own
# letter as its upper limit; it runs over the $K$ components, $k = 1, \dots, K$.)
#
# Three ideas in this lesson:
#
# 1. **The log-likelihood through logsumexp.**
#    $\log p(x) = \operatorname{logsumexp}_k \left[\log \pi_k + \log \mathcal{N}(x; \mu_k, \Sigma_k)\right]$
#    stays finite where $\sum_k \pi_k \mathcal{N}(x; \dots)$ underflows to 0.
# 2. **It is not concave** in $\theta = (\pi, \mu, \Sigma)$: relabelling the components gives the
#    same likelihood, so there are several maxima with lower ground between them, and gradient
#    methods or EM can stop at a poor one. (The notes call the likelihood "non-convex"; for a
#    function we maximize, the property that would guarantee a single maximum is concavity.)
# 3. **EM** raises it anyway, using a decomposition that holds for any distribution $q(Z)$ over
#    the labels:
#
#    $$
#    \begin{aligned}
#    \ln p(X \mid \theta) &= \mathcal{L}(q, \theta) + \mathrm{KL}\big(q \,\|\, p(Z \mid X, \theta)\big) \\
#    \mathcal{L}(q, \theta) &= \sum_n \sum_k q_{nk} \left[\ln p(x_n, z_n = k \mid \theta) - \ln q_{nk}\right]
#    \end{aligned}
#    $$
#
#    (the notes print the second term as $\mathrm{KL}(q \,\|\, q)$, which is 0 for every $q$ and
#    would make $\mathcal{L}$ equal $\ln p$ whatever $q$ is; it is the KL from $q$ to the posterior,
#    as lesson 5 shows numerically). The E-step sets $q$ to the posterior, so $\mathrm{KL} = 0$ and
#    $\mathcal{L}$ touches $\ln p$; the M-step raises $\mathcal{L}$ over $\theta$ with $q$ fixed, and
#    $\ln p$ rises at least as much because $\mathrm{KL} \ge 0$ again.
#
# The fit is compared with scikit-learn's `GaussianMixture`, started from the same parameters.

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from _lesson import Lesson
from scratchvae.models.mixture import GaussianMixture, fit_em, init_mixture, m_step

run = Lesson("02_mixture_of_gaussians")
rng = np.random.default_rng(run.seed)
n_iter = run.pick(fast=40, full=300)

truth = GaussianMixture(np.array([0.5, 0.3, 0.2]),
                        np.array([[0.0, 0.0], [3.0, 1.0], [1.0, 3.5]]),
                        np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.4, -0.2], [-0.2, 0.6]],
                                  [[0.8, 0.0], [0.0, 0.2]]]))
x, labels = truth.sample(500, rng)
print(f"  {x.shape[0]} points from a 3-component mixture; ln p(X) under the truth = "
      f"{truth.log_prob(x).sum():.2f}")

# %% [markdown]
# ## 1. The log-likelihood through logsumexp
#
# `log_joint(x)` holds
# $\log p(x_n, z_n = k) = \log \pi_k + \log \mathcal{N}(x_n; \mu_k, \Sigma_k)$, an $(N, K)$ matrix;
# `log_prob` reduces it with logsumexp. Summing the densities first gives the same number where
# it is representable, and -inf once every component density underflows (about 38 standard
# deviations from every mean in float64).

# %%
naive = np.log(np.exp(truth.log_joint(x)).sum(axis=1))
run.check("log sum_k exp vs logsumexp on the data", naive, truth.log_prob(x), tol=1e-12)
far = np.linspace(0, 80, 401)[:, None] * np.array([[1.0, 1.0]]) / np.sqrt(2)   # walking away
with np.errstate(divide="ignore"):
    far_naive = np.log(np.exp(truth.log_joint(far)).sum(axis=1))
far_lse = truth.log_prob(far)
print(f"  at distance 80 from the origin: naive {far_naive[-1]}, logsumexp {far_lse[-1]:.1f}")

# %% [markdown]
# ## 2. Not concave: relabelling and local maxima
#
# Move $\theta$ along a straight line from the true parameters to the same parameters with
# components 0 and 1 swapped. Both ends have the same likelihood (they are the same mixture), but
# the middle is far lower: two maxima with a valley between them, which a concave function cannot
# have. And EM started from different points stops at different maxima.

# %%
swap = [1, 0, 2]
ts = np.linspace(0, 1, 41)
path = [GaussianMixture((1 - t) * truth.pi + t * truth.pi[swap], (1 - t) * truth.mu + t * truth.mu[swap],
                        (1 - t) * truth.cov + t * truth.cov[swap]).log_prob(x).sum() for t in ts]
run.check("ln p(X) at both ends of the swap path", path[-1], path[0], tol=1e-12)
print(f"  ln p(X) in the middle of the path: {path[20]:.1f} (ends: {path[0]:.1f})")

starts = range(run.pick(fast=4, full=12))
runs = {seed: fit_em(x, 3, n_iter=n_iter, init=init_mixture(x, 3, seed=seed)) for seed in starts}
final = {seed: hist[-1].log_lik for seed, (_, hist) in runs.items()}
best_seed, worst_seed = max(final, key=final.get), min(final, key=final.get)
print("  final ln p(X) of EM from each start: " + ", ".join(f"{v:.1f}" for v in final.values()))

# %% [markdown]
# ## 3. EM, with the decomposition recorded at every half-step
#
# With $q_{nk}$ the probability that $q$ gives to $z_n = k$, the two steps are:
#
# * **E-step**: $q$ becomes the posterior over the labels, the *responsibilities*
#
#   $$
#   \begin{aligned}
#   q_{nk} = p(z_n = k \mid x_n, \theta)
#   &= \frac{\pi_k \, \mathcal{N}(x_n; \mu_k, \Sigma_k)}{\sum_j \pi_j \, \mathcal{N}(x_n; \mu_j, \Sigma_j)} \\
#   &= \exp\Big(a_{nk} - \operatorname{logsumexp}_j a_{nj}\Big), \qquad
#   a_{nk} = \log \pi_k + \log \mathcal{N}(x_n; \mu_k, \Sigma_k)
#   \end{aligned}
#   $$
#
#   (computed in log space, as in section 1). Then $\mathrm{KL}(q \,\|\, p(Z \mid X, \theta)) = 0$
#   and $\mathcal{L} = \ln p$.
# * **M-step**: with $q$ fixed,
#   $\mathcal{L}(q, \theta) = \sum_n \sum_k q_{nk} \left[\log \pi_k + \log \mathcal{N}(x_n; \mu_k, \Sigma_k)\right] +$
#   (a term without $\theta$) is a weighted Gaussian log-likelihood, maximized in closed form by
#   weighted counts, means and covariances:
#
#   $$
#   \begin{aligned}
#   N_k &= \sum_n q_{nk}, \qquad \pi_k = \frac{N_k}{N}, \qquad
#   \mu_k = \frac{1}{N_k} \sum_n q_{nk} \, x_n, \\
#   \Sigma_k &= \frac{1}{N_k} \sum_n q_{nk} \, (x_n - \mu_k)(x_n - \mu_k)^\top
#   \end{aligned}
#   $$
#
#   (setting the derivative of $\mathcal{L}$ with respect to $\mu_k$,
#   $\sum_n q_{nk} \Sigma_k^{-1} (x_n - \mu_k)$, to zero gives $\mu_k$; $\pi_k$ comes from
#   maximizing $\sum_k N_k \log \pi_k$ subject to $\sum_k \pi_k = 1$). The library adds a small
#   `reg_covar` times the identity to each $\Sigma_k$ (question 4 below says why).
#
# `GaussianMixture.responsibilities` and `m_step` compute them; `fit_em` alternates them and
# records, after each E-step and each M-step, $\ln p(X \mid \theta)$, $\mathcal{L}(q, \theta)$ and
# $\mathrm{KL}(q \,\|\, p(Z \mid X, \theta))$. Checked at every record: the identity
# $\ln p = \mathcal{L} + \mathrm{KL}$, $\mathrm{KL} = 0$ right after an E-step, and $\ln p$ never
# decreasing. And the M-step's $\theta$ is checked to be a maximum of $\mathcal{L}(q, \theta)$:
# moving it a little in random directions only lowers $\mathcal{L}$.

# %%
model, history = runs[best_seed]
log_lik = np.array([step.log_lik for step in history])
bound = np.array([step.lower_bound for step in history])
kl = np.array([step.kl for step in history])
run.check("ln p(X) = L(q, theta) + KL(q || p(Z|X)), every half-step", bound + kl, log_lik, tol=1e-12)
kl_after_e = max(abs(step.kl) for step in history if step.stage == "E")
print(f"  largest |KL| right after an E-step: {kl_after_e:.1e} (zero up to round-off)")
assert kl_after_e < 1e-9 and np.all(np.diff(log_lik) > -1e-8 * abs(log_lik[0]))

q = model.responsibilities(x)                               # an E-step at the fitted model
theta = m_step(x, q, reg_covar=0.0)                         # the exact maximizer of L(q, .)
L_best = theta.lower_bound(x, q)
drops = []
for i in range(20):
    r = np.random.default_rng(100 + i)
    d_pi = r.standard_normal(3)
    d_cov = r.standard_normal((3, 2, 2))
    nearby = GaussianMixture(theta.pi + 1e-2 * (d_pi - d_pi.mean()) * theta.pi.min(),
                             theta.mu + 1e-2 * r.standard_normal((3, 2)),
                             theta.cov + 1e-2 * (d_cov + d_cov.transpose(0, 2, 1)) / 2 * theta.cov.min())
    drops.append(L_best - nearby.lower_bound(x, q))
print(f"  L(q, theta) at the M-step: {L_best:.4f}; at 20 random nearby theta it is lower by "
      f"{min(drops):.2e} to {max(drops):.2e}")
assert min(drops) > 0, "the M-step did not maximize L(q, theta)"

# %% [markdown]
# ## scikit-learn, from the same start
#
# scikit-learn's `GaussianMixture` runs the same EM (with the same `reg_covar` added to each
# covariance). Given our starting proportions, means and precisions and the same number of
# iterations, it lands on the same parameters.

# %%
start = init_mixture(x, 3, seed=best_seed)
sk = SklearnGaussianMixture(3, covariance_type="full", max_iter=n_iter, tol=0.0, reg_covar=1e-6,
                            weights_init=start.pi, means_init=start.mu,
                            precisions_init=np.linalg.inv(start.cov))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)     # tol=0: run every iteration
    sk.fit(x)
run.check("ln p(X): scratchvae EM vs scikit-learn", model.log_prob(x).sum(), sk.score(x) * len(x),
          tol=1e-10)
run.check("means: scratchvae EM vs scikit-learn", model.mu, sk.means_, tol=1e-8)

# %%
def ellipse(ax, mean, cov, **kw):
    """The two-standard-deviation contour of N(mean, cov)."""
    values, vectors = np.linalg.eigh(cov)
    angle = np.linspace(0, 2 * np.pi, 100)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    ax.plot(*(mean[:, None] + vectors @ (2 * np.sqrt(values)[:, None] * circle)), **kw)


fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
ax = axes[0, 0]
ax.scatter(*x.T, s=5, c=[f"C{k}" for k in labels], alpha=0.5)
for k in range(3):
    ellipse(ax, model.mu[k], model.cov[k], color="k", lw=1.5,
            label="EM, best start" if k == 0 else None)
    ellipse(ax, runs[worst_seed][0].mu[k], runs[worst_seed][0].cov[k], color="C3", ls="--",
            label="EM, a poor start" if k == 0 else None)
ax.plot(*sk.means_.T, "x", color="C4", ms=10, mew=2, label="scikit-learn means")
ax.set(title="(a) data (coloured by true z) and fits", xlabel="x_1", ylabel="x_2", aspect="equal")
ax.legend(fontsize=8)

ax = axes[0, 1]
shown = slice(2, 2 * min(9, n_iter))                   # iterations 2 to 9 (the first jump is huge)
steps = np.arange(len(history))[shown] / 2 + 0.5
ax.plot(steps, log_lik[shown], "k.-", label="ln p(X | theta)")
ax.plot(steps, bound[shown], "C0.-", label="L(q, theta)")
ax.fill_between(steps, bound[shown], log_lik[shown], color="C0", alpha=0.2,
                label="KL(q || p(Z|X, theta))")
ax.set(title="(b) EM: L touches ln p after each E-step", ylabel="nats",
       xlabel="EM iteration (E-step at n - 0.5, M-step at n)")
ax.legend(fontsize=8)

ax = axes[0, 2]
m_steps = [step for step in history if step.stage == "M"]
ax.semilogy([step.iteration for step in m_steps], [max(step.kl, 1e-16) for step in m_steps], "C0.-",
            label="KL after the M-step (the gap)")
ax.semilogy([step.iteration for step in m_steps][:-1],
            np.maximum(np.diff([step.log_lik for step in m_steps]), 1e-16), "k.-", label="rise of ln p(X) per iteration")
ax.set(title="(c) the gap and the progress shrink together", xlabel="EM iteration", ylabel="nats")
ax.legend(fontsize=8)

ax = axes[1, 0]
for seed, (_, hist) in runs.items():
    curve = [step.log_lik for step in hist if step.stage == "M"]
    ax.plot(np.arange(1, len(curve) + 1), curve, color="C3" if final[seed] < final[best_seed] - 1 else "C0",
            lw=1)
ax.axhline(truth.log_prob(x).sum(), color="k", ls=":", label="ln p(X) under the true theta")
ax.set(title="(d) EM from several starts: local maxima", xlabel="EM iteration", ylabel="ln p(X | theta)",
       xscale="log", ylim=(final[best_seed] - 250, final[best_seed] + 20))
ax.legend(fontsize=8)

ax = axes[1, 1]
ax.plot(ts, path, "k")
ax.set(title="(e) ln p(X) from theta to theta with 2 labels swapped", xlabel="t (0: theta, 1: swapped)",
       ylabel="ln p(X)")

ax = axes[1, 2]
distance = np.linalg.norm(far, axis=1)
ax.plot(distance, -far_lse, "C0", lw=3, label="-logsumexp_k log p(x, z = k)")
ax.plot(distance, -far_naive, "C3--", lw=2, label="-log sum_k exp(...) (inf beyond the dashes)")
ax.set(title="(f) -log p(x) walking away from the data", xlabel="distance from the origin",
       ylabel="-log p(x)  (nats)", yscale="log")
ax.legend(fontsize=8)
fig.tight_layout()
run.save(fig, "em")

# %% [markdown]
# ## What to remember
#
# * Evaluate mixture likelihoods in log space with logsumexp.
# * The log-likelihood has several maxima; EM climbs to one of them, so restarts matter.
# * Each EM step is the decomposition $\ln p = \mathcal{L} + \mathrm{KL}$ at work: the E-step
#   closes the gap, the M-step raises the bound. The VAE keeps the bound but replaces the exact
#   E-step (impossible for a neural decoder) by an encoder $q(z \mid x)$ trained with it
#   (lesson 5).
#
# ## Exercises
#
# Start a workbook once, if you have not yet (`scratchvae exercises start my-workbook`); this
# lesson's functions are in `my-workbook/02_mixture_em.py`, graded with
# `scratchvae exercises check my-workbook e_step m_step`. Worked answers to the questions:
# `lessons/answers/02_mixture_of_gaussians.md`.
#
# 1. **The E-step** (code): `e_step(x, pi, mu, cov)`, the $(N, K)$ responsibilities of section 3,
#    in log space (each row sums to 1, and a point far from every component still gets finite
#    responsibilities). $\log \mathcal{N}(x; \mu_k, \Sigma_k)$ is
#    `scratchvae.models.mixture.mvn_log_density`.
#    `scratchvae exercises check my-workbook e_step`
# 2. **The M-step** (code): `m_step(x, q, ...)`, the weighted counts, means and covariances of
#    section 3 (plus `reg_covar` on the diagonal of each covariance), returned as a
#    `GaussianMixture`. `scratchvae exercises check my-workbook m_step`
# 3. **Not concave** (question). How many parameter settings give exactly the same mixture as the
#    truth ($K = 3$)? Then use the two numbers the lesson prints for the swap path (its ends and its
#    middle) to prove that $\ln p(X \mid \theta)$ is not a concave function of $\theta$.
# 4. **No maximum at all** (question). Show that $\ln p(X \mid \theta)$ is unbounded above: put one
#    component on a single data point with covariance $s^2 I$ and let $s$ shrink. How fast does
#    $\ln p(X)$ grow, and from which $s$ does a 4-component mixture (the lesson's best 3-component
#    fit with its proportions scaled by 0.99, plus a component of weight 0.01 on the first data
#    point) beat that fit? What does this say about maximum likelihood, and what does `reg_covar`
#    do about it?
