"""The ELBO and L_k against an exact log p(x), computed by quadrature over a small latent grid.

For a VAE with a 1-D (or 2-D) latent space, log p(x) = log integral p(x|z) N(z; 0, I) dz is a
smooth low-dimensional integral: a Riemann sum on a fine grid gets it to many digits. The
exact ELBO, E_q[log p(x|z)] - KL, is the same kind of integral against q(z|x). These values
come from the decoder alone, independently of the sampling code under test.
"""
import math
import tracemalloc

import numpy as np
import pytest

import scratchvae as sv
from scratchvae.distributions import gaussian_log_density, kl_standard_normal, logsumexp, standard_normal_log_density
from scratchvae.training.evaluate import (evaluate_elbo, importance_sampled_bound, importance_weights,
                                         sample_chunks)


def _model(z_dim, x_dim=5, seed=2):
    """A float64 model whose q(z|x) is far from the posterior, so that L_k visibly climbs
    with k. q is made wider than the prior (variance 2): then p(z) / q(z|x), and so every
    importance weight, is bounded, and L_k converges at the textbook rate. (With q narrower
    than the posterior the weights have infinite variance and L_k converges erratically.)"""
    model = sv.VAE(x_dim, z_dim=z_dim, hidden_dims=(8,), activation="tanh", init="he",
                   dtype="float64", seed=seed)
    for name, p in model.parameters().items():
        if name.startswith("decoder"):
            p *= 2.5                                   # a sharper, more non-linear p(x|z)
    last = model.encoder.layers[-2].params             # the Linear layer giving [mu, logvar]
    last["W"][:, z_dim:] = 0.0
    last["b"][z_dim:] = math.log(2.0)
    return model


def _images(n, x_dim=5, seed=0):
    return (np.random.default_rng(seed).random((n, x_dim)) < 0.4).astype(np.float64)


def _grid(z_dim):
    """Quadrature points covering +-9 standard deviations of the prior, and their cell volume."""
    u = np.linspace(-9, 9, 6001 if z_dim == 1 else 361)
    if z_dim == 1:
        return u[:, None], u[1] - u[0]
    z1, z2 = np.meshgrid(u, u)
    return np.stack([z1.ravel(), z2.ravel()], axis=1), (u[1] - u[0]) ** 2


def _exact(model, x):
    """Per image: log p(x) and the exact ELBO, by quadrature."""
    z, dz = _grid(model.z_dim)
    model.decoder.forward(z)
    mu, logvar = model.encode(x)
    log_px, elbo = [], []
    for b in range(x.shape[0]):
        log_lik = model.decoder.log_prob(np.broadcast_to(x[b], (z.shape[0], x.shape[1])))
        log_px.append(logsumexp(log_lik + standard_normal_log_density(z)) + math.log(dz))
        q = np.exp(gaussian_log_density(z, mu[b], logvar[b])) * dz
        elbo.append((q * log_lik).sum() - kl_standard_normal(mu[b], logvar[b]))
        assert abs(q.sum() - 1) < 1e-6               # the grid holds all of q's mass
    return np.array(log_px), np.array(elbo)


def test_quadrature_reference_is_accurate():
    """The reference itself: halving the grid spacing does not move log p(x)."""
    model, x = _model(1), _images(4)
    z, dz = _grid(1)
    model.decoder.forward(z[::2])
    coarse = [logsumexp(model.decoder.log_prob(np.broadcast_to(xb, (z[::2].shape[0], 5)))
                          + standard_normal_log_density(z[::2])) + math.log(2 * dz) for xb in x]
    np.testing.assert_allclose(coarse, _exact(model, x)[0], atol=1e-9)


@pytest.mark.parametrize("z_dim", [1, 2])
def test_L1_has_the_expectation_of_the_elbo(z_dim):
    """E[L_1] = E_q[log p(x, z) - log q(z|x)] = E_q[log p(x|z)] - KL = ELBO."""
    model, x = _model(z_dim), _images(6)
    _, exact_elbo = _exact(model, x)
    reps = 20000
    eps = np.random.default_rng(1).standard_normal((reps, x.shape[0], z_dim))
    L1 = importance_weights(model, x, eps)                          # (reps, B): L_1 draws
    stderr = L1.std(axis=0) / math.sqrt(reps)
    assert np.all(np.abs(L1.mean(axis=0) - exact_elbo) < 4 * stderr)
    # and evaluate_elbo (analytic KL, sampled reconstruction term) agrees too
    xs = np.repeat(x, 2000, axis=0)
    est = evaluate_elbo(model, xs, batch_size=3000)
    se = float(model.elbo(xs).elbo.std()) / math.sqrt(xs.shape[0])   # its noise, from other draws
    assert abs(est.elbo - exact_elbo.mean()) < 4 * se


