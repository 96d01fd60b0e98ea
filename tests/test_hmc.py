"""Hybrid Monte Carlo on z: the gradient it follows, the leapfrog's reversibility, volume and
energy error, samples of an exact posterior, step-size tuning, and bad input. Each check of
``scratchvae.derivations.hmc`` is run here and shown to fail on a planted bug."""
import math

import numpy as np
import pytest

from scratchvae.derivations import hmc as dh
from scratchvae.models import hmc


def _passes(check):
    assert check.passed, f"{check.name}: {check.worst:.3e} >= {check.threshold:.3e}; {check.details}"
    return check


def _fails(check):
    assert not check.passed, f"{check.name} missed a planted bug: {check.details}"


@pytest.mark.parametrize("name", [c.__name__ for c in dh.CHECKS])
def test_posterior_sampling_checks_pass(xp, name):
    _passes(getattr(dh, name)(xp))


# -- planted bugs ---------------------------------------------------------------------------
def test_gradient_without_the_prior_term_is_caught():
    def likelihood_only(decoder, x):
        full = hmc.decoder_log_joint(decoder, x)
        return lambda z: (full(z)[0], full(z)[1] + z)          # forgets d/dz log N(z; 0, I) = -z
    _fails(dh.hmc_log_joint_gradient(np, target_fn=likelihood_only))


def _euler(target, z, p, step_size, n_steps, grad=None):
    """Symplectic Euler: full momentum step, then full position step (volume-preserving,
    but neither reversible nor second order)."""
    for _ in range(n_steps):
        logp, grad = target(z)
        p = p + step_size * grad
        z = z + step_size * p
    logp, grad = target(z)
    return z, p, logp, grad


def test_a_first_order_integrator_is_caught():
    _fails(dh.leapfrog_reversible(np, leapfrog=_euler))
    _fails(dh.leapfrog_energy_order(np, leapfrog=_euler))
    _passes(dh.leapfrog_volume(np, leapfrog=_euler))            # what volume alone cannot see


def test_a_momentum_update_that_is_not_a_shear_changes_volume():
    def damped(target, z, p, step_size, n_steps, grad=None):
        z, p, logp, grad = hmc.leapfrog(target, z, p, step_size, n_steps, grad)
        return z, 0.99 * p, logp, grad
    _fails(dh.leapfrog_volume(np, leapfrog=damped))


def test_sampling_without_the_metropolis_test_is_caught():
    def always_accept(target, z0, n_samples, n_burnin, n_leapfrog, step_size, target_accept, rng):
        z, e = z0, 0.6                                           # a large step, never rejected
        for _ in range(n_burnin + n_samples):
            p = rng.standard_normal(z.shape)
            z, _, _, _ = hmc.leapfrog(target, z, p, e, n_leapfrog)
        return {"z": z[None], "accept_rate": 1.0}
    _fails(dh.hmc_linear_gaussian(np, sampler=always_accept))


# -- the sampler's behaviour ------------------------------------------------------------------
def test_rejected_chains_keep_their_state_and_accepted_ones_move():
    model = dh._lg(np)
    x = np.tile([0.5, -1.0, 2.0, 0.3], (500, 1))
    target = dh._linear_gaussian_target(model, x)
    z = np.random.default_rng(0).standard_normal((500, 2))
    z1, logp1, grad1, a = hmc.hmc_step(target, z, 0.6, 10, np.random.default_rng(1))
    moved = (z1 != z).any(axis=1)
    assert 0 < moved.mean() < 1                                  # a big step: some rejections
    np.testing.assert_array_equal(z1[~moved], z[~moved])
    logp_check, grad_check = target(z1)
    np.testing.assert_allclose(logp1, logp_check, rtol=1e-12)    # returned values are those of z1
    np.testing.assert_allclose(grad1, grad_check, rtol=1e-12, atol=1e-12)
    assert ((a >= 0) & (a <= 1)).all()


