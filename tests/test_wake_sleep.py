"""Wake-sleep: its two hand-written gradients (checked in the derivation catalogue), what
each phase converges to, and its use by the Trainer beside AEVB."""
import numpy as np
import pytest

import scratchvae as sv
from scratchvae import derivations as dv
from scratchvae.derivations import wake_sleep as ws_checks
from scratchvae.models.linear_gaussian import LinearGaussian
from scratchvae.distributions import gaussian_log_density
from scratchvae.gradcheck import numerical_gradient, rel_error
from scratchvae.models.wake_sleep import WakeSleep, sleep_gradient
from scratchvae.training.step import train_step
from scratchvae.training.trainer import Trainer


def _passes(check):
    assert check.passed, f"{check.name}: {check.worst:.3e} ({check.measure}); {check.details}"
    return check


# -- the gradients -------------------------------------------------------------------------
def test_wake_gradient(xp):
    """d(-mean log p(x|z))/dtheta for the decoder's tensors, z ~ q(z|x) with eps frozen."""
    check = _passes(ws_checks.wake_gradient(xp))
    assert "bernoulli: 4 decoder tensors" in check.details and "gaussian: 4" in check.details


def test_sleep_gradient(xp):
    """d(-mean log q(z|x))/dphi for the encoder's tensors, on frozen dreams."""
    check = _passes(ws_checks.sleep_gradient(xp))
    assert "bernoulli: 4 encoder tensors" in check.details and "gaussian: 4" in check.details


def test_both_are_in_the_catalogue():
    assert {"wake_gradient", "sleep_gradient"} <= {f.__name__ for f in dv.CHECKS}


def test_sleep_gradient_is_the_derivative_of_the_mean_negative_log_q():
    """sleep_gradient(z, mu, logvar) = d/d(mu, logvar) of -1/n sum_i log q(z_i|x_i), against
    central differences, and by hand where q fits: z = mu +- sqrt(v) gives dlogvar = 0."""
    rng = np.random.default_rng(0)
    z, mu, logvar = rng.standard_normal((3, 5, 2))
    dmu, dlogvar = sleep_gradient(z, mu, logvar)
    assert dmu.shape == dlogvar.shape == (5, 2)
    loss = lambda: -gaussian_log_density(z, mu, logvar).mean()   # noqa: E731
    for analytic, x in ((dmu, mu), (dlogvar, logvar)):
        assert rel_error(analytic, numerical_gradient(loss, x)).max() < 1e-7
    mu, logvar = np.zeros((2, 1)), np.full((2, 1), np.log(4.0))
    dmu, dlogvar = sleep_gradient(np.array([[2.0], [-2.0]]), mu, logvar)
    np.testing.assert_allclose(dmu[:, 0], [-2 / 4 / 2, 2 / 4 / 2])    # -(z - mu) / v / n
    np.testing.assert_allclose(dlogvar, 0.0, atol=1e-15)                # (z - mu)^2 / v = 1


@pytest.mark.parametrize("shapes, words", [(((3, 2), (3, 2), (3, 1)), r"logvar must have shape \(3, 2\)"),
                                           (((3, 2), (2, 2), (3, 2)), r"mu must have shape \(3, 2\)"),
                                           (((3,), (3,), (3,)), "z must be 2-D"),
                                           (((0, 2), (0, 2), (0, 2)), "z must hold at least one dream")])
def test_sleep_gradient_refuses_mismatched_shapes(shapes, words):
    with pytest.raises(ValueError, match=words):
        sleep_gradient(*(np.zeros(s) for s in shapes))


# -- the authors' initialization and order of updates -----------------------------------------
def test_the_authors_initialization_zeroes_the_encoders_log_variance_outputs():
    """With init='paper', the authors' code starts the encoder's log-variance weights and biases
    at zero (q(z|x) = N(mu(x), I) for every x); every other weight is the VAE's."""
    ws, vae = (cls(6, 2, (5,), init="paper", seed=3) for cls in (WakeSleep, sv.VAE))
    assert ws.logvar_init == "zero" and ws.update_order == "decoder-first" and ws.updates_in_phases
    last = ws.encoder.layers[-2].params                   # h W + b = [mu, logvar]
    assert not last["W"][:, 2:].any() and not last["b"][2:].any()
    np.testing.assert_array_equal(last["W"][:, :2], vae.encoder.layers[-2].params["W"][:, :2])
    for name, p in vae.parameters().items():
        if name != "encoder.2.W" and name != "encoder.2.b":
            np.testing.assert_array_equal(ws.parameters()[name], p, err_msg=name)
    _, logvar = ws.encode(np.random.default_rng(0).random((4, 6), dtype=np.float32))
    assert not logvar.any()
    drawn = WakeSleep(6, 2, (5,), init="paper", seed=3, logvar_init="drawn", update_order="together")
    assert not drawn.updates_in_phases
    for name, p in vae.parameters().items():
        np.testing.assert_array_equal(drawn.parameters()[name], p, err_msg=name)
    assert WakeSleep(6, 2, (5,), init="glorot").logvar_init == "drawn"    # the paper's init only
    for kwargs, words in ((dict(update_order="wake-first"), "update_order must be one of"),
                          (dict(logvar_init="ones"), "logvar_init must be one of")):
        with pytest.raises(ValueError, match=words):
            WakeSleep(6, 2, (5,), **kwargs)


