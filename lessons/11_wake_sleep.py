# %% [markdown]
# # Lesson 11: wake-sleep, the algorithm AEVB was compared with
#
# Full mode takes a few minutes on 2 CPU cores (two models of $10^6$ samples on Frey Face); fast
# mode runs on scikit-learn's 8 x 8 digits in seconds.
#
# Figure 2 of Kingma & Welling (2013) puts AEVB beside the wake-sleep algorithm (Hinton et al.
# 1995), run with the same encoder (there called the recognition model), decoder, optimizer and
# prior. Wake-sleep trains the two networks in two phases, each on its own objective:
#
# $$
# \begin{aligned}
# &\text{wake:} && x \text{ from the data},\ z \sim q(z|x), &&
#   \text{decoder } \theta\text{: maximize } \log p(x|z), \\
# &\text{sleep:} && z \sim p(z),\ \text{a "dream" } x \sim p(x|z), &&
#   \text{encoder } \phi\text{: maximize } \log q(z|x)
# \end{aligned}
# $$
#
# (`scratchvae.models.wake_sleep.WakeSleep`, a `VAE` with another `backward`.) This lesson writes
# both phases' gradients by hand and checks them, shows that the wake phase is half of AEVB's
# gradient, that the sleep phase is not the other half, what the sleep phase fits instead, and
# how the two algorithms' bounds compare in training.

# %%
import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
import scipy.optimize

from _lesson import Lesson
import scratchvae.models.wake_sleep
from scratchvae import VAE, Adagrad, Adam
from scratchvae.distributions import gaussian_log_density, reparameterize
from scratchvae.gradcheck import THRESHOLD, numerical_gradient
from scratchvae.models.linear_gaussian import LinearGaussian
from scratchvae.models.wake_sleep import WakeSleep
from scratchvae.training.trainer import Trainer

run = Lesson("11_wake_sleep")
data = run.load("frey")
x_dim = data.train.shape[1]
print(f"  {data.split}; {data.likelihood} decoder")

# %% [markdown]
# ## The wake phase is the decoder's half of the ELBO's gradient
#
# The ELBO is $\mathbb{E}_q[\log p(x|z)] - \mathrm{KL}(q(z|x) \,\|\, p(z))$; the KL term holds no
# decoder parameter, so the ELBO's gradient with respect to $\theta$ is the gradient of $\log p(x|z)$
# at $z \sim q(z|x)$: the wake phase. With the same $\epsilon$, a VAE's decoder gradients and
# wake-sleep's must agree to round-off (no weight prior here, so that only the two phases are
# compared):

# %%
x = data.train[:50].astype(np.float64)
eps = np.random.default_rng(run.seed).standard_normal((1, 50, 3))
common = dict(z_dim=3, hidden_dims=(16,), likelihood=data.likelihood, activation="tanh",
              dtype="float64", seed=run.seed)
vae, ws = VAE(x_dim, **common), WakeSleep(x_dim, **common)
vae.loss_and_grads(x, eps=eps)
ws.zero_grad()
ws.wake(x, eps=eps)
for name in ("decoder.net.0.W", "decoder.net.2.b"):
    run.check(f"wake gradient = ELBO gradient, {name}", ws.gradients()[name], vae.gradients()[name],
              tol=1e-12)
ws.sleep(*ws.dream(50))
name = "encoder.0.W"
gap = np.abs(ws.gradients()[name] - vae.gradients()[name]).max() / np.abs(vae.gradients()[name]).max()
print(f"  the encoder's gradients differ: max |sleep - ELBO| / max |ELBO| = {gap:.2f} for {name}")

# %% [markdown]
# ## The wake gradient by hand
#
# The wake phase on a minibatch: $z = \mu + \exp(\tfrac12 \log\sigma^2) \odot \epsilon$ from the
# encoder, then the gradient of $-\frac{1}{SB} \sum_{s,b} \log p(x_b|z_{sb})$ for the decoder's
# weights only. $z$ is held fixed, as if the encoder's guess were the true cause: the decoder's
# backward of $\text{dlogp} = -1/(SB)$ (step 2 of lesson 7's backward), and nothing goes on to the
# encoder. Written out with the library's pieces:

# %%
S, B = eps.shape[:2]
mu, logvar = ws.encode(x)
z = reparameterize(mu, logvar, eps).reshape(S * B, -1)
ws.zero_grad()                                       # so that only what follows fills them
ws.decoder.forward(z)
ws.decoder.log_prob(x)
ws.decoder.backward(np.full(S * B, -1.0 / (S * B)))
for name in ("decoder.net.0.W", "decoder.net.2.b"):
    run.check(f"wake gradient by hand = ELBO gradient, {name}", ws.gradients()[name], vae.gradients()[name],
              tol=1e-12)

# %% [markdown]
# ## The sleep gradient by hand
#
# The sleep phase gets dreams: pairs $(z, x)$ with $z \sim p(z)$ and $x \sim p(x|z)$, so the cause $z$
# of each $x$ is known. The encoder is fitted to recover it, by maximum likelihood: it maximizes
# $\log q(z|x)$, that is it minimizes, for $[\mu, \log\sigma^2] = \operatorname{encoder}(x)$ and
# $v = \exp(\log\sigma^2)$,
#
# $$
# -\log q(z|x) = \frac12 \sum_j \Bigl[\log 2\pi + \log\sigma_j^2 + \frac{(z_j - \mu_j)^2}{v_j}\Bigr].
# $$
#
# Its derivatives, one coordinate at a time:
#
# $$
# \begin{aligned}
# \frac{\partial (-\log q)}{\partial \mu_j} &= -\frac{z_j - \mu_j}{v_j}
#   && \text{(the square's derivative, } 2 (\mu - z) / (2 v)\text{)}, \\
# \frac{\partial (-\log q)}{\partial \log\sigma_j^2} &= \frac12 \Bigl[1 - \frac{(z_j - \mu_j)^2}{v_j}\Bigr]
#   && \Bigl(\tfrac{\partial}{\partial \log\sigma^2} \exp(-\log\sigma^2) = -\exp(-\log\sigma^2)\Bigr) \\
#   &= -\frac12 \Bigl[\frac{(z_j - \mu_j)^2}{v_j} - 1\Bigr].
# \end{aligned}
# $$
#
# The first vanishes where $\mu = z$, the second where $v = (z - \mu)^2$: on average over dreams, both
# vanish where $\mu$ is the mean of the $z$ that produce such an $x$ and $v$ their variance. Averaged
# over $n$ dreams (a $1/n$), they are the encoder's output gradient, and its backward does the rest.
# No reparameterization is needed: $z$ is data here, not a sample that depends on the encoder's
# weights.

# %%
def sleep_grad(z, mu, logvar):
    """d(-log q(z|x))/dmu and d(-log q(z|x))/dlogvar, row by row, for q = N(mu, diag(exp(logvar)))."""
    v = np.exp(logvar)
    return -(z - mu) / v, -0.5 * ((z - mu) ** 2 / v - 1.0)


rng = np.random.default_rng(run.seed)
z_d, mu_d, logvar_d = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)), rng.normal(0, 0.5, (6, 3))
dmu, dlogvar = sleep_grad(z_d, mu_d, logvar_d)
run.check("sleep gradient d(-log q)/dmu vs central differences", dmu,
          numerical_gradient(lambda: -gaussian_log_density(z_d, mu_d, logvar_d).sum(), mu_d), tol=THRESHOLD)
run.check("sleep gradient d(-log q)/dlogvar vs central differences", dlogvar,
          numerical_gradient(lambda: -gaussian_log_density(z_d, mu_d, logvar_d).sum(), logvar_d), tol=THRESHOLD)

# %% [markdown]
# The same gradient chained through the encoder must give what the library's sleep phase
# (`WakeSleep.sleep(z, x)`) leaves in the encoder's tensors, on the model's own dreams. Where the
# installed library has its own `sleep_gradient(z, mu, logvar)` (the workbook exercise of that
# name), the cell prints it and checks it against `sleep_grad` too.

# %%
z_dream, x_dream = ws.dream(50, rng=np.random.default_rng(run.seed))
ws.sleep(z_dream, x_dream)
library = {name: ws.gradients()[name].copy() for name in ("encoder.0.W", "encoder.2.b")}
out = ws.encoder.forward(x_dream)
mu, logvar = out[:, :3], out[:, 3:]
dmu, dlogvar = sleep_grad(z_dream, mu, logvar)
n = z_dream.shape[0]
ws.zero_grad()
ws.encoder.backward(np.concatenate([dmu / n, dlogvar / n], axis=1), input_grad=False)
# The same numbers up to rounding: the library may divide or multiply in another order, and an
# entry of a weight's gradient that is a sum of nearly cancelling terms magnifies the difference.
for name, g in library.items():
    run.check(f"sleep gradient by hand, through the encoder = WakeSleep.sleep, {name}", ws.gradients()[name], g,
              tol=1e-9)