@pytest.mark.parametrize("z_dim", [1, 2])
def test_Lk_climbs_with_k_and_stays_below_log_px(z_dim):
    """E[L_1] = ELBO < E[L_10] < E[L_100] < E[L_1000] <= log p(x), and L_5000 is within a
    few hundredths of a nat of log p(x)."""
    model, x = _model(z_dim), _images(8)
    log_px, elbo = _exact(model, x)
    assert elbo.mean() < log_px.mean() - 2                  # q is far from the posterior here
    means, stderr = {}, {}                                  # over images, of the average
    for k, reps in ((1, 400), (10, 400), (100, 100), (1000, 20)):
        xs = np.tile(x, (reps, 1))                          # reps independent estimates per image
        L = importance_sampled_bound(model, xs, k=k, batch_size=x.shape[0] * 25, seed=k)
        L = L.reshape(reps, -1)
        if k == 1:
            assert np.all(np.abs(L.mean(axis=0) - elbo) < 4 * L.std(axis=0) / math.sqrt(reps))
        means[k] = L.mean()
        stderr[k] = math.sqrt((L.var(axis=0) / reps).sum()) / x.shape[0]
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        gap, noise = means[large] - means[small], math.hypot(stderr[large], stderr[small])
        assert gap > -3 * noise                             # never significantly lower
        if small < 100:
            assert gap > 3 * noise                          # and clearly higher while far off
    assert means[1000] <= log_px.mean() + 3 * stderr[1000]
    L5000 = importance_sampled_bound(model, x, k=5000, seed=7)
    assert abs(L5000.mean() - log_px.mean()) < 0.03
    assert np.all(np.abs(L5000 - log_px) < 0.15)


def test_chunking_changes_memory_not_the_result():
    """The same samples in chunks of 1 or all at once give the same L_k (the noise stream
    is drawn in the same order), and small chunks keep the peak memory small."""
    model = _model(2, x_dim=40)
    x = _images(10, x_dim=40)
    k = 2000
    tracemalloc.start()
    small = importance_sampled_bound(model, x, k=k, batch_size=10, chunk_rows=10)
    _, peak_small = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    large = importance_sampled_bound(model, x, k=k, batch_size=10, chunk_rows=k * 10)
    _, peak_large = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_allclose(small, large, rtol=1e-12)
    assert peak_large > k * 10 * 40 * 8                   # one (k B, D) array, at least
    assert peak_small < peak_large / 20


def test_evaluate_elbo_does_not_depend_on_the_batch_size():
    model, x = _model(2), _images(50)
    a = evaluate_elbo(model, x, batch_size=7)
    b = evaluate_elbo(model, x, batch_size=50)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert math.isclose(a.elbo, a.rec - a.kl, rel_tol=1e-12)


def test_evaluation_leaves_the_training_noise_alone():
    model, x = _model(2), _images(5)
    state = model.rng.bit_generator.state
    evaluate_elbo(model, x)
    importance_sampled_bound(model, x, k=10)
    assert model.rng.bit_generator.state == state


def test_float32_model_and_a_large_k_stay_finite():
    """log-mean-exp keeps L_k finite where the mean of the raw ratios would underflow."""
    model = sv.VAE(784, 20, (50,), seed=0)
    x = (np.random.default_rng(0).random((3, 784)) < 0.5).astype(np.float32)
    L = importance_sampled_bound(model, x, k=300)
    assert np.all(np.isfinite(L)) and np.all(L < -300)   # exp(-300) underflows float32
    assert np.all(L >= evaluate_elbo(model, x, n_samples=1).elbo - 50)


@pytest.mark.parametrize("kwargs, error", [
    (dict(k=0), ValueError), (dict(k=2.5), TypeError), (dict(batch_size=0), ValueError),
    (dict(chunk_rows=-1), ValueError)])
def test_bad_arguments(kwargs, error):
    model, x = _model(1), _images(2)
    with pytest.raises(error, match=next(iter(kwargs))):
        importance_sampled_bound(model, x, **kwargs)


@pytest.mark.parametrize("evaluate", [evaluate_elbo, importance_sampled_bound])
def test_empty_input_is_refused(evaluate):
    """No images to average over: a ValueError naming x, not a division by zero."""
    model = _model(1)
    with pytest.raises(ValueError, match="x must hold at least one image"):
        evaluate(model, np.zeros((0, 5)))


def test_sample_chunks_cover_every_draw_within_the_row_budget():
    """c_j * batch rows <= chunk_rows (at least one sample per chunk), and sum_j c_j = n."""
    assert sample_chunks(1, 1000, 8192) == [1]
    assert sample_chunks(10, 1000, 8192) == [8, 2]
    assert sample_chunks(5, 10_000, 8192) == [1] * 5          # a batch larger than the budget
    assert sample_chunks(3000, 10, 8192) == [819] * 3 + [543]
    for n, rows, budget in ((1000, 7, 100), (5000, 100, 8192), (17, 3, 4)):
        chunks = sample_chunks(n, rows, budget)
        assert sum(chunks) == n and max(chunks) * rows <= max(budget, rows)


def test_elbo_chunked_over_samples_keeps_its_value_and_bounds_memory():
    """evaluate_elbo with many samples per image: the draws in chunks of 10 images x 10
    samples give the value of one pass over all of them (same noise, same order), and the
    peak memory stays far below that of the single pass."""
    model = _model(2, x_dim=40)
    x = _images(10, x_dim=40)
    n = 2000
    tracemalloc.start()
    chunked = evaluate_elbo(model, x, n_samples=n, chunk_rows=100)
    _, peak_chunked = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    whole = evaluate_elbo(model, x, n_samples=n, chunk_rows=n * 10)
    _, peak_whole = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    eps = np.random.default_rng(0).standard_normal((n, 10, 2))    # the draws evaluate_elbo makes
    direct = model.elbo(x, eps=eps)
    np.testing.assert_allclose(whole, [float(t.mean()) for t in direct], rtol=1e-12)
    assert peak_whole > n * 10 * 40 * 8                   # one (n B, D) array, at least
    assert peak_chunked < 2_000_000                       # a few (100, 40) arrays and the eps of a chunk
