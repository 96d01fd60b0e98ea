"""The whole VAE: gradient of the mean negative ELBO for every parameter tensor, eps frozen."""
import numpy as np
import pytest

import scratchvae as sv
from scratchvae.gradcheck import THRESHOLD


def _model_and_batch(xp, likelihood, activation, weight_decay=0.0):
    device = "cpu" if xp is np else "gpu"
    model = sv.VAE(7, z_dim=3, hidden_dims=(6, 5), likelihood=likelihood, activation=activation,
                   weight_decay=weight_decay, dtype="float64", device=device, seed=3)
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.uniform(0.05, 0.95, (8, 7)))
    eps = xp.asarray(rng.standard_normal((2, 8, 3)))          # S = 2 samples, frozen
    return model, x, eps


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_vae_gradient_every_parameter_tensor(xp, likelihood, activation):
    """d/dtheta of -1/B sum_b [1/S sum_s log p(x_b|z_sb) - KL_b] + lambda/2 |theta|^2,
    by manual backprop, equals central differences for every tensor (eps frozen)."""
    model, x, eps = _model_and_batch(xp, likelihood, activation, weight_decay=0.05)
    model.loss_and_grads(x, eps=eps)
    grads = {k: g.copy() for k, g in model.gradients().items()}
    reports = sv.check_gradients(lambda: model.loss(x, eps=eps), model.parameters(), grads)
    assert len(reports) == 12  # 3 Linear layers in each network, W and b each
    worst = max(reports, key=lambda r: r.worst)
    assert worst.worst < THRESHOLD, sv.format_report(reports)
    rel, _, _ = sv.check_directional(lambda: model.loss(x, eps=eps), model.parameters(), grads)
    assert rel < THRESHOLD


# -- the pieces: encode, decode, sample, reconstruct -----------------------------------------
def test_encode_returns_mu_and_logvar_halves_of_the_encoder(xp):
    """encode(x) = (mu, logvar): the first Z and the last Z outputs of the encoder MLP, each (B, Z)."""
    model, x, _ = _model_and_batch(xp, "bernoulli", "tanh")
    mu, logvar = model.encode(x)
    out = sv.as_numpy(model.encoder.forward(x))
    assert mu.shape == (8, 3) and logvar.shape == (8, 3)
    np.testing.assert_array_equal(sv.as_numpy(mu), out[:, :3])
    np.testing.assert_array_equal(sv.as_numpy(logvar), out[:, 3:])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_decode_is_the_mean_of_p_x_given_z(xp, likelihood):
    """decode(z) = E[x|z]: sigmoid of the logits (Bernoulli) or the sigmoid mean (Gaussian),
    in (0, 1), shape (B, D); for the Gaussian decoder the log-variances are not part of it."""
    model, _, _ = _model_and_batch(xp, likelihood, "tanh")
    z = xp.asarray(np.random.default_rng(1).standard_normal((5, 3)))
    mean = sv.as_numpy(model.decode(z))
    out = sv.as_numpy(model.decoder.net.forward(z))
    assert mean.shape == (5, 7)
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-out[:, :7])), rtol=1e-13)
    assert ((mean > 0) & (mean < 1)).all()


def test_sample_decodes_draws_from_the_prior(xp):
    """sample(n, rng) = decode(z) with z ~ N(0, I) drawn from rng: a copy of the generator gives
    the same z, hence the same images."""
    model, _, _ = _model_and_batch(xp, "bernoulli", "tanh")
    device = "cpu" if xp is np else "gpu"
    images = model.sample(4, rng=sv.make_rng(5, device))
    z = sv.make_rng(5, device).standard_normal((4, 3), dtype=np.float64)
    assert images.shape == (4, 7)
    np.testing.assert_array_equal(sv.as_numpy(images), sv.as_numpy(model.decode(z)))
    assert model.sample(2).shape == (2, 7)         # from the model's own generator


def test_reconstruct_decodes_the_posterior_mean(xp):
    """reconstruct(x) = decode(mu(x)): no noise, so it is deterministic."""
    model, x, _ = _model_and_batch(xp, "gaussian", "softplus")
    mu, _ = model.encode(x)
    np.testing.assert_array_equal(sv.as_numpy(model.reconstruct(x)), sv.as_numpy(model.decode(mu)))
    np.testing.assert_array_equal(sv.as_numpy(model.reconstruct(x)), sv.as_numpy(model.reconstruct(x)))


