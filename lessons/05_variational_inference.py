# %% [markdown]
# # Lesson 5: variational inference and the ELBO
#
# For a latent-variable model $p(x, z \mid \theta) = p(x \mid z, \theta) \, p(z)$, the evidence
# $\log p(x \mid \theta) = \log \int p(x, z \mid \theta) \, dz$ is an integral we cannot do in
# general. For *any* distribution $q(z)$, though,
#
# $$
# \begin{aligned}
# \log p(x \mid \theta) &= \operatorname{elbo}(q, \theta) + \mathrm{KL}\big(q(z) \,\|\, p(z \mid x, \theta)\big) \\
# \operatorname{elbo}(q, \theta) &= \mathbb{E}_q\left[\log p(x, z \mid \theta) - \log q(z)\right] \\
# &= \mathbb{E}_q\left[\log p(x \mid z, \theta)\right] - \mathrm{KL}\big(q(z) \,\|\, p(z)\big)
# \end{aligned}
# $$
#
# Because $\mathrm{KL} \ge 0$, $\operatorname{elbo} \le \log p(x \mid \theta)$: the ELBO is a lower
# bound, and the gap is exactly how far $q$ is from the true posterior. Maximizing the ELBO over $q$
# ($\log p(x)$ does not depend on $q$) pulls $q$ toward $p(z \mid x)$; maximizing over $\theta$ then
# raises $\log p(x)$ or tightens the bound. A VAE does both at once, with
# $q(z \mid x) = \mathcal{N}(\mu, \operatorname{diag}(\sigma^2))$, its $\mu$ and $\log\sigma^2$ given
# by an encoder, and $\mathrm{KL}(q \,\|\, \mathcal{N}(0, I))$ in closed form.
#
# Everything below is computed for the deep latent-variable model of lesson 3, with one latent
# dimension and 100 observed ones (an "image" of 100 pixels), where integrals over $z$ can be done
# on a fine grid, so every term is exact to ~1e-12 and each identity can be checked.

# %%
import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize

from _lesson import Lesson
from scratchvae.distributions import (LOG_2PI, gaussian_log_density, kl_standard_normal,
                                      kl_standard_normal_grad, logsumexp, standard_normal_log_density)
from scratchvae.models.deep_lvm import DeepLVM
from scratchvae.gradcheck import THRESHOLD, check_gradients, format_report
from scratchvae.models.linear_gaussian import LinearGaussian

run = Lesson("05_variational_inference")

model = DeepLVM.random(x_dim=100, z_dim=1, scale=3.0, seed=0)      # theta = (A, B, c, d)
x, z_true = model.sample(2, np.random.default_rng(1))
x, z_true = x[1:], z_true[1:]                                      # one image x, shape (1, 100)

z = np.linspace(-8.0, 8.0, 4001)[:, None]                         # quadrature grid over z
dz = z[1, 0] - z[0, 0]
log_lik = model.log_prob(np.repeat(x, len(z), axis=0), z)          # log p(x|z) on the grid
log_joint = log_lik + standard_normal_log_density(z)             # log p(x, z)
log_px = float(logsumexp(log_joint) + np.log(dz))                # log p(x) = log ∫ p(x, z) dz
log_post = log_joint - log_px                                      # log p(z|x)
print(f"  log p(x) = {log_px:.6f} nats  (the true z was {z_true[0, 0]:.3f})")
run.check("posterior integrates to 1", np.exp(logsumexp(log_post) + np.log(dz)), 1.0, tol=1e-10)

# %% [markdown]
# ## The three terms for any Gaussian $q$
#
# $q(z) = \mathcal{N}(\mu, \sigma^2)$, $\sigma^2 = \exp(\text{logvar})$. On the grid, $z$ spaced
# $\Delta z$ apart:
#
# $$
# \begin{aligned}
# \operatorname{elbo} &= \sum_z q(z) \left(\log p(x, z) - \log q(z)\right) \Delta z, \\
# \mathrm{KL}(q \,\|\, p(z \mid x)) &= \sum_z q(z) \left(\log q(z) - \log p(z \mid x)\right) \Delta z.
# \end{aligned}
# $$
#
# The second form of the ELBO uses the library's closed-form `kl_standard_normal(mu, logvar)` for
# $\mathrm{KL}(q \,\|\, p(z))$.

