# %% [markdown]
# # Lesson 4: autoencoders and PCA
#
# An autoencoder squeezes $x$ through a small code $h$ and reconstructs it:
#
# $$
# h = \operatorname{encoder}(x), \qquad \hat{x} = \operatorname{decoder}(h), \qquad
# \text{loss} = \frac{1}{B} \sum_b \lVert x_b - \hat{x}_b \rVert^2
# $$
#
# With no nonlinearity ($\hat{x} = (x W_e + b_e) W_d + b_d$) the best it can do is PCA: the
# reconstructions of the optimal linear autoencoder lie in the span of the top $k$ principal
# components (Baldi & Hornik 1989), though its weights need not be those components. Principal
# angles between the decoder's columns and PCA's components measure how close training came
# (all zero: the same subspace). A nonlinear autoencoder is not bound to a flat subspace and
# reconstructs better at the same code size.
#
# PCA's error has a closed form: with the data covariance's eigenvalues
# $\lambda_1 \ge \lambda_2 \ge \dots$,
#
# $$
# \frac{1}{N} \sum_n \lVert x_n - \hat{x}_n \rVert^2 = \sum_{i > k} \lambda_i,
# $$
#
# the variance the top $k$ components leave out (checked below).
#
# Data: scikit-learn's $8 \times 8$ digits (64 pixels in $[0, 1]$), which ship with scikit-learn.

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import IncrementalPCA

from _lesson import Lesson
from scratchvae.models.autoencoder import Autoencoder, fit, linear_autoencoder, pca, principal_angles
from scratchvae.data.datasets import batches, load_dataset
from scratchvae.gradcheck import THRESHOLD, check_gradients, format_report
from scratchvae.training.plots import tile

run = Lesson("04_autoencoders_and_pca")
data = load_dataset("digits")
x, x_test = data.train, data.test                                 # float32, models train on these
x64 = x.astype(np.float64)                                         # PCA and its checks in float64
k = 4                                                                # code size
print(f"  {data.split}; code size k = {k}")


def mse(a, b):
    """1/N sum_n |a_n - b_n|^2, the autoencoder's loss."""
    return float(((a - b) ** 2).sum(axis=1).mean())

# %% [markdown]
# ## The autoencoder's gradient
#
# `Autoencoder.backward` sends $\partial \text{loss} / \partial \hat{x} = 2 (\hat{x} - x) / B$ back
# through both networks;
# checked against central differences for every parameter tensor of a small nonlinear one.

# %%
small = Autoencoder(6, 2, hidden_dims=(5,), activation="tanh", dtype="float64", seed=1)
xs = np.random.default_rng(0).uniform(0, 1, (7, 6))
small.loss_and_grads(xs)
reports = check_gradients(lambda: small.loss(xs), small.parameters(),
                          {name: g.copy() for name, g in small.gradients().items()})
print(format_report(reports))
assert all(r.worst < THRESHOLD for r in reports)

# %% [markdown]
# ## PCA, and its error in closed form

# %%
mean, components, variances = pca(x64, k)                            # components: (k, 64)
_, all_components, all_variances = pca(x64, x.shape[1])       # every component, for (c)


def pca_reconstruct(a):
    return (a - mean) @ components.T @ components + mean


run.check("PCA error = sum of the left-out eigenvalues", mse(x64, pca_reconstruct(x64)),
          all_variances[k:].sum(), tol=1e-10)

# %% [markdown]
# ## A linear autoencoder finds the PCA subspace
#
# Trained by minibatch Adam, with the step size lowered twice so that it settles. Its training
# error approaches PCA's from above (PCA is the optimum for a linear code) and the principal
# angles approach zero.

# %%
linear = linear_autoencoder(x.shape[1], k, seed=0)
schedule = run.pick(fast=[(1e-2, 60), (1e-3, 40)], full=[(1e-2, 200), (1e-3, 200), (1e-4, 100)])
linear_curve = []
for lr, epochs in schedule:
    linear_curve += fit(linear, x, lr=lr, epochs=epochs, batch_size=64)