def test_a_training_step_updates_the_decoder_then_dreams_with_the_updated_decoder():
    """train_step on WakeSleep is the authors' step_wakesleep: the wake gradient (plus the
    prior) updates the decoder, the dreams come from the updated decoder, and their sleep
    gradient (plus the prior) updates the encoder -- here with one Adagrad for each network,
    as the authors' code keeps them, bit for bit. With update_order='together' it is the
    earlier step (both gradients at the same parameters), which ends elsewhere."""
    x = np.random.default_rng(3).uniform(0, 1, (8, 5))
    common = dict(likelihood="bernoulli", weight_decay=0.1, dtype="float64", init="paper", seed=4)
    ws, ref, old = (WakeSleep(5, 2, (4,), update_order=order, **common)
                    for order in ("decoder-first", "decoder-first", "together"))
    opt, opt_old = sv.Adagrad(ws.named_parameters(), lr=0.1), sv.Adagrad(old.named_parameters(), lr=0.1)
    opt_decoder = sv.Adagrad(ref.decoder.named_parameters("decoder."), lr=0.1)
    opt_encoder = sv.Adagrad(ref.encoder.named_parameters("encoder."), lr=0.1)
    for _ in range(3):
        eps = ref.rng.standard_normal((8, 2))           # the eps train_step draws from ws.rng
        expected = -float(ref.elbo(x, eps).elbo.mean()) + ref.weight_penalty()   # before any update
        ref.wake(x, eps)
        for _, p, g in ref.decoder.named_parameters():
            g += 0.1 * p
        opt_decoder.step()
        ref.sleep(*ref.dream(8))                        # dreams of the updated decoder
        for _, p, g in ref.encoder.named_parameters():
            g += 0.1 * p
        opt_encoder.step()
        assert train_step(ws, opt, x) == expected
        old.loss_and_grads(x)
        opt_old.step()
    assert opt.t == 3
    for name, p in ref.parameters().items():
        np.testing.assert_array_equal(ws.parameters()[name], p, err_msg=name)
        if name.startswith("encoder."):                 # the old order ends elsewhere
            assert not np.array_equal(old.parameters()[name], p), name


def test_the_earlier_order_is_loss_and_grads_then_one_update():
    x = np.random.default_rng(3).uniform(0, 1, (8, 5))
    a, b = (WakeSleep(5, 2, (4,), update_order="together", weight_decay=0.1, dtype="float64",
                      init="paper", seed=4) for _ in range(2))
    opt_a, opt_b = sv.Adagrad(a.named_parameters(), lr=0.1), sv.Adagrad(b.named_parameters(), lr=0.1)
    for _ in range(3):
        loss, _ = a.loss_and_grads(x)
        opt_a.step()
        assert train_step(b, opt_b, x) == loss
    for name, p in a.parameters().items():
        np.testing.assert_array_equal(b.parameters()[name], p, err_msg=name)


def test_a_non_finite_loss_stops_the_step_before_any_update():
    x = np.random.default_rng(3).uniform(0, 1, (8, 5))
    model = WakeSleep(5, 2, (4,), dtype="float64", init="paper", seed=4)
    opt = sv.Adagrad(model.named_parameters(), lr=0.1)
    model.decoder.net.layers[0].params["W"][0, 0] = np.inf
    before = {k: p.copy() for k, p in model.parameters().items()}
    with pytest.raises(FloatingPointError, match="the loss became nan"), np.errstate(all="ignore"):
        train_step(model, opt, x)
    assert opt.t == 0
    assert all(np.array_equal(before[k], p, equal_nan=True) for k, p in model.parameters().items())