# %%
def terms(mu, logvar):
    """elbo, its two-term form, and KL(q || p(z|x)) for q = N(mu, exp(logvar)) (scalars)."""
    log_q = gaussian_log_density(z, np.array([mu]), np.array([logvar]))
    q = np.exp(log_q)
    elbo = float((q * (log_joint - log_q)).sum() * dz)
    elbo_two_terms = float((q * log_lik).sum() * dz
                           - kl_standard_normal(np.array([mu]), np.array([logvar])))
    kl_post = float((q * (log_q - log_post)).sum() * dz)
    return elbo, elbo_two_terms, kl_post


for mu, logvar in [(0.0, 0.0), (1.0, np.log(0.1)), (-0.5, np.log(0.5))]:
    elbo, elbo_two_terms, kl_post = terms(mu, logvar)
    print(f"  q = N({mu}, {np.exp(logvar):.2f}):  elbo = {elbo:.4f}, KL(q || p(z|x)) = {kl_post:.4f}")
    run.check("log p(x) = elbo + KL(q || p(z|x))", elbo + kl_post, log_px, tol=1e-10)
    run.check("elbo = E_q log p(x|z) - KL(q || p(z))", elbo_two_terms, elbo, tol=1e-10)

# %% [markdown]
# ## The closed-form KL and its gradient
#
# For $q = \mathcal{N}(\mu, \operatorname{diag}(\sigma^2))$ and $p(z) = \mathcal{N}(0, I)$
# (Kingma & Welling 2013, appendix B):
#
# $$
# \begin{aligned}
# \mathrm{KL} &= \frac{1}{2} \sum_j \left(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\right), \qquad
# \sigma_j^2 = \exp(\log\sigma_j^2), \\
# \frac{\partial \mathrm{KL}}{\partial \mu} &= \mu, \qquad
# \frac{\partial \mathrm{KL}}{\partial \log\sigma^2} = \frac{1}{2} \left(\sigma^2 - 1\right)
# \end{aligned}
# $$
#
# Checked against the quadrature and, for the gradients, against central differences of the
# library's own `kl_standard_normal` on a batch, every entry of both tensors.

# %%
log_q = gaussian_log_density(z, np.array([0.7]), np.array([np.log(0.3)]))
kl_quad = float((np.exp(log_q) * (log_q - standard_normal_log_density(z))).sum() * dz)
run.check("closed-form KL(N(0.7, 0.3) || N(0, 1)) vs quadrature",
          float(kl_standard_normal(np.array([0.7]), np.array([np.log(0.3)]))), kl_quad, tol=1e-10)

rng = np.random.default_rng(run.seed)
params = {"mu": rng.standard_normal((4, 3)), "logvar": rng.normal(0.0, 0.5, (4, 3))}
dmu, dlogvar = kl_standard_normal_grad(params["mu"], params["logvar"])
reports = check_gradients(lambda: kl_standard_normal(params["mu"], params["logvar"]).sum(),
                          params, {"mu": dmu, "logvar": dlogvar})
print(format_report(reports))
assert all(r.worst < THRESHOLD for r in reports), "the KL gradient disagrees with central differences"

# %% [markdown]
# ## Maximizing the bound
#
# The best Gaussian $q$ maximizes the ELBO; since $\log p(x)$ is fixed, it is the Gaussian closest
# to the posterior in $\mathrm{KL}(q \,\|\, p)$. The posterior of this nonlinear model is skewed, so
# even the best Gaussian leaves a gap: $\mathrm{KL}(q^* \,\|\, p(z \mid x)) > 0$.

# %%
best = minimize(lambda v: -terms(*v)[0], x0=[0.0, 0.0], method="Nelder-Mead",
                options=dict(xatol=1e-6, fatol=1e-10))
mu_star, logvar_star = best.x
elbo_star, _, gap_star = terms(mu_star, logvar_star)
print(f"  best q = N({mu_star:.4f}, {np.exp(logvar_star):.4f}): elbo = {elbo_star:.4f} <= "
      f"log p(x) = {log_px:.4f}, gap KL(q* || p(z|x)) = {gap_star:.4f} nats")

# %% [markdown]
# When the family does contain the posterior, the bound is tight. In the linear-Gaussian model
# $z \sim \mathcal{N}(0, 1)$, $x \mid z \sim \mathcal{N}(W z + b, s^2 I)$ (probabilistic PCA) the
# posterior is Gaussian, and choosing $q = p(z \mid x)$ makes the ELBO equal $\log p(x)$, all in
# closed form (`linear_gaussian`):