angles = np.degrees(principal_angles(linear.decoder_basis(), components.T))      # in degrees
largest = run.pick(fast=3.0, full=0.5)                                             # degrees too
print(f"  principal angles, linear autoencoder vs PCA: {np.round(angles, 3)} degrees "
      f"(the largest must be below {largest} degrees)")
run.check("training error, linear autoencoder vs PCA", linear_curve[-1], mse(x, pca_reconstruct(x)),
          tol=run.pick(fast=1e-2, full=1e-3))
assert angles.max() < largest, "the linear autoencoder has not found the PCA subspace"

# %% [markdown]
# ## A nonlinear autoencoder does better
#
# One tanh hidden layer on each side, the same code size $k$.

# %%
hidden, epochs = run.pick(fast=((128,), 60), full=((256,), 300))
nonlinear = Autoencoder(x.shape[1], k, hidden_dims=hidden, activation="tanh", seed=0)
nonlinear_curve = fit(nonlinear, x, lr=3e-3, epochs=epochs, batch_size=64)
held_out = {"PCA": mse(x_test, pca_reconstruct(x_test)),
            "linear autoencoder": mse(x_test, linear.reconstruct(x_test)),
            f"nonlinear autoencoder {hidden}": mse(x_test, nonlinear.reconstruct(x_test))}
for name, value in held_out.items():
    print(f"  held-out squared error per image, {name:<32} {value:.3f}")

# %% [markdown]
# ## Data that does not fit in memory
#
# The lecture notes this course follows argue (note 002) that autoencoders should replace PCA,
# first because PCA needs the whole data set in memory and an autoencoder does not:
#
# > \- For very large data sets that can't be stored in memory, PCA will not
# > be able to be performed. The autoencoder construction using keras can
# > easily be batched resolving memory limitations.
#
# Both can be batched. The autoencoder above already trains on minibatches of 64 images, one at a
# time. PCA only needs the mean and the covariance, and both are sums over the data, so they
# can be accumulated batch by batch (batches from `scratchvae.data.datasets.batches`), holding a
# $D \times D$ matrix instead of the data:
#
# $$
# \bar{x} = \frac{1}{N} \sum_n x_n, \qquad
# \operatorname{Cov} = \frac{1}{N} \sum_n x_n x_n^\top - \bar{x} \, \bar{x}^\top,
# $$
#
# ($\bar{x}$ the mean) after which the eigenvectors of $\operatorname{Cov}$ are the components.
# scikit-learn's `IncrementalPCA` (Ross et al. 2008) goes further and keeps only $k$ directions
# between batches, at the price of a small approximation.

# %%
n, total, outer = 0, np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
incremental = IncrementalPCA(n_components=k)
for batch in batches(x64, 100, np.random.default_rng(run.seed)):     # one batch in memory at a time
    n, total, outer = n + len(batch), total + batch.sum(axis=0), outer + batch.T @ batch
    incremental.partial_fit(batch)
streamed_mean = total / n
eigenvalues, eigenvectors = np.linalg.eigh(outer / n - np.outer(streamed_mean, streamed_mean))
streamed_components = eigenvectors[:, ::-1][:, :k]                  # largest eigenvalues first
run.check("eigenvalues from streamed sums vs PCA's variances", eigenvalues[::-1][:k], variances, tol=1e-10)
print(f"  principal angles vs PCA (degrees): streamed covariance "
      f"{np.round(np.degrees(principal_angles(streamed_components, components.T)), 6)}, "
      f"IncrementalPCA {np.round(np.degrees(principal_angles(incremental.components_.T, components.T)), 2)}")

# %%
fig = plt.figure(figsize=(16, 5.2))
grid = fig.add_gridspec(1, 3, width_ratios=[1.6, 1, 1])
ax = fig.add_subplot(grid[0])
shown = x_test[:12]
rows = [shown, pca_reconstruct(shown), linear.reconstruct(shown), nonlinear.reconstruct(shown)]
ax.imshow(tile(np.clip(np.concatenate(rows), 0, 1), data.image_shape, ncols=12, pad_value=0.0), cmap="gray_r",
          vmin=0, vmax=1)