# -- the objective ---------------------------------------------------------------------------
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_terms_from_their_definitions(xp, likelihood):
    """elbo = rec - kl with rec = 1/S sum_s log p(x|z_s), z_s = mu + exp(logvar/2) eps_s, and
    kl = KL(N(mu, exp(logvar)) || N(0, I)), each recomputed from distributions.py."""
    model, x, eps = _model_and_batch(xp, likelihood, "tanh")
    terms = model.elbo(x, eps=eps)
    mu, logvar = model.encode(x)
    z = mu + xp.exp(logvar / 2) * eps
    if likelihood == "bernoulli":
        rec = [sv.distributions.bernoulli_log_likelihood(x, model.decoder.net.forward(z[i])) for i in range(2)]
    else:
        rec = []
        for i in range(2):
            out = model.decoder.net.forward(z[i])
            rec.append(sv.distributions.gaussian_log_density(x, 1 / (1 + xp.exp(-out[:, :7])), out[:, 7:]))
    rec = sv.as_numpy((rec[0] + rec[1]) / 2)
    kl = sv.as_numpy(sv.distributions.kl_standard_normal(mu, logvar))
    np.testing.assert_allclose(sv.as_numpy(terms.rec), rec, rtol=1e-12)
    np.testing.assert_allclose(sv.as_numpy(terms.kl), kl, rtol=1e-12)
    np.testing.assert_allclose(sv.as_numpy(terms.elbo), rec - kl, rtol=1e-12)


def test_S_samples_average_the_single_sample_estimates(xp):
    """With eps of shape (S, B, Z), rec is the mean of the S single-sample recs, kl is unchanged,
    and the gradient is the mean of the S single-sample gradients."""
    model, x, eps = _model_and_batch(xp, "bernoulli", "tanh")
    both = model.elbo(x, eps=eps)
    singles = [model.elbo(x, eps=eps[i]) for i in range(2)]
    np.testing.assert_allclose(sv.as_numpy(both.rec), sv.as_numpy(singles[0].rec + singles[1].rec) / 2, rtol=1e-13)
    np.testing.assert_allclose(sv.as_numpy(both.kl), sv.as_numpy(singles[0].kl), rtol=1e-15)
    grads = []
    for e in (eps[0], eps[1], eps):
        model.loss_and_grads(x, eps=e)
        grads.append({k: sv.as_numpy(g).copy() for k, g in model.gradients().items()})
    for k in grads[2]:
        np.testing.assert_allclose(grads[2][k], (grads[0][k] + grads[1][k]) / 2, rtol=1e-10, atol=1e-14)


def test_eps_of_shape_B_Z_is_one_sample(xp):
    """eps (B, Z) is the same as eps[None] (1, B, Z)."""
    model, x, eps = _model_and_batch(xp, "gaussian", "tanh")
    a, b = model.elbo(x, eps=eps[0]), model.elbo(x, eps=eps[0][None])
    np.testing.assert_array_equal(sv.as_numpy(a.elbo), sv.as_numpy(b.elbo))


def test_n_samples_draws_S_samples_from_the_model_generator(xp):
    """Without eps, n_samples = S draws (S, B, Z) noise from the model's generator: the same seed
    gives the same ELBO, and larger S lowers the spread of the estimate."""
    model, x, _ = _model_and_batch(xp, "bernoulli", "tanh")
    spread = {}
    for S in (1, 16):
        values = [float(model.elbo(x, n_samples=S).elbo.mean()) for _ in range(30)]
        spread[S] = np.std(values)
    assert spread[16] < spread[1] / 2          # about 1/4 expected: sqrt(16)
    m1, _, _ = _model_and_batch(xp, "bernoulli", "tanh")
    m2, _, _ = _model_and_batch(xp, "bernoulli", "tanh")
    assert float(m1.elbo(x, n_samples=3).elbo.sum()) == float(m2.elbo(x, n_samples=3).elbo.sum())