# %%
lg = LinearGaussian.random(x_dim=3, z_dim=1, s=0.5, seed=0)
x_lg, _ = lg.sample(4, np.random.default_rng(2))
m, Sigma = lg.posterior(x_lg)
logvar_post = np.full_like(m, np.log(Sigma[0, 0]))
run.check("linear-Gaussian: elbo(q = p(z|x)) vs log p(x)", lg.elbo(x_lg, m, logvar_post),
          lg.log_marginal(x_lg), tol=1e-12)

# %% [markdown]
# ## What the lecture notes get wrong
#
# The lecture notes this course follows derive the same decomposition and the same bound. Five of
# their statements are wrong; each is stated here (quoted where the error is in the formula itself),
# then set right and, where it changes a number, measured.
#
# **1. The second term is not $\mathrm{KL}(q \,\|\, q)$.** The notes (note 001) state the
# decomposition as
#
# $$\ln p(X|\theta) = \mathcal{L}(q, \theta)  + KL(q\|q)$$
#
# But $\mathrm{KL}(q \,\|\, q) = 0$ for every $q$, so this would make
# $\mathcal{L}(q, \theta) = \ln p(X \mid \theta)$ for *every* $q$: the bound would always be tight,
# and there would be nothing to optimize. The second term is
# $\mathrm{KL}(q \,\|\, p(Z \mid X, \theta))$, the divergence from $q$ to the posterior (which is
# how the notes go on to define the KL). The checks above measured it: $\mathcal{L} = \log p(x)$
# only when $q$ is the posterior.
#
# **2. The bound is on $\ln p(X)$, not $\ln p(Z)$.** The notes conclude
#
# > Therefore, $\mathcal{L}(q, \theta) \le \ln p(Z\|\theta)$, in other words that $\mathcal{L}(q, \theta)$ is a lower bound of  $\ln p(Z\|\theta)$.
#
# It is $\ln p(X \mid \theta)$, the evidence of the data, that $\mathcal{L}$ bounds; $p(Z)$ is the
# prior, about which the bound says nothing. In the same way their introduction describes learning
# as "maximizing the marginal log-likelihood $p(z)$ over the parameter $\theta$ and latent variable
# $z$": what is maximized is $\log p(x)$, over $\theta$, with $z$ integrated out rather than
# optimized.
#
# **3. A flipped sign: the ELBO's KL term is subtracted.** Splitting $\mathcal{L}$ into a
# reconstruction part and a prior part, the notes first write, correctly,
#
# $$
# \mathcal{L} = \sum_Z q(Z) \ln p(X \mid Z) + \sum_Z q(Z) \ln \frac{p(Z)}{q(Z)},
# $$
#
# and then replace the second sum by **plus** $\mathrm{KL}(q(Z) \,\|\, p(Z))$:
#
# $$
# \begin{aligned}
# &=  \sum_{Z}q(Z) \ln p(X|Z) + KL(q(Z)\| p(Z)) \\
# &= E_{q(Z)} log p(X|Z) + KL(q(Z)\| p(Z))
# \end{aligned}
# $$
#
# But $\sum_Z q \ln (p(Z) / q(Z))$ is **minus** $\mathrm{KL}(q \,\|\, p(Z))$. With the plus sign the
# expression is no lower bound: it exceeds $\log p(x)$, and it grows without limit as $q$ shrinks
# to a point ($\mathrm{KL}(q \,\|\, p(z))$ contains $-\frac{1}{2} \log\sigma^2$), so maximizing it
# would collapse the encoder instead of fitting it (measured below). Their proof of the
# decomposition also loses a minus sign for one line: from
# $\mathrm{KL}(q \,\|\, p(Z \mid X)) = -\sum_Z q \ln \frac{p(X, Z)}{q \, p(X)}$ it goes on to
# "$= \sum_{Z} q(Z) \ln\frac{p(X,Z)}{q(Z)} + \dots$", that is
# $+\sum_Z q \ln \frac{p(X, Z)}{q} + \ln p(X)$, where the first sum should carry a minus; the next
# line has it again.
#
# **4. A bound on $\log p$, written for $p$.** The notes (note 002) state the bound as
# $p_\theta (x^{(i)}) \geq \mathcal{L}(x^{(i)}, \theta, \phi)$, on the likelihood
# $p_\theta(x^{(i)})$ itself. The bound is on $\log p_\theta(x^{(i)})$. As written the inequality
# is true but empty: the ELBO of an image is a large negative number (about $-170$ nats here) and
# every probability is positive. (The notes' version of the reparameterization is the subject of
# lesson 6.)

