"""How good is a trained VAE? The ELBO and the importance-sampled bound L_k on a dataset.

For an image x, with z_i ~ q(z|x) drawn independently (Burda et al. 2016, eq. 8):

    L_k(x) = log (1/k) sum_{i=1..k} p(x, z_i) / q(z_i|x),   p(x, z) = p(x|z) p(z)

    L_1 has the ELBO's expectation, E[L_k] <= E[L_{k+1}], and L_k -> log p(x) as k grows,
    so a large k (the literature uses 5000) estimates the marginal log-likelihood from below.

The average of likelihood ratios is taken in log space with log-mean-exp, because
p(x, z) / q(z|x) is around exp(-100) for an MNIST image and would underflow. The k
samples are drawn in chunks, so memory grows with the chunk, not with k:

    L_k = log sum_j (c_j / k) exp(m_j),   m_j = log-mean-exp over chunk j of c_j samples

Both functions draw their noise from their own generator (``seed``), so evaluating a
model neither consumes nor perturbs the random stream that training uses.
"""
import math

import numpy as np

from .. import distributions as D
from .. import validation
from ..backend import as_numpy, make_rng
from ..vae import ELBO


def _batches(x, batch_size):
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size]


def evaluate_elbo(model, x, batch_size=1000, n_samples=1, seed=0):
    """Mean ELBO over the rows of ``x``, with its reconstruction and KL terms:
    ``ELBO(elbo, rec, kl)`` of Python floats (nats per image), computed in batches.

    Each image gets ``n_samples`` reparameterized draws of z, so the value is an
    unbiased estimate of the mean ELBO whose noise shrinks with ``x.shape[0] * n_samples``."""
    batch_size = validation.positive_int("batch_size", batch_size)
    n_samples = validation.positive_int("n_samples", n_samples)
    if x.shape[0] == 0:
        raise ValueError("x holds no images to evaluate")
    rng = make_rng(seed, model.device)
    xp = model.xp
    total = xp.zeros(3, dtype=np.float64)
    for xb in _batches(x, batch_size):
        eps = rng.standard_normal((n_samples, xb.shape[0], model.z_dim), dtype=model.dtype)
        terms = model.elbo(xb, eps=eps)
        total += xp.stack([t.sum(dtype=np.float64) for t in terms])
    return ELBO(*(float(v) / x.shape[0] for v in as_numpy(total)))


def importance_weights(model, x, eps):
    """log p(x, z) - log q(z|x) for z = mu + sigma * eps: shape ``eps.shape[:2]`` = (c, B).

    ``x`` is (B, D); ``eps`` is (c, B, Z), c samples per image. This is the log of
    the ratio that L_k averages, and its mean over z ~ q is the ELBO."""
    c, B = eps.shape[:2]
    mu, logvar = model.encode(x)
    z = D.reparameterize(mu, logvar, eps)                                  # (c, B, Z)
    log_q = D.gaussian_log_density(z, mu, logvar)                          # log q(z|x)
    log_prior = D.standard_normal_log_density(z)                          # log p(z)
    model.decoder.forward(z.reshape(c * B, model.z_dim))
    x_rep = x if c == 1 else model.xp.tile(x, (c, 1))                      # row l*B + b is x_b
    log_lik = model.decoder.log_prob(x_rep).reshape(c, B)                  # log p(x|z)
    return log_lik + log_prior - log_q


def importance_sampled_bound(model, x, k=5000, batch_size=100, chunk_rows=8192, seed=0,
                             progress=False):
    """L_k for every row of ``x``: a float64 host array of shape (N,), in nats.

    Images go through in batches of ``batch_size``; for each batch the k samples are
    drawn ``chunk_rows // batch_size`` at a time, so the decoder never sees more than
    about ``chunk_rows`` rows at once whatever k is."""
    k = validation.positive_int("k", k)
    batch_size = validation.positive_int("batch_size", batch_size)
    chunk_rows = validation.positive_int("chunk_rows", chunk_rows)
    xp = model.xp
    rng = make_rng(seed, model.device)
    out = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=x.shape[0] * k, unit="sample", unit_scale=True, desc=f"L_{k}")
    try:
        for xb in _batches(x, batch_size):
            B = xb.shape[0]
            per_chunk = max(1, min(k, chunk_rows // B))
            chunk_lme, chunk_log_weight = [], []
            for start in range(0, k, per_chunk):
                c = min(per_chunk, k - start)
                eps = rng.standard_normal((c, B, model.z_dim), dtype=model.dtype)
                log_w = importance_weights(model, xb, eps).astype(np.float64)
                chunk_lme.append(D.log_mean_exp(log_w, axis=0))            # m_j, shape (B,)
                chunk_log_weight.append(math.log(c / k))                   # log (c_j / k)
                if bar is not None:
                    bar.update(c * B)
            m = xp.stack(chunk_lme) + xp.asarray(chunk_log_weight)[:, None]
            out.append(as_numpy(D.logsumexp(m, axis=0)))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(out)
