# %% [markdown]
# # Lesson 6: the reparameterization trick
#
# The ELBO holds an expectation over the encoder's distribution,
#
# $$
# \mathbb{E}_q[f(z)], \qquad q(z) = \mathcal{N}(\mu, \operatorname{diag}(\sigma^2)), \qquad
# \sigma = \exp(\log\sigma^2 / 2), \qquad f(z) = \log p(x \mid z),
# $$
#
# and training needs its gradient with respect to $\mu$ and $\log\sigma^2$ (`mu` and `logvar`).
# Two unbiased Monte Carlo estimators exist:
#
# * **score function** (REINFORCE, the log-derivative trick): since $dq = q \, d\log q$,
#
#   $$
#   \frac{\partial}{\partial \mu} \mathbb{E}_q[f(z)]
#   = \mathbb{E}_q\left[ f(z) \, \frac{\partial}{\partial \mu} \log q(z) \right], \qquad
#   \frac{\partial}{\partial \mu} \log q(z) = \frac{z - \mu}{\sigma^2}
#   $$
#
# * **pathwise** (reparameterization, Kingma & Welling 2013, section 2.4): write
#   $z = \mu + \sigma \epsilon$ with $\epsilon \sim \mathcal{N}(0, I)$; the randomness no longer
#   depends on $\mu$, so
#
#   $$
#   \frac{\partial}{\partial \mu} \mathbb{E}_q[f(z)] = \mathbb{E}_\epsilon\left[ \frac{df}{dz} \right],
#   \qquad
#   \frac{\partial}{\partial \log\sigma^2} \mathbb{E}_q[f(z)]
#   = \mathbb{E}_\epsilon\left[ \frac{df}{dz} \, \epsilon \, \frac{\sigma}{2} \right]
#   $$
#
# This lesson shows why a sample gives no gradient by itself, that both estimators are unbiased,
# that the pathwise one has a far smaller variance (which does not grow with the latent size),
# and that the version of the trick in the lecture notes this course follows draws $z$ with the
# wrong spread.

# %%
import matplotlib.pyplot as plt
import numpy as np

from _lesson import Lesson
from scratchvae.distributions import (gaussian_log_density, gaussian_log_density_grad, reparameterize,
                                      reparameterize_backward)
from scratchvae.gradcheck import numerical_gradient
from scratchvae.models.linear_gaussian import LinearGaussian

run = Lesson("06_reparameterization")
rng = np.random.default_rng(run.seed)
N = run.pick(fast=20_000, full=400_000)      # Monte Carlo samples per estimate

# %% [markdown]
# ## A test problem with a known answer
#
# Take a "decoder" whose mean is $z$ itself, $p(x \mid z) = \mathcal{N}(x; z, s_x^2 I)$: the
# linear-Gaussian model of `scratchvae.models.linear_gaussian` with $W = I$ and $b = 0$, so
# $f(z) = \log p(x \mid z)$ = `log_likelihood`. Then
#
# $$
# \mathbb{E}_q[f(z)] = -\frac{1}{2} \sum_j \left[ \log(2\pi s_x^2) + \frac{(x_j - \mu_j)^2 + \sigma_j^2}{s_x^2} \right]
# $$
#
# (since $\mathbb{E}_q (x - z)^2 = (x - \mu)^2 + \sigma^2$), with the exact gradient
#
# $$
# \frac{\partial \, \mathbb{E}_q[f]}{\partial \mu_j} = \frac{x_j - \mu_j}{s_x^2}, \qquad
# \frac{\partial \, \mathbb{E}_q[f]}{\partial \log\sigma_j^2} = -\frac{\sigma_j^2}{2 s_x^2},
# $$
#
# both in the library (`expected_log_likelihood` and its `_grad`). That closed form is the
# yardstick, checked first against central differences.

# %%
s_x = 0.5


def decoder(Z):
    """p(x|z) = N(x; z, s_x^2 I) for a Z-dimensional z."""
    return LinearGaussian(np.eye(Z), np.zeros(Z), s_x)


def f(z, x):
    """log p(x|z) for every row of z (one x for all rows)."""
    return decoder(z.shape[1]).log_likelihood(np.broadcast_to(x, z.shape), z)