library_sleep_gradient = getattr(scratchvae.models.wake_sleep, "sleep_gradient", None)
if library_sleep_gradient is not None:
    print(inspect.getsource(library_sleep_gradient))
    # the library's averages over the n dreams: the 1/n that the cell above applies by hand
    for mine, theirs, what in zip((dmu / n, dlogvar / n), library_sleep_gradient(z_dream, mu, logvar),
                                  ("dmu", "dlogvar")):
        run.check(f"the library's sleep_gradient, {what}", theirs, mine, tol=1e-12)

# %% [markdown]
# ## The sleep phase fits the other KL
#
# AEVB's encoder gradient comes from the same ELBO: on the data, it makes $q(z|x)$ close to the
# posterior $p(z|x)$ by minimizing $\mathrm{KL}(q \,\|\, p(z|x))$. The sleep phase instead maximizes
# $\mathbb{E}_{z \sim p(z),\, x \sim p(x|z)}[\log q(z|x)]$, the average over dreams $x \sim p(x)$ of
#
# $$
# \mathbb{E}_{p(z|x)}[\log q(z|x)]
#   = -\mathrm{KL}\bigl(p(z|x) \,\|\, q(z|x)\bigr) - \mathrm{H}\bigl(p(z|x)\bigr),
# $$
#
# with $\mathrm{H}$ the entropy, so it minimizes the KL the other way round, $\mathrm{KL}(p \,\|\, q)$,
# on the model's dreams rather than on the data. The two KLs agree when $q$ can equal the posterior;
# when it cannot, they prefer different approximations. A linear-Gaussian model, whose posterior
# $\mathcal{N}(m, S)$ is exact, shows the difference for a diagonal Gaussian $q$:
# $\mathrm{KL}(p \,\|\, q)$ matches the posterior's marginal variances $S_{jj}$, $\mathrm{KL}(q \,\|\, p)$
# the inverse of its precision's diagonal, $1 / (S^{-1})_{jj}$, which is smaller whenever the latent
# dimensions are correlated in the posterior.
#
# The sleep phase, run on a linear encoder with the library's `WakeSleep.sleep` and dreams of
# the linear-Gaussian model (non-orthogonal $W$, so $S$ is not diagonal):

# %%
rng = np.random.default_rng(run.seed)
true = LinearGaussian(np.array([[1.0, 0.8], [0.5, 1.0], [0.9, -0.2], [0.3, 0.6]]), np.zeros(4), 0.5)
S = np.linalg.inv(np.eye(2) + true.W.T @ true.W / true.s ** 2)
P = np.linalg.inv(S)
print(f"  posterior correlation of z_1 and z_2: {S[0, 1] / math.sqrt(S[0, 0] * S[1, 1]):.2f}")

sleeper = WakeSleep(4, z_dim=2, hidden_dims=(), likelihood="gaussian", dtype="float64", seed=run.seed)
opt = Adam(sleeper.encoder.named_parameters("encoder."), lr=0.02)
steps = run.pick(fast=1500, full=4000)
for step in range(steps):
    if step == steps // 2:
        opt.lr = 0.004
    x_dream, z_dream = true.sample(1000, rng)
    sleeper.sleep(z_dream, x_dream)
    opt.step()
sleep_var = np.exp(sleeper.encoder.layers[0].params["b"][2:])     # logvar's bias: q's variance
run.check("sleep phase: q's variances = the posterior's marginal variances S_jj", sleep_var,
          np.diag(S), tol=0.02)

# The ELBO's choice for the same family, found by minimizing KL(q || p(z|x)) directly
# (LinearGaussian.kl_to_posterior) over q's mean and log-variances for one x:
x0 = true.sample(1, rng)[0]


def kl_q_p(v):
    return float(true.kl_to_posterior(x0, v[None, :2], v[None, 2:])[0])


