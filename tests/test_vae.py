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
    eps = xp.asarray(rng.standard_normal((2, 8, 3)))          # L = 2 samples, frozen
    return model, x, eps


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_vae_gradient_every_parameter_tensor(xp, likelihood, activation):
    """d/dtheta of -1/B sum_b [1/L sum_l log p(x_b|z_lb) - KL_b] + lambda/2 |theta|^2,
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