def test_weight_decay_adds_half_lambda_theta_squared(xp):
    """loss = -mean elbo + lambda/2 sum |theta|^2 and its gradient gains lambda theta, for every tensor."""
    plain, x, eps = _model_and_batch(xp, "gaussian", "tanh", weight_decay=0.0)
    decayed, _, _ = _model_and_batch(xp, "gaussian", "tanh", weight_decay=0.3)
    square = sum(float((p * p).sum()) for p in plain.parameters().values())
    loss0, _ = plain.loss_and_grads(x, eps=eps)
    loss1, _ = decayed.loss_and_grads(x, eps=eps)
    assert loss1 - loss0 == pytest.approx(0.15 * square, rel=1e-12)
    assert decayed.weight_penalty() == pytest.approx(0.15 * square, rel=1e-12)
    for k, g in decayed.gradients().items():
        expected = sv.as_numpy(plain.gradients()[k]) + 0.3 * sv.as_numpy(plain.parameters()[k])
        np.testing.assert_allclose(sv.as_numpy(g), expected, rtol=1e-12, atol=1e-15)


def test_float32_model_by_default(xp):
    """A VAE is float32 unless asked otherwise; its ELBO and gradients are float32 too."""
    device = "cpu" if xp is np else "gpu"
    model = sv.VAE(7, z_dim=2, hidden_dims=(5,), device=device, seed=0)
    x = xp.asarray(np.random.default_rng(0).uniform(0, 1, (3, 7)).astype(np.float32))
    _, terms = model.loss_and_grads(x)
    assert terms.elbo.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.parameters().values())
    assert all(g.dtype == np.float32 for g in model.gradients().values())


def test_backward_before_elbo_raises():
    """backward() needs a forward pass to differentiate."""
    with pytest.raises(RuntimeError, match="elbo"):
        sv.VAE(4, z_dim=2, hidden_dims=(3,)).backward()


def test_forward_gives_the_path_of_one_batch(xp):
    """forward(x, eps) returns mu, logvar, z = mu + exp(logvar / 2) eps and log p(x|z) per sample,
    the pieces that elbo() averages: rec = mean over samples of log_lik."""
    model, x, eps = _model_and_batch(xp, "gaussian", "tanh")
    mu, logvar, z, log_lik = model.forward(x, eps)
    enc_mu, enc_logvar = model.encode(x)
    np.testing.assert_array_equal(sv.as_numpy(mu), sv.as_numpy(enc_mu))
    np.testing.assert_allclose(sv.as_numpy(z), sv.as_numpy(mu + xp.exp(logvar / 2) * eps), rtol=1e-15)
    assert z.shape == (2, 8, 3) and log_lik.shape == (2, 8)
    for s in range(2):
        model.decoder.forward(z[s])
        np.testing.assert_allclose(sv.as_numpy(log_lik[s]), sv.as_numpy(model.decoder.log_prob(x)), rtol=1e-13)
    np.testing.assert_allclose(sv.as_numpy(model.elbo(x, eps=eps).rec), sv.as_numpy(log_lik.mean(axis=0)),
                               rtol=1e-15)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_decoder_backward_takes_dlogp_like_every_module(xp, likelihood):
    """decoder.backward(dlogp), after forward(z) and log_prob(x), returns dz and fills the
    gradients of f = sum_n dlogp_n log p(x_n|z_n), against central differences."""
    model, x, _ = _model_and_batch(xp, likelihood, "tanh")
    rng = np.random.default_rng(1)
    z, dlogp = xp.asarray(rng.standard_normal((8, 3))), xp.asarray(rng.standard_normal(8))
    dec = model.decoder
    dec.forward(z)
    dec.log_prob(x)
    dz = dec.backward(dlogp)
    grads = {**{k: g.copy() for k, g in dec.gradients().items()}, "z": dz}

    def f():
        dec.forward(z)
        return float((dlogp * dec.log_prob(x)).sum())
    reports = sv.check_gradients(f, {**dec.parameters(), "z": z}, grads)
    assert len(reports) == 7 and max(r.worst for r in reports) < THRESHOLD, sv.format_report(reports)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_decoder_backward_needs_a_log_prob_since_the_forward(likelihood):
    """The gradient comes from log_prob's x: without a log_prob since the last forward (or a
    second backward of the same one) there is nothing to differentiate."""
    model = sv.VAE(4, z_dim=2, hidden_dims=(3,), likelihood=likelihood, dtype="float64")
    dec, z, x = model.decoder, np.zeros((2, 2)), np.full((2, 4), 0.5)
    dec.forward(z)
    with pytest.raises(RuntimeError, match="log_prob"):
        dec.backward(np.ones(2))
    dec.log_prob(x)
    dec.backward(np.ones(2))
    with pytest.raises(RuntimeError, match="log_prob"):
        dec.backward(np.ones(2))