def test_accept_prob_is_min_one_exp_of_the_energy_drop():
    """a = min(1, exp(H(z, p) - H(z', p'))) with H = -log p + |p|^2 / 2; a trajectory whose end
    is not finite is rejected (a = 0); energy changes of hundreds neither overflow nor warn."""
    logp0, p0 = np.array([-3.0, -3.0, -3.0, -3.0, -3.0]), np.ones((5, 2))
    logp1 = np.array([-2.5, -3.7, -np.inf, np.nan, 700.0])   # the last: an energy drop of 703
    p1 = np.ones((5, 2))
    with np.errstate(all="raise"):
        a = hmc.hmc_accept_prob(logp0, p0, logp1, p1)
    h0, h1 = -logp0 + 1.0, -logp1 + (p1 ** 2).sum(axis=1) / 2
    np.testing.assert_allclose(a[:2], [1.0, math.exp(h0[1] - h1[1])], rtol=1e-15)
    assert a[2] == 0.0 and a[3] == 0.0 and a[4] == 1.0


@pytest.mark.parametrize("target_accept", [0.6, 0.9])
def test_step_size_is_tuned_to_the_target_acceptance(target_accept):
    model = dh._lg(np)
    x = np.tile([0.5, -1.0, 2.0, 0.3], (400, 1))
    run = hmc.sample(dh._linear_gaussian_target(model, x), np.zeros((400, 2)), 50, n_burnin=200,
                     n_leapfrog=5, step_size=0.01, target_accept=target_accept, rng=np.random.default_rng(2))
    assert abs(run["accept_rate"] - target_accept) < 0.03, run["accept_rate"]
    assert run["step_size"].min() > 0.05                      # it grew from the tiny start


def test_one_shared_step_size_follows_the_mean_acceptance():
    a = np.array([1.0, 1.0, 0.0, 1.0])
    assert hmc.tune_step_size(0.1, a, 0.9, rate=0.5) == pytest.approx(0.1 * math.exp(0.5 * (0.75 - 0.9)))
    np.testing.assert_allclose(hmc.tune_step_size(np.full(4, 0.1), a, 0.9, rate=0.5),
                               0.1 * np.exp(0.5 * (a - 0.9)))


# -- bad input -------------------------------------------------------------------------------
def _lg_run(**kwargs):
    model = dh._lg(np)
    x = np.tile([0.5, -1.0, 2.0, 0.3], (3, 1))
    args = dict(n_samples=2, n_burnin=1, n_leapfrog=2, step_size=0.1, target_accept=0.9,
                rng=np.random.default_rng(0))
    args.update(kwargs)
    z0 = args.pop("z0", np.zeros((3, 2)))
    return hmc.sample(dh._linear_gaussian_target(model, x), z0, **args)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_leapfrog=0), "n_leapfrog"), (dict(n_leapfrog=-3), "n_leapfrog"),
    (dict(n_samples=0), "n_samples"), (dict(n_burnin=-1), "n_burnin"),
    (dict(target_accept=1.0), "target_accept"), (dict(target_accept=0.0), "target_accept"),
    (dict(target_accept=1.5), "target_accept"), (dict(step_size=0.0), "step_size"),
    (dict(z0=np.zeros((0, 2))), "z0"), (dict(rng=None), "rng")])
def test_bad_sampler_arguments_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        _lg_run(**kwargs)


def test_bad_leapfrog_and_step_counts_are_named():
    model = dh._lg(np)
    target = dh._linear_gaussian_target(model, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="n_steps"):
        hmc.leapfrog(target, np.zeros((1, 2)), np.zeros((1, 2)), 0.1, 0)
    with pytest.raises(ValueError, match="n_leapfrog"):
        hmc.hmc_step(target, np.zeros((1, 2)), 0.1, 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="n_leapfrog"):
        hmc.hmc_step(target, np.zeros((1, 2)), 0.1, 2.5, np.random.default_rng(0))