elbo_var = np.exp(scipy.optimize.minimize(kl_q_p, np.zeros(4), method="BFGS").x[2:])
run.check("ELBO: q's variances = 1 / diag(posterior precision)", elbo_var, 1 / np.diag(P), tol=1e-4)
print(f"  variances of q: sleep phase {np.round(sleep_var, 4)}, ELBO {np.round(elbo_var, 4)}, "
      f"posterior marginals {np.round(np.diag(S), 4)}")

# %% [markdown]
# Neither is wrong; they answer different questions. But only the ELBO's choice makes the
# reported lower bound as tight as the family allows, and only AEVB's two gradients ascend that
# one bound. Wake-sleep's phases ascend two different objectives, so nothing guarantees that the
# bound it is judged by rises at every step, and its encoder is fitted to dreams, which
# resemble the data only once the decoder is good.
#
# ## The two algorithms side by side
#
# The paper's settings for both (Adagrad with the authors' warm-up, step size 0.01 on Frey
# Face and 0.1 on the small digits, minibatches of 100, a $\mathcal{N}(0, I)$ prior on the
# weights) and the same evaluation of the lower bound. The initial weights are the same draws at
# two scales: AEVB's from $\mathcal{N}(0, 0.01^2)$, as the authors' code draws them
# (`init="paper"`), wake-sleep's from $\mathcal{N}(0, 0.1^2)$, the paper's "$\mathcal{N}(0, 0.01)$"
# read as a variance (`init="paper-variance"`); the end of this section says why.
# The warm-up is in the authors' code: the first 101 steps only add $g^2$ to Adagrad's accumulator
# $h$ and leave the weights alone, so that the first real steps are not divided by the root of one
# tiny $g^2$ (`Adagrad(..., warmup=101)`). The bound is evaluated at log-spaced points, about 8 per
# decade of training samples from $10^4$ on, as in `scratchvae reproduce`.

# %%
ADAGRAD_WARMUP = 101
z_dim = run.pick(fast=5, full=5)
hidden = run.pick(fast=50, full=200)
samples = run.pick(fast=300_000, full=1_000_000)
lr = run.pick(fast=0.1, full=0.01)
n_points = int(8 * math.log10(samples / 1e4)) + 1                # about 8 per decade, multiples of 100
eval_at = np.unique(np.round(np.geomspace(1e4, samples, n_points) / 100).astype(int) * 100)
binarization = "dynamic" if data.likelihood == "bernoulli" else "none"
curves = {}
for name, cls in (("AEVB", VAE), ("wake-sleep", WakeSleep)):
    init = "paper" if cls is VAE else "paper-variance"
    model = cls(x_dim, z_dim, (hidden,), likelihood=data.likelihood, activation="tanh", init=init,
                weight_decay=1 / data.train.shape[0], seed=run.seed)
    opt = Adagrad(model.named_parameters(), lr=lr, warmup=ADAGRAD_WARMUP)
    trainer = Trainer(model, opt, data.train, data.test, batch_size=100, binarization=binarization,
                      seed=run.seed, progress=False)
    for target in eval_at:
        trainer.fit(samples=int(target), eval_every=10**15)
    curves[name] = trainer.history
    last = trainer.history[-1]
    print(f"  {name:>10}: {last['samples']} samples, train {last['train_elbo']:.1f}, "
          f"held-out {last['test_elbo']:.1f} nats ({last['wall_time']:.0f} s)")

fig, ax = plt.subplots(figsize=(7, 4.5))
for (name, history), color in zip(curves.items(), ("C0", "C3")):
    n = [r["samples"] for r in history]
    ax.plot(n, [r["train_elbo"] for r in history], "--", color=color, label=f"{name} (train)")
    ax.plot(n, [r["test_elbo"] for r in history], "-", color=color, label=f"{name} (held-out)")
ax.set_xscale("log")
ax.set_xlabel("training samples evaluated")
ax.set_ylabel("lower bound per image (nats)")
ax.set_title(f"AEVB and wake-sleep, Nz = {z_dim}: {data.train.shape[0]} training / "
             f"{data.test.shape[0]} held-out images")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
run.save(fig, "aevb_vs_wake_sleep")