class _SleepWithSignError(WakeSleep):
    def _sleep(self, z, x):               # ascends -log q: the bug of a flipped sign
        out = super()._sleep(z, x)
        for name, _, g in self.named_parameters():
            if name.startswith("encoder."):
                g *= -1
        return out


class _WakeIntoEncoder(WakeSleep):
    def _wake_backward(self):             # the whole VAE gradient: touches the encoder too
        sv.VAE.backward(self)



@pytest.mark.parametrize("check, planted", [(ws_checks.sleep_gradient, _SleepWithSignError),
                                            (ws_checks.wake_gradient, _WakeIntoEncoder)])
def test_the_checks_catch_planted_bugs(check, planted):
    result = check(np, model_cls=planted)
    assert not result.passed, result.details


# -- what each phase fits ----------------------------------------------------------------------
def test_sleep_fixed_point_is_the_exact_posterior_of_a_linear_gaussian_model():
    """Dreams (z, x) of z ~ N(0, I), x ~ N(W z + b, s^2 I) with orthogonal columns of W: the
    exact posterior N(S W^T (x - b) / s^2, S) has a diagonal S, so a linear encoder can
    represent it, and the sleep phase (max E[log q(z|x)] over dreams) must converge to it."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 2)))
    W = Q * np.array([1.5, 0.7])                       # orthogonal columns of different lengths
    true = LinearGaussian(W, 0.3 * rng.standard_normal(4), 0.5)
    S = np.linalg.inv(np.eye(2) + W.T @ W / true.s ** 2)
    assert np.allclose(S, np.diag(np.diag(S)))
    A = S @ W.T / true.s ** 2                           # posterior mean m = A (x - b)

    model = WakeSleep(4, z_dim=2, hidden_dims=(), likelihood="gaussian", dtype="float64", seed=0)
    opt = sv.Adam(model.encoder.named_parameters("encoder."), lr=0.02)
    dream_rng = np.random.default_rng(1)
    for step in range(2000):
        if step == 1000:
            opt.lr = 0.004                              # then settle: less noise from the dreams
        x, z = true.sample(1000, dream_rng)
        model.sleep(z, x)
        opt.step()
    layer = model.encoder.layers[0].params              # h = x W_enc + b_enc = [mu, logvar]
    W_enc, b_enc = layer["W"], layer["b"]
    np.testing.assert_allclose(W_enc[:, :2], A.T, atol=0.03)
    np.testing.assert_allclose(b_enc[:2], -A @ true.b, atol=0.03)
    np.testing.assert_allclose(W_enc[:, 2:], 0.0, atol=0.03)      # the variance does not depend on x
    np.testing.assert_allclose(b_enc[2:], np.log(np.diag(S)), atol=0.03)
    assert np.log(np.diag(S)).min() < -1.5               # far from where the encoder started
    # and that is where the mean sleep gradient vanishes: a fixed point, not just a stop
    x, z = true.sample(200000, dream_rng)
    layer["W"][...] = np.concatenate([A.T, np.zeros((4, 2))], axis=1)
    layer["b"][...] = np.concatenate([-A @ true.b, np.log(np.diag(S))])
    model.sleep(z, x)
    assert max(float(np.abs(g).max()) for g in model.encoder.gradients().values()) < 0.02
    layer["b"][2:] += 0.5                               # a variance e^0.5 times too large:
    model.sleep(z, x)                                   # d(-log q)/dlogvar = (1 - e^-0.5) / 2
    np.testing.assert_allclose(model.encoder.gradients()["0.b"][2:], (1 - np.exp(-0.5)) / 2, atol=0.01)


def test_wake_phase_fits_the_decoder_to_the_data_by_maximum_likelihood():
    """With an encoder that sends every image to z = 0, p(x|z) is one Gaussian per pixel, and
    the wake phase (max log p(x|z) over the data) must find its maximum-likelihood fit: the
    pixels' mean and variance."""
    rng = np.random.default_rng(2)
    x = np.clip(rng.normal([0.2, 0.5, 0.8], [0.05, 0.1, 0.03], (2000, 3)), 0, 1)
    model = WakeSleep(3, z_dim=1, hidden_dims=(4,), likelihood="gaussian", activation="tanh",
                      dtype="float64", seed=1)
    last = model.encoder.layers[-2].params             # the last Linear (then the identity)
    last["W"][...] = 0.0
    last["b"][...] = [0.0, -30.0]                       # mu = 0, sigma = 3e-7: z = 0
    opt = sv.Adam(model.decoder.named_parameters("decoder."), lr=0.02)
    for i in range(3000):
        model.wake(x[rng.integers(0, len(x), 200)])
        opt.step()
    mean_x, logvar_x = model.decoder.forward(np.zeros((1, 1)))
    np.testing.assert_allclose(mean_x[0], x.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(np.exp(logvar_x[0]), x.var(axis=0), rtol=0.1)
    assert float(np.abs(model.encoder.gradients()["0.W"]).max()) == 0   # wake never trains phi


def test_backward_is_wake_then_sleep_on_fresh_dreams_plus_the_weight_prior():
    x = np.random.default_rng(3).uniform(0, 1, (8, 5))
    a = WakeSleep(5, 2, (4,), likelihood="bernoulli", weight_decay=0.1, dtype="float64", seed=4)
    b = WakeSleep(5, 2, (4,), likelihood="bernoulli", weight_decay=0.1, dtype="float64", seed=4)
    a.loss_and_grads(x)                                 # what the Trainer calls
    b.zero_grad()
    b.wake(x)                                           # the same eps: b.rng is where a.rng was
    b.sleep(*b.dream(8))                                # and the same dreams next
    for name, p, g in b.named_parameters():
        np.testing.assert_allclose(a.gradients()[name], g + 0.1 * p, rtol=1e-12, err_msg=name)
    c = WakeSleep(5, 2, (4,), likelihood="bernoulli", dtype="float64", seed=4, sleep_batch_size=3)
    c.loss_and_grads(x)
    assert c.encoder.layers[0].cache.shape == (3, 5)    # the sleep phase saw 3 dreams


def test_dreams_are_samples_of_the_decoder():
    model = WakeSleep(6, 2, (5,), likelihood="bernoulli", seed=0)
    z, x = model.dream(4000)
    assert set(np.unique(x)) <= {0.0, 1.0} and x.dtype == np.float32
    p = model.decode(z)                                 # E[x|z]
    assert abs(float((x - p).mean())) < 0.01
    model = WakeSleep(6, 2, (5,), likelihood="gaussian", seed=0)
    z, x = model.dream(10)
    assert 0 <= x.min() and x.max() <= 1 and len(np.unique(x)) > 10   # clipped to the pixels' range
    last = model.decoder.net.layers[-2].params          # p(x|z) = N(0.5, 0.1^2) for every z
    last["W"][...] = 0.0
    last["b"][...] = np.repeat([0.0, 2 * np.log(0.1)], 6)
    z, x = model.dream(4000)
    assert abs(float(x.mean()) - 0.5) < 0.005 and abs(float(x.std()) - 0.1) < 0.005


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(sleep_batch_size=0), ValueError, "sleep_batch_size must be a positive integer"),
    (dict(sleep_batch_size=2.5), TypeError, "sleep_batch_size must be a positive integer"),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        WakeSleep(6, 2, (5,), **kwargs)
    model = WakeSleep(6, 2, (5,))
    with pytest.raises(ValueError, match="z must have shape"):
        model.sleep(np.zeros((3, 3), np.float32), np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        model.dream(0)


# -- training -------------------------------------------------------------------------------
def _digits_trainer(out=None, seed=0):
    d = sv.load_dataset("digits")
    model = WakeSleep(64, z_dim=2, hidden_dims=(32,), activation="tanh", init="paper",
                      weight_decay=1 / 300, seed=1)
    opt = sv.Adagrad(model.named_parameters(), lr=0.1, warmup=5)
    return Trainer(model, opt, d.train[:300], d.test[:100], batch_size=50, binarization="dynamic",
                   seed=seed, out=out, progress=False, checkpoint_every=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_initial_scale_decides_whether_wake_sleep_leaves_the_prior(seed):
    """The fixed point where q(z|x) = p(z) and the decoder ignores z: from N(0, 0.01^2) (the
    authors' code) wake-sleep stays there, from N(0, 0.1^2) (the paper's "N(0, 0.01)" read
    as a variance) it leaves. The digits at Adagrad 0.01, 5 x 10^4 samples; measured: KL term
    <= 2e-4 from the one, 0.12-0.42 from the other (seeds 0-2)."""
    d = sv.load_dataset("digits")
    kl = {}
    for init in ("paper", "paper-variance"):
        model = WakeSleep(64, 2, (50,), likelihood="bernoulli", activation="tanh", init=init,
                          weight_decay=1 / len(d.train), seed=seed)
        t = Trainer(model, sv.Adagrad(model.named_parameters(), lr=0.01, warmup=101), d.train,
                    d.test, batch_size=100, binarization="dynamic", seed=seed, progress=False)
        t.fit(samples=50000, eval_every=10**9)
        kl[init] = t.history[-1]["test_kl"]
    assert kl["paper"] < 0.005 and kl["paper-variance"] > 0.05, kl


def test_the_trainer_runs_wake_sleep_and_reports_the_elbo(tmp_path):
    t = _digits_trainer(tmp_path)
    before = t.evaluate()
    t.fit(samples=6000, eval_every=1500)
    history = t.history
    assert history[-1]["test_elbo"] > before["test_elbo"] + 10         # the bound rises
    # the checkpoint reloads as a plain VAE with the same parameters: the same ELBO evaluation
    vae, _ = sv.load_model(tmp_path / "checkpoint.npz")
    assert type(vae) is sv.VAE
    assert sv.evaluate_elbo(vae, t.images.eval_sets["test"], seed=t.images.eval_seed).elbo == history[-1]["test_elbo"]
    # resuming continues the very same run (the dreams' noise is in the checkpoint)
    full = {k: p.copy() for k, p in t.model.parameters().items()}
    u = _digits_trainer(tmp_path / "again")
    u.fit(samples=3000, eval_every=1500)
    v = _digits_trainer(tmp_path / "again")
    v.resume()
    v.fit(samples=6000, eval_every=1500)
    assert all(np.array_equal(full[k], p) for k, p in v.model.parameters().items())


# -- the command line ---------------------------------------------------------------------------
def _cli(capsys, *argv):
    from scratchvae.cli import main

    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_scratchvae_train_algorithm_wake_sleep(tmp_path, capsys):
    run = tmp_path / "ws"
    status, out, err = _cli(capsys, "train", "--algorithm", "wake-sleep", "--sleep-batch-size", 50,
                            "--epochs", 2, "--hidden-dim", 32, "--no-progress", "--no-plots",
                            "--out", run)
    assert status == 0, err
    assert "WakeSleep(x_dim=64" in out and "held-out elbo" in out
    from scratchvae.training.checkpoint import load
    settings = load(run / "checkpoint.npz").meta["settings"]
    assert settings["algorithm"] == "wake-sleep" and settings["sleep_batch_size"] == 50
    status, out, err = _cli(capsys, "evaluate", "--out", run, "--k", 0)   # evaluated as a VAE
    assert status == 0 and "held-out ELBO over 297 images" in out, err


@pytest.mark.parametrize("argv, words", [
    (["--algorithm", "gibbs"], "argument --algorithm: invalid choice: 'gibbs'"),
    (["--sleep-batch-size", "10"], "--sleep-batch-size applies to --algorithm wake-sleep only"),
    (["--split", "odd"], "argument --split: invalid choice: 'odd'"),
    (["--split-seed", "1.5"], "argument --split-seed: invalid int value: '1.5'"),
    (["--split-seed", "-1"], "--split-seed must be an integer >= 0"),
    (["--split", "contiguous"], "split='contiguous' applies to frey only"),
])
def test_bad_algorithm_and_split_options(tmp_path, capsys, argv, words):
    from scratchvae.cli import main

    try:
        status = main(["train", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r"), *argv])
    except SystemExit as e:                        # argparse's own errors: status 2
        status = e.code
    err = capsys.readouterr().err
    assert status != 0 and words in err and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_wake_sleep_trains_on_either_device(xp, device):
    """The Trainer's device path (elbo, then backward, then the optimizer) runs wake-sleep too."""
    d = sv.load_dataset("digits")
    model = WakeSleep(64, z_dim=2, hidden_dims=(32,), activation="tanh", init="paper", seed=1,
                      device=device)
    opt = sv.Adagrad(model.named_parameters(), lr=0.1, warmup=5)
    t = Trainer(model, opt, d.train[:300], d.test[:100], batch_size=50, binarization="dynamic",
                seed=0, progress=False)
    before = t.evaluate()["test_elbo"]
    t.fit(samples=6000, eval_every=3000)
    assert t.history[-1]["test_elbo"] > before + 10


def test_a_run_on_another_split_is_evaluated_on_its_own_split(tmp_path, capsys):
    run = tmp_path / "s3"
    status, out, err = _cli(capsys, "train", "--split-seed", 3, "--epochs", 1, "--hidden-dim", 16,
                            "--no-progress", "--no-plots", "--out", run)
    assert status == 0 and "default_rng(3)" in out, err
    status, out, err = _cli(capsys, "evaluate", "--out", run, "--k", 0)
    assert status == 0 and "held-out ELBO over 297 images" in out, err