def expected_f(mu, logvar, x):
    """E_q[f(z)] in closed form."""
    return float(decoder(len(mu)).expected_log_likelihood(x[None], mu[None], logvar[None])[0])


def exact_gradient(mu, logvar, x):
    """(d/dmu, d/dlogvar) E_q[f(z)] in closed form."""
    dmu, dlogvar, _, _ = decoder(len(mu)).expected_log_likelihood_grad(x[None], mu[None], logvar[None])
    return dmu[0], dlogvar[0]


x = np.array([1.0])
mu, logvar = np.array([0.2]), np.array([np.log(0.6 ** 2)])
dmu_exact, dlogvar_exact = exact_gradient(mu, logvar, x)
run.check("d/dmu E_q[f], closed form vs central differences", dmu_exact[0],
          numerical_gradient(lambda: expected_f(mu, logvar, x), mu)[0], tol=1e-8)
run.check("d/dlogvar E_q[f], closed form vs central differences", dlogvar_exact[0],
          numerical_gradient(lambda: expected_f(mu, logvar, x), logvar)[0], tol=1e-8)

# %% [markdown]
# ## Why a sample blocks the gradient
#
# A generic sampler turns uniform random numbers into a draw from $q$ by a table look-up (here:
# `rng.choice` over a grid of $z$ values, weighted by $q$). With the random numbers fixed, the draw
# does not move when $\mu$ moves a little: it stays on its grid value, then jumps to the next. Its
# derivative with respect to $\mu$ is 0 almost everywhere (and undefined at the jumps), yet
# $\mathbb{E}_q[f]$ does change with $\mu$: nothing useful can be back-propagated through the act of
# sampling. Written as $z = \mu + \sigma \epsilon$, the same draw becomes a smooth function of $\mu$
# and $\log\sigma^2$ for a fixed $\epsilon$, $dz/d\mu = 1$, and the derivative of $f(z)$ is the
# pathwise estimate below. (The two draws in the figure use different random numbers, hence their
# offset.)

# %%
grid = np.linspace(-6.0, 6.0, 241)[:, None]        # z values 0.05 apart


def table_draw(mu, seed=7):
    """One draw from q by look-up, its random number fixed by the seed."""
    weights = np.exp(gaussian_log_density(grid, mu, logvar))
    return np.random.default_rng(seed).choice(grid[:, 0], p=weights / weights.sum())


eps7 = np.random.default_rng(7).standard_normal((1, 1))
m = mu.copy()   # numerical_gradient nudges this array in place
print(f"  dz/dmu of a table draw (random number fixed)  = "
      f"{numerical_gradient(lambda: table_draw(m), m)[0]:.4f}")
print(f"  dz/dmu of z = mu + sigma * eps (eps fixed)    = "
      f"{numerical_gradient(lambda: reparameterize(m, logvar, eps7).sum(), m)[0]:.4f}")

mus = np.linspace(-0.5, 1.0, 601)
z_table = np.array([table_draw(np.array([v])) for v in mus])
z_path = np.array([reparameterize(np.array([v]), logvar, eps7)[0, 0] for v in mus])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
axes[0].plot(mus, z_table, color="C3", label="table look-up, random number fixed")
axes[0].plot(mus, z_path, color="C0", label="mu + sigma * eps, eps fixed")
axes[0].set(title="(a) one draw z as mu moves", xlabel="mu", ylabel="z")
axes[0].legend(fontsize=8)
axes[1].plot(mus, f(z_table[:, None], x), color="C3", label="f(z), table draw")
axes[1].plot(mus, f(z_path[:, None], x), color="C0", label="f(z), reparameterized draw")
axes[1].plot(mus, [expected_f(np.array([v]), logvar, x) for v in mus], "k--", label="E_q[f(z)]")
axes[1].set(title="(b) flat steps carry no gradient", xlabel="mu", ylabel="log p(x|z)")
axes[1].legend(fontsize=8)
fig.tight_layout()
run.save(fig, "sampling_blocks_gradient")