# %% [markdown]
# In the paper AEVB's bound is the higher one at every latent size of both data sets, and it
# pulls ahead as training goes on: both of its gradients push the reported bound up, while
# wake-sleep's encoder chases the decoder's dreams. Wake-sleep can also stay where it started:
# a decoder that ignores $z$ dreams images that say nothing about $z$, so the sleep phase fits
# $q(z|x) = p(z)$, whose codes in turn give the wake phase no reason to use $z$. How near the
# start is to that fixed point is set by the initial weights: the path from $z$ to $x$ passes two
# weight matrices, so its strength goes with the square of their scale. From the authors' code's
# $\mathcal{N}(0, 0.01^2)$, wake-sleep on Frey Face with $N_z = 2$ and $5$ never left the point
# (KL term $\le 0.001$ nats, in every seed, step size and order of updates tried, up to $10^7$
# samples); from $\mathcal{N}(0, 0.1^2)$ its KL term is about 3 nats after $10^5$ samples
# (`scratchvae/models/wake_sleep.py` has the measurements). AEVB's encoder gradient, coming from
# the data, leaves the point from either scale. Compare the two curves above (the digits in
# fast mode, Frey Face in full mode); `python -m scratchvae.experiments.reproduce train
# frey-z20 frey-z20-ws` runs the paper's comparison to $10^7$ samples and more, and the results
# page (`docs/results.md`) shows its outcome. To see the stuck run yourself (about a minute):
# `python -m scratchvae.experiments.reproduce train frey-z2-ws-sd0.01 --samples 1000000`, wake-sleep
# from the code's scale (the name's `-sd0.01`); its held-out bound stays at the prior's, about 559.
#
# ## What to remember
#
# * Wake phase: the decoder's gradient of $\log p(x|z)$ at the encoder's $z$, exactly the decoder's
#   half of the ELBO's gradient.
# * Sleep phase: the encoder fitted by maximum likelihood to the decoder's dreams,
#   $\partial(-\log q)/\partial\mu = -(z - \mu)/v$ and
#   $\partial(-\log q)/\partial\log\sigma^2 = -\frac12 [(z - \mu)^2/v - 1]$; no reparameterization,
#   because $z$ is given.
# * It minimizes $\mathrm{KL}(p \,\|\, q)$ on dreams, not the ELBO's $\mathrm{KL}(q \,\|\, p)$ on data:
#   with a diagonal $q$ it matches the posterior's marginal variances instead of
#   $1 / \operatorname{diag}(\text{precision})$, and no single objective rises at every step.
#
# ## Exercises
#
# Start a workbook once with `scratchvae exercises start my-workbook` and grade an exercise with
# `scratchvae exercises check my-workbook NAME` (lesson 7 says more). Worked answers to the
# questions: `lessons/answers/11_wake_sleep.md`; try first.
#
# 1. **Code: the sleep gradient** (`sleep_gradient`, workbook `11_wake_sleep.py`): given $n$ dreams
#    $z$, and the encoder's $\mu$ and $\log\sigma^2$ for their $x$, the gradient of
#    $-\frac1n \sum_i \log q(z_i|x_i)$ with respect to $\mu$ and $\log\sigma^2$, derived above (the
#    average over the dreams, so with the $1/n$). The grader knows the missing $\tfrac12$ and the
#    flipped sign.
# 2. **Question: no reparameterization.** AEVB's encoder gradient needs
#    $z = \mu + \exp(\tfrac12 \log\sigma^2) \odot \epsilon$ and its backward (lesson 6); the sleep
#    phase's does not. Why not? What would go wrong if the sleep phase drew its $z$ from $q(z|x)$
#    instead of taking the dream's $z$?
# 3. **Question: what the sleep phase's variances cost.** For the linear-Gaussian model above, $q$
#    with the sleep phase's variances and $q$ with the ELBO's both have the posterior mean as their
#    mean. How much lower is the ELBO of the first, in nats? (`LinearGaussian.kl_to_posterior`
#    gives $\mathrm{KL}(q \,\|\, p(z|x))$, and $\log p(x) - \mathrm{ELBO}$ is exactly that KL.)
# 4. **Question: the fixed point.** A decoder whose output does not depend on $z$ makes the sleep
#    phase fit $q(z|x) = p(z) = \mathcal{N}(0, I)$ for every $x$. Why? Why does AEVB's encoder
#    gradient not stay there? Then try it: train `WakeSleep` on the digits ($N_z = 2$, 50 tanh units,
#    Adagrad 0.01, $5 \times 10^4$ samples) from `init="paper"` and from `init="paper-variance"`,
#    three seeds each, and print the held-out KL term. Which runs leave the prior? By how much does
#    a 10 times larger scale multiply the strength of the path from $z$ to $x$ at the start?
