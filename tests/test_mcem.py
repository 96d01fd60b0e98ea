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
    assert model.step_size != 0.1 and a.shape == (50,)


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
