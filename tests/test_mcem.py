"""Monte Carlo EM: its weight gradient by finite differences, the E-step's bookkeeping, the
M-step raising the complete-data objective, training raising it over the data, bad input."""
import numpy as np
import pytest

from scratchvae import Adagrad
from scratchvae.data import load_dataset
from scratchvae.data.datasets import binarize
from scratchvae.gradcheck import THRESHOLD, check_gradients
from scratchvae.models.mcem import MCEM


def _digits(n=300):
    data = load_dataset("digits", download=False)
    return binarize(data.train[:n], np.random.default_rng(0))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_weight_gradient_matches_finite_differences(likelihood):
    rng = np.random.default_rng(1)
    model = MCEM(5, 6, z_dim=2, hidden_dims=(4,), likelihood=likelihood, weight_decay=0.1,
                 init="glorot", dtype="float64", seed=3)
    x, z = rng.uniform(0.05, 0.95, (6, 5)), rng.standard_normal((6, 2))
    model.loss_and_grads(x, z)
    grads = {k: g.copy() for k, g in model.gradients().items()}
    reports = check_gradients(lambda: -model.complete_data_objective(x, z), model.parameters(), grads)
    assert len(reports) == 4 and max(r.worst for r in reports) < THRESHOLD, reports


def test_e_step_moves_only_the_visited_latents_and_tunes_the_step():
    x = _digits(200).astype(np.float32)
    model = MCEM(64, 200, z_dim=2, hidden_dims=(16,), seed=0)
    z_before = model.z.copy()
    idx = np.arange(50, 100)
    a = model.e_step(x[idx], idx)
    np.testing.assert_array_equal(model.z[:50], z_before[:50])
    np.testing.assert_array_equal(model.z[100:], z_before[100:])
    assert (model.z[idx] != z_before[idx]).any(axis=1).mean() > 0.5
    assert model.step_size in (0.01 * 1.25, 0.01 / 1.25) and a.shape == (50,)   # the authors' rule


def test_m_step_raises_the_complete_data_objective_of_its_batch():
    """With the sampled z fixed, 5 Adagrad updates of the decoder raise
    J = mean log p(x, z) - lambda/2 |theta|^2 on that batch, at every point of training."""
    x = _digits().astype(np.float64)
    model = MCEM(64, 300, z_dim=2, hidden_dims=(16,), weight_decay=1 / 300, dtype="float64", seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    gains = []
    for i in range(60):
        idx = np.arange((i % 3) * 100, (i % 3 + 1) * 100)
        before = model.train_step(x[idx], idx, opt)
        gains.append(model.complete_data_objective(x[idx], model.z[idx]) - before)
    assert min(gains) > 0, gains


def test_training_raises_the_objective_over_the_training_set():
    x = _digits().astype(np.float32)
    model = MCEM(64, 300, z_dim=2, hidden_dims=(16,), weight_decay=1 / 300, seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    start = model.complete_data_objective(x, model.z)
    for i in range(300):
        idx = np.random.default_rng(i).permutation(300)[:100]
        model.train_step(x[idx], idx, opt)
    end = model.complete_data_objective(x, model.z)
    assert end > start + 10, (start, end)                 # nats per image
    assert abs(model.accept_rate - 0.9) < 0.15            # the step size found its target


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_leapfrog=0), "n_leapfrog"), (dict(weight_updates=0), "weight_updates"),
    (dict(target_accept=1.0), "target_accept"), (dict(target_accept=-0.5), "target_accept"),
    (dict(n_train=0), "n_train"), (dict(step_size=0.0), "step_size"), (dict(weight_decay=-1.0), "weight_decay")])
def test_bad_arguments_are_named(kwargs, name):
    args = dict(x_dim=4, n_train=10, z_dim=2, hidden_dims=(3,))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        MCEM(**args)


@pytest.mark.parametrize("hidden_dims", [None, "400", 4.0])
def test_hidden_dims_that_are_not_sizes_are_named(hidden_dims):
    with pytest.raises(TypeError, match="hidden_dims must be a positive integer or a tuple"):
        MCEM(4, 10, z_dim=2, hidden_dims=hidden_dims)


def test_bad_indices_change_nothing():
    model = MCEM(4, 10, z_dim=2, hidden_dims=(3,))
    z = model.z.copy()
    x = np.full((2, 4), 0.5, dtype=np.float32)
    for idx in (np.array([0, 10]), np.array([-1, 0]), np.array([0]), np.array([0.0, 1.0])):
        with pytest.raises(ValueError, match="idx"):
            model.e_step(x, idx)
    np.testing.assert_array_equal(model.z, z)