# %%
def note001_objective(mu, logvar):
    """The notes' flipped sign (error 3): E_q log p(x|z) + KL(q || p(z))."""
    elbo, _, _ = terms(mu, logvar)
    return elbo + 2 * float(kl_standard_normal(np.array([mu]), np.array([logvar])))


print(f"  with KL(q||q) = 0 the notes' identity says L = log p(x) for every q; but for q = N(0, 1) "
      f"L = {terms(0.0, 0.0)[0]:.3f} and log p(x) = {log_px:.3f}")
for sigma in (0.3, 0.03, 0.003):
    print(f"  the flipped-sign objective at q = N({mu_star:.2f}, {sigma}^2): "
          f"{note001_objective(mu_star, 2 * np.log(sigma)):9.3f}   vs log p(x) = {log_px:.3f}")
assert note001_objective(mu_star, logvar_star) > log_px        # no lower bound

# %% [markdown]
# **5. A constant dropped from the Gaussian likelihood.** The notes (note 003) give the negative
# log-likelihood of a Gaussian decoder with mean $\mu_x$ and variances $\sigma_x^2$ as
#
# $$-\log(p(x^{(i)}|z^{(i)})) = \sum_{j=1}^D \frac{1}{2} \log(\sigma_{x_j}^2) + \frac{(x_j^{(i)} - \mu_{x_j})^2}{2\sigma_{x_j}^2}$$
#
# which leaves out the constant $\frac{D}{2} \log 2\pi$. The gradients do not change, but the
# numbers are then not nats: an ELBO computed this way is $\frac{D}{2} \log 2\pi$ too high (514.6
# nats for a 560-pixel Frey Face image) and cannot be compared with published log-likelihoods
# (lesson 8).

# %%
x3, mu3, logvar3 = rng.uniform(0, 1, (2, 560)), rng.uniform(0, 1, (2, 560)), rng.normal(-3, 1, (2, 560))
note003_nll = (0.5 * logvar3 + (x3 - mu3) ** 2 / (2 * np.exp(logvar3))).sum(axis=1)
run.check("-log p(x|z) - the notes' value = D/2 log 2pi",
          -gaussian_log_density(x3, mu3, logvar3) - note003_nll, np.full(2, 280 * LOG_2PI), tol=1e-12)

# %% [markdown]
# ## The picture
#
# (a) prior, posterior and the best Gaussian $q$; (b) moving $q$'s mean with its variance fixed at
# the best: the ELBO touches $\log p(x)$ only up to the gap $\mathrm{KL}(q \,\|\, p(z \mid x))$,
# while the flipped-sign version climbs above $\log p(x)$; (c) the ELBO over
# $(\mu, \log\sigma^2)$ with its maximum.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
t = z[:, 0]
axes[0].plot(t, np.exp(standard_normal_log_density(z)), color="0.5", label="prior p(z)")
axes[0].plot(t, np.exp(log_post), "k", lw=2, label="posterior p(z|x)")
axes[0].plot(t, np.exp(gaussian_log_density(z, np.array([mu_star]), np.array([logvar_star]))),
             "C0--", lw=2, label=f"best Gaussian q*\nKL(q* || p(z|x)) = {gap_star:.3f}")
axes[0].axvline(z_true[0, 0], color="C2", ls=":", label="z that made x")
axes[0].set(xlim=(-3, 3), title="(a) the posterior is not Gaussian", xlabel="z", ylabel="density")
axes[0].legend(fontsize=8)

mus = np.linspace(mu_star - 1.0, mu_star + 1.0, run.pick(fast=41, full=161))
elbos = np.array([terms(m, logvar_star)[0] for m in mus])
note = np.array([note001_objective(m, logvar_star) for m in mus])
axes[1].axhline(log_px, color="k", label="log p(x)")
axes[1].plot(mus, elbos, "C0", lw=2, label="elbo(q)")
axes[1].fill_between(mus, elbos, log_px, color="C0", alpha=0.2, label="gap = KL(q || p(z|x))")
axes[1].plot(mus, note, "C3--", lw=2, label="flipped sign: E log p(x|z) + KL(q || p(z))")
axes[1].set(ylim=(log_px - 8, log_px + 4), title="(b) the bound as q's mean moves",
            xlabel=f"mu of q (variance fixed at {np.exp(logvar_star):.3f})", ylabel="nats")
