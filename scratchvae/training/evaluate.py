"""How good is a trained VAE? The ELBO and the importance-sampled bound L_k on a dataset.

For an image x, with z_i ~ q(z|x) drawn independently (Burda et al. 2016, eq. 8):

    L_k(x) = log (1/k) sum_{i=1..k} p(x, z_i) / q(z_i|x),   p(x, z) = p(x|z) p(z)

    L_1 has the ELBO's expectation, E[L_k] <= E[L_{k+1}], and L_k -> log p(x) as k grows,
    so a large k (the literature uses 5000) estimates the marginal log-likelihood from below.

The average of likelihood ratios is taken in log space with log-mean-exp, because
p(x, z) / q(z|x) is around exp(-100) for an MNIST image and would underflow. The k
samples (and the ELBO's n_samples) are drawn in chunks by one rule, :func:`sample_chunks`,
so memory grows with the chunk, not with k:

    L_k = log sum_j (c_j / k) exp(m_j),   m_j = log-mean-exp over chunk j of c_j samples

Both functions draw their noise from their own generator (``seed``), so evaluating a
model neither consumes nor perturbs the random stream that training uses.
"""
import math

import numpy as np

from .. import validation
from ..backend import as_numpy, make_rng
from ..distributions import gaussian_log_density, log_mean_exp, logsumexp, standard_normal_log_density
from ..vae import ELBO

CHUNK_ROWS = 8192


def _batches(x, batch_size):
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size]


def sample_chunks(n_samples, batch_rows, chunk_rows=CHUNK_ROWS):
    """How many of ``n_samples`` draws per image go through at once: chunks of c samples with
    c * batch_rows <= chunk_rows (but at least one sample), so that the decoder never sees
    much more than ``chunk_rows`` rows whatever n_samples is. Returns the sizes c_j."""
    per_chunk = max(1, min(n_samples, chunk_rows // batch_rows))
    return [min(per_chunk, n_samples - start) for start in range(0, n_samples, per_chunk)]


def evaluate_elbo(model, x, batch_size=1000, n_samples=1, seed=0, chunk_rows=CHUNK_ROWS):
    """Mean ELBO over the rows of ``x``, with its reconstruction and KL terms:
    ``ELBO(elbo, rec, kl)`` of Python floats (nats per image), computed in batches.

    Each image gets ``n_samples`` reparameterized draws of z, so the value is an
    unbiased estimate of the mean ELBO whose noise shrinks with ``x.shape[0] * n_samples``.
    The draws go through in chunks of :func:`sample_chunks`, each chunk's ELBO weighted by
    its share c / n_samples of the draws, so memory stays bounded by ``chunk_rows``."""
    batch_size = validation.positive_int("batch_size", batch_size)
    n_samples = validation.positive_int("n_samples", n_samples)
    chunk_rows = validation.positive_int("chunk_rows", chunk_rows)
    model.check_x(x, values=False, nonempty=True)
    rng = make_rng(seed, model.device)
    xp = model.xp
    total = xp.zeros(3, dtype=np.float64)
    for xb in _batches(x, batch_size):
        for c in sample_chunks(n_samples, xb.shape[0], chunk_rows):
            eps = rng.standard_normal((c, xb.shape[0], model.z_dim), dtype=model.dtype)
            terms = model.elbo(xb, eps=eps)
            total += (c / n_samples) * xp.stack([t.sum(dtype=np.float64) for t in terms])
    return ELBO(*(float(v) / x.shape[0] for v in as_numpy(total)))


def importance_weights(model, x, eps):
    """log p(x, z) - log q(z|x) for z = mu + sigma * eps: shape ``eps.shape[:2]`` = (c, B).

    ``x`` is (B, D); ``eps`` is (c, B, Z), c samples per image. This is the log of
    the ratio that L_k averages, and its mean over z ~ q is the ELBO."""
    model.check_x(x)
    mu, logvar, z, log_lik = model.forward(x, eps)                       # log p(x|z): (c, B)
    log_q = gaussian_log_density(z, mu, logvar)                          # log q(z|x)
    log_prior = standard_normal_log_density(z)                          # log p(z)
    return log_lik + log_prior - log_q


def importance_sampled_bound(model, x, k=5000, batch_size=100, chunk_rows=CHUNK_ROWS, seed=0,
                             progress=False):
    """L_k for every row of ``x``: a float64 host array of shape (N,), in nats.

    Images go through in batches of ``batch_size``; for each batch the k samples are
    drawn in the chunks of :func:`sample_chunks`, so the decoder never sees more than
    about ``chunk_rows`` rows at once whatever k is."""
    k = validation.positive_int("k", k)
    batch_size = validation.positive_int("batch_size", batch_size)
    chunk_rows = validation.positive_int("chunk_rows", chunk_rows)
    model.check_x(x, values=False, nonempty=True)
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
            chunk_lme, chunk_log_weight = [], []
            for c in sample_chunks(k, B, chunk_rows):
                eps = rng.standard_normal((c, B, model.z_dim), dtype=model.dtype)
                log_w = importance_weights(model, xb, eps).astype(np.float64)
                chunk_lme.append(log_mean_exp(log_w, axis=0))              # m_j, shape (B,)
                chunk_log_weight.append(math.log(c / k))                   # log (c_j / k)
                if bar is not None:
                    bar.update(c * B)
            m = xp.stack(chunk_lme) + xp.asarray(chunk_log_weight)[:, None]
            out.append(as_numpy(logsumexp(m, axis=0)))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(out)