ax.set_yticks([4.5 + 9 * i for i in range(4)], ["held-out x", "PCA", "linear AE", "nonlinear AE"])
ax.set_xticks([])
ax.set_title(f"(a) reconstructions through a code of k = {k} numbers")

ax = fig.add_subplot(grid[1])
ax.plot(np.arange(1, len(linear_curve) + 1), linear_curve, "C0", label="linear autoencoder")
ax.plot(np.arange(1, len(nonlinear_curve) + 1), nonlinear_curve, "C3", label="nonlinear autoencoder")
ax.axhline(mse(x, pca_reconstruct(x)), color="k", ls="--", label="PCA (the linear optimum)")
ax.set(title="(b) training error per epoch", xlabel="epoch", ylabel="squared error per image",
       xscale="log")
ax.legend(fontsize=8)

ax = fig.add_subplot(grid[2])
ks = np.arange(1, 21)
ax.plot(ks, [mse(x_test, (x_test - mean) @ c.T @ c + mean) for c in (all_components[:j] for j in ks)], "k.-",
        label="PCA, held-out")
ax.plot([k], [held_out["linear autoencoder"]], "C0o", ms=8, label="linear autoencoder")
ax.plot([k], [held_out[f"nonlinear autoencoder {hidden}"]], "C3*", ms=12, label="nonlinear autoencoder")
ax.set(title="(c) held-out error against code size", xlabel="code size k", ylabel="squared error per image")
ax.legend(fontsize=8)
fig.tight_layout()
run.save(fig, "autoencoder_vs_pca")

# %% [markdown]
# ## What to remember
#
# * A linear autoencoder trained well spans the PCA subspace; PCA gets there in closed form.
# * Nonlinear encoders and decoders reconstruct better at the same code size.
# * Both scale to data that does not fit in memory, by minibatches.
# * Neither is a generative model: nothing says which codes $h$ are likely, so decoding a random
#   $h$ gives no digit. The VAE adds a prior $p(z)$ and a probabilistic encoder (lessons 5 to 7).
#
# ## Exercises
#
# Start a workbook once, if you have not yet (`scratchvae exercises start my-workbook`); this
# lesson's function is in `my-workbook/04_pca.py`, graded with
# `scratchvae exercises check my-workbook pca`. Worked answers to the questions:
# `lessons/answers/04_autoencoders_and_pca.md`.
#
# 1. **PCA** (code): `pca(x, k)`, returning `(mean, components, variances)`: the mean of the rows,
#    the top $k$ principal directions as the rows of a $(k, D)$ array with orthonormal rows, and the
#    variance of the data along each, largest first. Use the SVD of the centred data,
#    $X_c = U \operatorname{diag}(s) V^\top$: the directions are the first $k$ rows of $V^\top$ and
#    the variances $s_i^2 / N$. `scratchvae exercises check my-workbook pca`
# 2. **A subspace, not a basis** (question). Show that for any invertible $k \times k$ matrix $M$,
#    the linear autoencoder with encoder $(W_e M, b_e M)$ and decoder $(M^{-1} W_d, b_d)$ makes
#    exactly the same reconstructions as $(W_e, b_e, W_d, b_d)$. What does that say about what
#    training can find, and why does the lesson compare principal angles instead of the decoder's
#    columns with PCA's components?
# 3. **How much does a code of 4 keep?** (question) Derive PCA's error $\sum_{i > k} \lambda_i$ from
#    the eigen-decomposition of the covariance, then compute, on the lesson's training digits, the
#    fraction of the total variance that $k = 4$ components keep, and the $k$ needed for 90 %.
# 4. **Streaming, and its catch** (question). How many numbers do the streamed sums of the last
#    section hold, against the data itself, for the digits ($N = 1500$, $D = 64$) and for MNIST
#    ($N = 60{,}000$, $D = 784$)? Then add $10^8$ to every pixel and compute the covariance from the
#    sums again: what happens to the eigenvalues, why, and how do you fix it?