# -- batch MCEM -----------------------------------------------------------------------------
def test_batch_mcem_raises_the_complete_data_objective_and_the_estimated_evidence():
    """End to end on the 8x8 digits: iterations of batch MCEM (an HMC transition of every z, then
    5 weight updates over all images) raise J over the training set and the appendix-D estimate
    of log p(x), and the shared step finds its 90 % acceptance."""
    from scratchvae.training.marginal_likelihood import estimate_log_marginal
    x = _digits().astype(np.float32)
    model = MCEM(64, 300, z_dim=2, hidden_dims=(16,), weight_decay=1 / 300, seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    est = dict(n_samples=20, n_burnin=30, seed=1)
    start_J, start_est = model.complete_data_objective(x, model.z), estimate_log_marginal(model.decoder, 2, x[:60], **est)
    accept = []
    for _ in range(80):
        model.batch_step(x, opt)
        accept.append(model.accept_rate)
    end_J, end_est = model.complete_data_objective(x, model.z), estimate_log_marginal(model.decoder, 2, x[:60], **est)
    assert end_J > start_J + 15, (start_J, end_J)
    assert end_est["log_px"].mean() > start_est["log_px"].mean() + 15
    assert abs(np.mean(accept[-40:]) - 0.9) < 0.05, np.mean(accept[-40:])


def test_a_batch_iteration_moves_every_z_once_and_updates_the_weights_five_times():
    x = _digits(200).astype(np.float32)
    model = MCEM(64, 200, z_dim=2, hidden_dims=(8,), seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    z = model.z.copy()
    model.batch_step(x, opt)
    assert (model.z != z).any(axis=1).mean() > 0.5 and opt.t == 5


def test_gradients_over_blocks_equal_those_in_one_pass():
    x, z = _digits(250).astype(np.float64), np.random.default_rng(0).standard_normal((250, 2))
    grads = []
    for block in (1000, 64):
        model = MCEM(64, 250, z_dim=2, hidden_dims=(8,), weight_decay=0.01, dtype="float64", seed=0,
                     block_size=block)
        loss = model.loss_and_grads(x, z)
        grads.append((loss, {k: g.copy() for k, g in model.gradients().items()}))
        assert model.complete_data_objective(x, z) == pytest.approx(-loss, rel=1e-12)
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    for k in grads[0][1]:
        np.testing.assert_allclose(grads[1][1][k], grads[0][1][k], rtol=1e-10, atol=1e-14)


def test_minibatch_weight_updates_walk_a_fixed_cycle():
    x = _digits(300).astype(np.float32)
    model = MCEM(64, 300, z_dim=2, hidden_dims=(8,), m_batch_size=100, seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    model.batch_step(x, opt)
    assert model.m_cursor == (5 * 100) % 300 and opt.t == 5


# -- inputs checked before anything changes ---------------------------------------------------
def _bad_optimizers(model):
    other = MCEM(64, 300, z_dim=2, hidden_dims=(16,), seed=1)
    return [None, object(), Adagrad(other.named_parameters(), lr=0.1)]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_bad_optimizer_fails_before_the_latents_change(which):
    x = _digits().astype(np.float32)
    model = MCEM(64, 300, z_dim=2, hidden_dims=(16,), seed=0)
    bad = _bad_optimizers(model)[which]
    z, rng, step = model.z.copy(), model.rng.bit_generator.state, model.step_size
    with pytest.raises((TypeError, ValueError), match="optimizer"):
        model.batch_step(x, bad)
    with pytest.raises((TypeError, ValueError), match="optimizer"):
        model.train_step(x[:100], np.arange(100), bad)
    np.testing.assert_array_equal(model.z, z)
    assert model.rng.bit_generator.state == rng and model.step_size == step


@pytest.mark.parametrize("x, match", [
    (np.full((300, 64), np.nan, np.float32), "x contains NaN"), (np.zeros((299, 64), np.float32), "whole training set"),
    (np.zeros((300, 63), np.float32), "x must have shape"), (np.zeros((300, 64)), "dtype")])
def test_bad_training_images_fail_before_the_latents_change(x, match):
    model = MCEM(64, 300, z_dim=2, hidden_dims=(16,), seed=0)
    opt = Adagrad(model.named_parameters(), lr=0.05)
    z = model.z.copy()
    with pytest.raises((TypeError, ValueError), match=match):
        model.batch_step(x, opt)
    np.testing.assert_array_equal(model.z, z)
    assert opt.t == 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(m_batch_size=11), "m_batch_size"), (dict(m_batch_size=0), "m_batch_size"),
    (dict(tune_factor=0.9), "tune_factor"), (dict(tune_factor=np.nan), "tune_factor"),
    (dict(step_size=np.nan), "step_size"), (dict(step_size=-0.1), "step_size"),
    (dict(target_accept=np.nan), "target_accept"), (dict(block_size=0), "block_size")])
def test_more_bad_arguments_are_named(kwargs, name):
    args = dict(x_dim=4, n_train=10, z_dim=2, hidden_dims=(3,))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        MCEM(**args)