# %% [markdown]
# ## The two estimators, one sample at a time
#
# Both are built from library pieces: `gaussian_log_density_grad(z, mu, logvar)` is the score
# $\partial \log q(z) / \partial(\mu, \log\sigma^2)$; the decoder's `log_likelihood_grad(x, z)[0]`
# is $df/dz$; and `reparameterize_backward` carries $df/dz$ back to $\mu$ and $\log\sigma^2$. A
# baseline $b$ subtracted from $f$ keeps the score-function estimator unbiased
# ($\mathbb{E}_q[\partial \log q] = 0$) and shrinks its variance; we use $b = f(\mu)$, which does
# not depend on the sample.
#
# The pathwise single-sample gradient with $\epsilon$ frozen is also checked against central
# differences: that is the gradient the VAE back-propagates.

# %%
def score_function(mu, logvar, x, eps, baseline=0.0):
    """One score-function estimate of (d/dmu, d/dlogvar) E_q[f] per row of eps."""
    z = reparameterize(mu, logvar, eps)               # any way of drawing z ~ q would do
    dmu_logq, dlogvar_logq, _ = gaussian_log_density_grad(z, mu, logvar)
    weight = (f(z, x) - baseline)[:, None]
    return weight * dmu_logq, weight * dlogvar_logq


def pathwise(mu, logvar, x, eps):
    """One pathwise estimate of (d/dmu, d/dlogvar) E_q[f] per row of eps."""
    z = reparameterize(mu, logvar, eps)
    dz = decoder(z.shape[1]).log_likelihood_grad(np.broadcast_to(x, z.shape), z)[0]   # df/dz
    return reparameterize_backward(dz, np.broadcast_to(logvar, eps.shape), eps)


eps1 = rng.standard_normal((1, 1))
dmu1, dlogvar1 = pathwise(mu, logvar, x, eps1)
mu_, logvar_ = mu.copy(), logvar.copy()
one_sample = lambda: f(reparameterize(mu_, logvar_, eps1), x).sum()
run.check("pathwise d/dmu, eps frozen, vs central differences", dmu1[0, 0],
          numerical_gradient(one_sample, mu_)[0], tol=1e-8)
run.check("pathwise d/dlogvar, eps frozen, vs central differences", dlogvar1[0, 0],
          numerical_gradient(one_sample, logvar_)[0], tol=1e-8)

eps = rng.standard_normal((N, 1))
estimates = {"score function": score_function(mu, logvar, x, eps),
             "score function, baseline f(mu)": score_function(mu, logvar, x, eps, f(mu[None], x)[0]),
             "pathwise": pathwise(mu, logvar, x, eps)}
print(f"  unbiased? mean of {N} single-sample estimates of d/dmu (exact {dmu_exact[0]:.4f}):")
for name, (dmu_hat, _) in estimates.items():
    m, se = dmu_hat.mean(), dmu_hat.std() / np.sqrt(N)
    print(f"    {name:<32} {m:8.4f} +- {se:.4f}   (std of one sample {dmu_hat.std():7.3f}, "
          f"{abs(m - dmu_exact[0]) / se:.1f} standard errors from exact)")
    assert abs(m - dmu_exact[0]) < 5 * se, f"{name} looks biased"

# %% [markdown]
# ## Variance against latent size
#
# With $Z$ latent dimensions $f(z)$ sums $Z$ terms, so the score function multiplies the noise of
# $\partial \log q / \partial \mu_1$ by a number that grows with $Z$, and its variance grows with
# $Z$ (eventually like $Z^2$, since $\mathbb{E}_q[f]$ itself grows like $Z$). The baseline lowers
# it, but $f(\mu)$ is not $\mathbb{E}_q[f]$, so the growth remains; only the pathwise estimate of
# $\partial / \partial \mu_1$, which sees $\partial f / \partial z_1$ alone, stays put.

# %%
sizes = [1, 2, 4, 8, 16, 32, 64]
n_var = run.pick(fast=5_000, full=50_000)
variances = {name: [] for name in estimates}
for Z in sizes:
    xz, muz, logvarz = np.ones(Z), np.full(Z, mu[0]), np.full(Z, logvar[0])
    e = rng.standard_normal((n_var, Z))
    for name, (dmu_hat, _) in {
            "score function": score_function(muz, logvarz, xz, e),
            "score function, baseline f(mu)": score_function(muz, logvarz, xz, e, f(muz[None], xz)[0]),
            "pathwise": pathwise(muz, logvarz, xz, e)}.items():
        variances[name].append(dmu_hat[:, 0].var())