axes[1].legend(fontsize=8, loc="lower center")

n = run.pick(fast=25, full=81)
grid_mu = np.linspace(mu_star - 1.5, mu_star + 1.5, n)
grid_logvar = np.linspace(logvar_star - 3.0, logvar_star + 3.0, n)
E = np.array([[terms(m, lv)[0] for m in grid_mu] for lv in grid_logvar])
im = axes[2].imshow(np.maximum(E, log_px - 30), origin="lower", aspect="auto", cmap="viridis",
                    extent=[grid_mu[0], grid_mu[-1], grid_logvar[0], grid_logvar[-1]])
axes[2].contour(grid_mu, grid_logvar, E, levels=log_px - np.array([20, 10, 5, 2, 1, 0.5]),
                colors="w", linewidths=0.7, linestyles="solid")
axes[2].plot(mu_star, logvar_star, "r*", ms=12, label="maximum: q*")
axes[2].set(title="(c) elbo(mu, logvar), clipped 30 nats below log p(x)", xlabel="mu",
            ylabel="logvar")
axes[2].legend(fontsize=8)
fig.colorbar(im, ax=axes[2], label="nats")
fig.tight_layout()
run.save(fig, "elbo_decomposition")

# %% [markdown]
# ## What to remember
#
# * $\log p(x) = \operatorname{elbo} + \mathrm{KL}(q \,\|\, p(z \mid x))$ holds for every $q$; the
#   ELBO is a bound because $\mathrm{KL} \ge 0$.
# * The ELBO's second form, $\mathbb{E}_q \log p(x \mid z)$ **minus** $\mathrm{KL}(q \,\|\, p(z))$,
#   is what a VAE computes; the KL has a closed form for Gaussians, with gradients $\mu$ and
#   $(\sigma^2 - 1) / 2$ (with respect to $\mu$ and $\log\sigma^2$).
# * The best $q$ within a family still leaves a gap when the posterior is outside the family
#   (lesson 9 measures it for a trained VAE).
#
# ## Exercises
#
# Start a workbook once, if you have not yet (`scratchvae exercises start my-workbook`); this
# lesson's functions are in `my-workbook/05_kl.py`, graded with
# `scratchvae exercises check my-workbook kl_standard_normal kl_standard_normal_grad`. Worked
# answers to the questions: `lessons/answers/05_variational_inference.md`.
#
# 1. **The closed-form KL** (code): `kl_standard_normal(mu, logvar)`,
#    $\mathrm{KL}\big(\mathcal{N}(\mu, \operatorname{diag}(\exp(\text{logvar}))) \,\|\, \mathcal{N}(0, I)\big)$,
#    one value per row (summed over the last axis).
#    `scratchvae exercises check my-workbook kl_standard_normal`
# 2. **Its gradient** (code): `kl_standard_normal_grad(mu, logvar)`, returning `(dmu, dlogvar)`, each
#    shaped like `mu`. `scratchvae exercises check my-workbook kl_standard_normal_grad`
# 3. **Where the closed form comes from** (question). For one dimension, compute
#    $\mathbb{E}_q[\log q(z)]$ and $\mathbb{E}_q[\log \mathcal{N}(z; 0, 1)]$ for
#    $q = \mathcal{N}(\mu, \sigma^2)$ and subtract them to get
#    $\frac{1}{2} (\mu^2 + \sigma^2 - 1 - \log\sigma^2)$. Which $q$ makes the KL zero, and what does
#    the gradient say the KL term does to an encoder's $\mu$ and $\log\sigma^2$ during training?
#    Then evaluate it for $q = \mathcal{N}(0.7, 0.3)$, the case the lesson checks against
#    quadrature.
# 4. **How fast does the flipped sign run away?** (question). For the notes' objective
#    $\mathbb{E}_q \log p(x \mid z) + \mathrm{KL}(q \,\|\, p(z))$, find how much it grows each time
#    $\sigma$ shrinks tenfold once $\sigma$ is small, and compare with the three values the lesson
#    prints. Why would an encoder trained on it collapse?
