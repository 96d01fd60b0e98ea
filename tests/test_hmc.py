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


# -- inputs checked before anything changes (one error naming the argument) ------------------
def _state(rng):
    return rng.bit_generator.state


@pytest.mark.parametrize("kwargs, name", [
    (dict(z=np.array([[0.0, np.nan]] * 3)), "z"), (dict(z=np.zeros(3)), "z"), (dict(z=np.zeros((3, 2), int)), "z"),
    (dict(step_size=0.0), "step_size"), (dict(step_size=-0.1), "step_size"), (dict(step_size=np.nan), "step_size"),
    (dict(step_size=np.inf), "step_size"), (dict(step_size=np.full(2, 0.1)), "step_size"),
    (dict(step_size=np.array([0.1, 0.0, 0.1])), "step_size"), (dict(step_size=np.array([0.1, np.nan, 0.1])), "step_size"),
    (dict(jitter=1.0), "jitter"), (dict(jitter=-0.1), "jitter"), (dict(rng=None), "rng"),
    (dict(logp=np.zeros(2), grad=np.zeros((3, 2))), "logp"), (dict(n_leapfrog=0), "n_leapfrog")])
def test_bad_hmc_step_arguments_are_named_and_draw_nothing(kwargs, name):
    model = dh._lg(np)
    target = dh._linear_gaussian_target(model, np.tile([0.5, -1.0, 2.0, 0.3], (3, 1)))
    rng = np.random.default_rng(0)
    before = _state(rng)
    args = dict(z=np.zeros((3, 2)), step_size=0.1, n_leapfrog=2, rng=rng)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        hmc.hmc_step(target, **args)
    assert _state(rng) == before


def test_bad_leapfrog_inputs_are_named():
    target = dh._linear_gaussian_target(dh._lg(np), np.zeros((2, 4)))
    z, p = np.zeros((2, 2)), np.ones((2, 2))
    with pytest.raises(ValueError, match="p must have shape"):
        hmc.leapfrog(target, z, np.ones((3, 2)), 0.1, 2)
    with pytest.raises(ValueError, match="p contains NaN"):
        hmc.leapfrog(target, z, np.full((2, 2), np.nan), 0.1, 2)
    with pytest.raises(ValueError, match="z contains NaN"):
        hmc.leapfrog(target, np.full((2, 2), np.nan), p, 0.1, 2)
    with pytest.raises(ValueError, match="step_size"):
        hmc.leapfrog(target, z, p, -0.1, 2)


@pytest.mark.parametrize("kwargs, name", [
    (dict(z0=np.full((3, 2), np.nan)), "z0"), (dict(step_size=np.nan), "step_size"),
    (dict(step_size=-1.0), "step_size"), (dict(target_accept=np.nan), "target_accept"),
    (dict(target_accept=-0.2), "target_accept"), (dict(tune="never"), "tune"), (dict(tune_rate=-1.0), "tune_rate")])
def test_more_bad_sampler_arguments_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        _lg_run(**kwargs)


def test_the_decoder_target_checks_the_images_and_the_latents():
    decoder, x, z = dh._decoder_problem(np, "bernoulli")
    with pytest.raises(ValueError, match="x must have one column per pixel"):
        hmc.decoder_log_joint(decoder, x[:, :4])
    with pytest.raises(ValueError, match="x contains NaN"):
        hmc.decoder_log_joint(decoder, np.where(x > 0.5, np.nan, x))
    target = hmc.decoder_log_joint(decoder, x)
    for bad in (z[:3], z[:, :1], np.zeros((6, 3)), z[:1]):       # z[:1] would broadcast silently
        with pytest.raises(ValueError, match=r"z must have shape \(6, 2\)"):
            target(bad)


def test_a_target_with_wrong_output_shapes_is_named():
    def bad_target(z):
        return np.zeros(z.shape[0] + 1), np.zeros_like(z)
    with pytest.raises(ValueError, match="target must return"):
        hmc.hmc_step(bad_target, np.zeros((2, 2)), 0.1, 2, np.random.default_rng(0))


# -- the authors' tuning rules ------------------------------------------------------------------
def test_the_shared_step_rule_multiplies_or_divides_by_its_factor():
    assert hmc.tune_step_size_sign(0.1, np.array([1.0, 0.8]), 0.9) == pytest.approx(0.1 * 1.25)   # mean 0.9
    assert hmc.tune_step_size_sign(0.1, np.array([1.0, 0.7]), 0.9) == pytest.approx(0.1 / 1.25)
    assert hmc.tune_step_size_sign(1e-8, np.zeros(3), 0.9) == hmc.STEP_RANGE[0]                   # kept in range


def test_tuning_that_never_stops_holds_the_authors_fixed_point():
    """The per-chain rule of the authors' estimator (rate 2.04 towards 0.5, after every transition)
    settles at 50 % acceptance and keeps moving the step while sampling."""
    model = dh._lg(np)
    x = np.tile([0.5, -1.0, 2.0, 0.3], (400, 1))
    args = dict(n_burnin=5, n_leapfrog=4, step_size=1e-3, target_accept=0.5, tune_rate=2.04,
                rng=np.random.default_rng(3))
    always = hmc.sample(dh._linear_gaussian_target(model, x), np.zeros((400, 2)), 100, tune="always", **args)
    assert abs(always["accept_rate"] - 0.5) < 0.05, always["accept_rate"]
    args["rng"] = np.random.default_rng(3)
    frozen = hmc.sample(dh._linear_gaussian_target(model, x), np.zeros((400, 2)), 100, tune="burnin", **args)
    assert frozen["step_size"].max() < 0.2 < always["step_size"].max()   # 5 tuned transitions from 0.001