for name, v in variances.items():
    print(f"    variance of d/dmu_1, {name:<32} Z=1: {v[0]:9.2f}   Z=64: {v[-1]:11.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
colors = {"score function": "C3", "score function, baseline f(mu)": "C1", "pathwise": "C0"}
bins = np.linspace(-60, 60, 121)
for name, (dmu_hat, _) in estimates.items():
    axes[0].hist(dmu_hat[:, 0], bins=bins, density=True, histtype="step", lw=1.5,
                 color=colors[name], label=name)
axes[0].axvline(dmu_exact[0], color="k", ls="--", label="exact gradient")
axes[0].set(title="(a) single-sample estimates of d/dmu E_q[f]", xlabel="estimate",
            ylabel="density", yscale="log")
axes[0].legend(fontsize=8)

n = np.arange(1, N + 1)
for name, (dmu_hat, _) in estimates.items():
    axes[1].plot(n, np.cumsum(dmu_hat[:, 0]) / n, color=colors[name], lw=1, label=name)
axes[1].axhline(dmu_exact[0], color="k", ls="--", label="exact gradient")
axes[1].set(title="(b) both unbiased: running means", xlabel="samples averaged", xscale="log",
            ylabel="running mean of the estimates", ylim=(dmu_exact[0] - 6, dmu_exact[0] + 6))
axes[1].legend(fontsize=8)

for name, v in variances.items():
    axes[2].plot(sizes, v, "o-", color=colors[name], label=name)
axes[2].set(title="(c) variance of one estimate of d/dmu_1", xlabel="latent size Z",
            ylabel="variance", xscale="log", yscale="log")
axes[2].set_xticks(sizes, [str(s) for s in sizes])
axes[2].legend(fontsize=8)
fig.tight_layout()
run.save(fig, "estimators")

# %% [markdown]
# ## The notes' version: a covariance used as a standard deviation
#
# The lecture notes (note 002) give the trick as: draw $z_0$ from $\mathcal{N}(0, 1)$, then set
#
# $$z = \mu_{x | z} + z_0 \Sigma_{x | z} \sim \mathcal{N}(\mu_{x | z}, \Sigma_{x | z})$$
#
# that is, $z$ = (decoder's mean) + $z_0$ times (decoder's covariance), claimed to be distributed
# $\mathcal{N}(\text{mean}, \text{covariance})$. Two things are wrong. The mean and covariance are
# the encoder's, $\mu_{z \mid x}$ and $\Sigma_{z \mid x}$ (the names the notes give the encoder's
# outputs just before), not the decoder's $\mu_{x \mid z}$ and $\Sigma_{x \mid z}$. And multiplying
# $z_0 \sim \mathcal{N}(0, 1)$ by the covariance $\Sigma$ gives a spread of $\Sigma$, so
# $z \sim \mathcal{N}(\mu, \Sigma^2)$: the noise must be scaled by a standard deviation,
# $\Sigma^{1/2} = \sigma = \exp(\log\sigma^2 / 2)$, which is what `reparameterize` does. The notes'
# draws are too narrow when $\Sigma < 1$ and too wide when $\Sigma > 1$; they are right only at
# $\Sigma = 1$.

# %%
mu0 = 1.0
variances_sigma2 = np.array([0.25, 4.0])
eps = rng.standard_normal((N, 1))
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
for ax, Sigma in zip(axes[:2], variances_sigma2):
    lv = np.array([np.log(Sigma)])
    z_right = reparameterize(np.array([mu0]), lv, eps)[:, 0]
    z_note = mu0 + eps[:, 0] * Sigma                     # the notes' formula
    run.check(f"std of reparameterize draws vs sqrt(Sigma), Sigma = {Sigma}", z_right.std(),
              np.sqrt(Sigma), tol=2e-2)
    print(f"  the notes' draws: std {z_note.std():.3f}, should be {np.sqrt(Sigma):.3f} "
          f"(relative error {abs(z_note.std() - np.sqrt(Sigma)) / np.sqrt(Sigma):.0%})")
    t = np.linspace(mu0 - 4 * max(Sigma, 1), mu0 + 4 * max(Sigma, 1), 400)
    b = np.linspace(t[0], t[-1], 80)
    ax.hist(z_right, bins=b, density=True, alpha=0.5, color="C0", label="mu + sigma * eps")
    ax.hist(z_note, bins=b, density=True, alpha=0.5, color="C3", label="mu + Sigma * eps (the notes)")
    ax.plot(t, np.exp(gaussian_log_density(t[:, None], np.array([mu0]), lv)), "k",
            label="target N(mu, Sigma)")
    ax.set(title=f"Sigma = {Sigma} (sigma = {np.sqrt(Sigma):g})", xlabel="z", ylabel="density")
    ax.legend(fontsize=8)

Sigmas = np.geomspace(0.05, 10, 30)
e = rng.standard_normal(run.pick(fast=5_000, full=50_000))
axes[2].plot(Sigmas, [(np.sqrt(S) * e).std() for S in Sigmas], "o", color="C0", ms=4,
             label="mu + sigma * eps")
axes[2].plot(Sigmas, [(S * e).std() for S in Sigmas], "s", color="C3", ms=4,
             label="mu + Sigma * eps (the notes)")
axes[2].plot(Sigmas, np.sqrt(Sigmas), "k", label="wanted: sqrt(Sigma)")
axes[2].set(title="spread of the draws", xlabel="Sigma (a variance)", ylabel="std of z",
            xscale="log", yscale="log")
axes[2].legend(fontsize=8)
fig.tight_layout()
run.save(fig, "note002_spread")

# %% [markdown]
# ## What to remember
#
# * A sampled $z$ carries no derivative; $z = \mu + \sigma \epsilon$ with $\epsilon$ drawn outside
#   does.
# * Score function and pathwise estimators have the same mean, the exact gradient; the pathwise
#   one has a much smaller variance here, and its variance does not grow with the latent size.
#   The score function needs no derivative of $f$, which is why it survives for discrete $z$.
# * Scale $\epsilon$ by the standard deviation $\sigma = \exp(\log\sigma^2 / 2)$, never by the
#   variance.
#
# ## Exercises
#
# Start a workbook once, if you have not yet (`scratchvae exercises start my-workbook`); this
# lesson's functions are in `my-workbook/06_reparameterization.py`, graded with
# `scratchvae exercises check my-workbook reparameterize reparameterize_backward`. Worked answers
# to the questions: `lessons/answers/06_reparameterization.md`.
#
# 1. **The trick** (code): `reparameterize(mu, logvar, eps)`, $z = \mu + \sigma \epsilon$ with
#    $\sigma = \exp(\text{logvar} / 2)$. `eps` may carry leading sample axes, $(S, B, Z)$ against
#    `mu` of shape $(B, Z)$. `scratchvae exercises check my-workbook reparameterize`
# 2. **Its backward** (code): `reparameterize_backward(dz, logvar, eps)`, returning `(dmu, dlogvar)`
#    from the upstream gradient `dz`: derive $\partial z / \partial \mu$ and
#    $\partial z / \partial \text{logvar}$ from $z = \mu + \exp(\text{logvar} / 2) \, \epsilon$, and
#    sum over any leading sample axes of `dz` (several samples of $z$ share one `mu` and `logvar`).
#    `scratchvae exercises check my-workbook reparameterize_backward`
# 3. **The pathwise estimator, exactly** (question). In the test problem,
#    $f(z) = \log \mathcal{N}(x; z, s_x^2)$ with one latent dimension. Write the single-sample
#    pathwise estimates of $\partial / \partial \mu$ and $\partial / \partial \log\sigma^2$ as
#    functions of $\epsilon$, show that their means are the exact gradients $(x - \mu) / s_x^2$ and
#    $-\sigma^2 / (2 s_x^2)$, and compute the variance of the $\partial / \partial \mu$ estimate for
#    the lesson's numbers ($x = 1$, $\mu = 0.2$, $\sigma = 0.6$, $s_x = 0.5$). Compare with the
#    variance the lesson measures.
# 4. **The same mistake in code** (question). A common bug writes `mu + exp(logvar) * eps`. Which
#    distribution do its draws have, how is it related to the notes' formula, and how far off is the
#    spread at $\text{logvar} = -4$ and at $\text{logvar} = 2$? Why can a VAE with this bug still
#    train?
