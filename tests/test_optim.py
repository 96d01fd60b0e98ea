"""Optimizers: steps computed by hand, in-place updates, and state that survives a checkpoint."""
import math

import numpy as np
import pytest

from scratchvae.backend import as_numpy
from scratchvae.layers import MLP
from scratchvae import optim
from scratchvae.optim import OPTIMIZERS, SGD, Adagrad, Adam


def _one(xp, value, grad):
    """A single scalar parameter with a fixed gradient, as (name, param, grad)."""
    return ("w", xp.asarray(np.array([value])), xp.asarray(np.array([grad])))


def _run(opt, p, steps):
    out = []
    for _ in range(steps):
        opt.step()
        out.append(float(as_numpy(p)[0]))
    return out


def test_sgd_by_hand(xp):
    """Plain SGD, lr 0.1, gradient 2 held fixed: w = 1 - 0.2 t, i.e. 0.8, 0.6, 0.4."""
    name, p, g = _one(xp, 1.0, 2.0)
    assert _run(SGD([(name, p, g)], lr=0.1), p, 3) == pytest.approx([0.8, 0.6, 0.4], abs=1e-15)


def test_sgd_momentum_by_hand(xp):
    """Momentum 0.9, lr 0.1, gradient 1: v = 1, 1.9, 2.71, so w = 1 - 0.1, - 0.19, - 0.271: 0.9, 0.71, 0.439."""
    name, p, g = _one(xp, 1.0, 1.0)
    assert _run(SGD([(name, p, g)], lr=0.1, momentum=0.9), p, 3) == pytest.approx([0.9, 0.71, 0.439], abs=1e-15)


def test_adagrad_by_hand(xp):
    """lr 0.5, gradient 2: h = 4, 8, 12, steps 0.5 * 2 / sqrt(h) = 0.5, 0.3536, 0.2887 (eps 1e-8 aside)."""
    name, p, g = _one(xp, 1.0, 2.0)
    got = _run(Adagrad([(name, p, g)], lr=0.5), p, 3)
    s1, s2, s3 = 1 / (2 + 1e-8), 1 / (math.sqrt(8) + 1e-8), 1 / (math.sqrt(12) + 1e-8)
    assert got == pytest.approx([1 - s1, 1 - s1 - s2, 1 - s1 - s2 - s3], abs=1e-15)
    assert got == pytest.approx([0.5, 0.5 - 0.35355339, 0.5 - 0.35355339 - 0.28867513], abs=1e-8)


def test_adam_by_hand(xp):
    """With a constant gradient g the bias corrections make m_hat = g and v_hat = g^2 exactly, so
    each step is lr g / (|g| + eps): lr 0.1, g = 3 gives 1 - 0.1, 1 - 0.2, 1 - 0.3 (to 1e-9)."""
    name, p, g = _one(xp, 1.0, 3.0)
    step = 0.1 * 3 / (3 + 1e-8)
    expected = [1 - step, 1 - 2 * step, 1 - 3 * step]
    assert _run(Adam([(name, p, g)], lr=0.1), p, 3) == pytest.approx(expected, abs=1e-14)


def test_adam_first_steps_with_changing_gradient(xp):
    """Gradients 1 then -1 (b1 0.9, b2 0.999): step 1 moves lr; at step 2 m = 0.09 - 0.1 = -0.01,
    v = 0.000999 + 0.001 = 0.001999, m_hat = -0.01/0.19, v_hat = 0.001999/0.001999 = 1,
    so w2 = w1 + lr 0.01/0.19 / (1 + eps)."""
    name, p, g = _one(xp, 0.0, 1.0)
    opt = Adam([(name, p, g)], lr=0.1)
    opt.step()
    w1 = float(as_numpy(p)[0])
    assert w1 == pytest.approx(-0.1, abs=1e-9)
    g[...] = -1.0
    opt.step()
    assert float(as_numpy(p)[0]) == pytest.approx(w1 + 0.1 * (0.01 / 0.19) / (1 + 1e-8), abs=1e-14)


def test_textbook_update_functions_by_hand(xp):
    """The textbook updates as functions, on one coordinate, updating the parameter and the state
    in place: SGD with momentum (v = 0.9 * 1 + 2, theta = 1 - 0.1 v), Adagrad (h = 1 + 4,
    theta = 1 - 0.5 * 2 / sqrt(5)), and Adam's first step (m_hat = g, v_hat = g^2: theta moves
    by lr g / (|g| + eps))."""
    p, g, v = xp.asarray([1.0]), xp.asarray([2.0]), xp.asarray([1.0])
    optim.sgd_momentum_update(p, g, v, 0.1, 0.9)
    assert float(v[0]) == pytest.approx(2.9, abs=1e-15) and float(p[0]) == pytest.approx(1 - 0.29, abs=1e-15)
    p, h = xp.asarray([1.0]), xp.asarray([1.0])
    optim.adagrad_update(p, g, h, 0.5)
    assert float(h[0]) == 5.0 and float(p[0]) == pytest.approx(1 - 1 / (math.sqrt(5) + 1e-8), abs=1e-15)
    p, m, v = xp.asarray([1.0]), xp.zeros(1), xp.zeros(1)
    optim.adam_update(p, xp.asarray([3.0]), m, v, 1, lr=0.1)
    assert float(p[0]) == pytest.approx(1 - 0.1 * 3 / (3 + 1e-8), abs=1e-15)
    assert float(m[0]) == pytest.approx(0.3) and float(v[0]) == pytest.approx(0.009)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_updates_are_in_place(xp, device, name):
    """A step changes the parameter arrays themselves (no new arrays), so models and optimizers
    share them; the state arrays are also reused."""
    mlp = MLP([3, 4, 2], rng=np.random.default_rng(0), dtype="float64", device=device)
    before = {k: (id(p), as_numpy(p).copy()) for k, p in mlp.parameters().items()}
    opt = OPTIMIZERS[name](mlp.named_parameters(), lr=0.1)
    state_ids = [id(a) for arrays in opt.state.values() for a in arrays.values()]
    for g in mlp.gradients().values():
        g[...] = 1.0
    opt.step()
    opt.step()
    for k, p in mlp.parameters().items():
        assert id(p) == before[k][0]
        assert not np.array_equal(as_numpy(p), before[k][1])
    assert [id(a) for arrays in opt.state.values() for a in arrays.values()] == state_ids


@pytest.mark.parametrize("name, kwargs",
                         [("sgd", {"momentum": 0.9}), ("sgd", {}), ("adagrad", {}), ("adam", {})])
def test_state_dict_round_trip_restores_the_trajectory(xp, device, name, kwargs):
    """Save params and optimizer state after 3 steps, run 3 more; restore into a fresh optimizer
    and run the same 3 steps: the parameters are bit-for-bit identical."""
    def loss_grads(mlp, x):
        mlp.forward(x)
        mlp.backward(xp.ones((x.shape[0], 2)))

    x = xp.asarray(np.random.default_rng(1).standard_normal((5, 3)))
    mlp = MLP([3, 4, 2], activation="tanh", rng=np.random.default_rng(2), dtype="float64", device=device)
    opt = OPTIMIZERS[name](mlp.named_parameters(), lr=0.05, **kwargs)
    for _ in range(3):
        loss_grads(mlp, x)
        opt.step()
    saved_params = {k: as_numpy(p).copy() for k, p in mlp.parameters().items()}
    saved_state = opt.state_dict()
    assert saved_state["t"] == 3
    assert all(isinstance(v, np.ndarray) for k, v in saved_state.items() if k != "t")
    for _ in range(3):
        loss_grads(mlp, x)
        opt.step()
    first = {k: as_numpy(p).copy() for k, p in mlp.parameters().items()}

    for k, p in mlp.parameters().items():
        p[...] = xp.asarray(saved_params[k])
    fresh = OPTIMIZERS[name](mlp.named_parameters(), lr=0.05, **kwargs)
    fresh.load_state_dict(saved_state)
    assert fresh.t == 3
    for _ in range(3):
        loss_grads(mlp, x)
        fresh.step()
    for k, p in mlp.parameters().items():
        np.testing.assert_array_equal(as_numpy(p), first[k])


def test_state_dict_is_a_copy(xp, device):
    """Changing the exported state does not change the optimizer."""
    mlp = MLP([2, 2], rng=np.random.default_rng(3), dtype="float64", device=device)
    opt = Adam(mlp.named_parameters())
    for g in mlp.gradients().values():
        g[...] = 1.0
    opt.step()
    state = opt.state_dict()
    state["m/0.W"][...] = 123.0
    assert float(as_numpy(opt.state["m"]["0.W"]).max()) < 1.0


def test_load_state_dict_refuses_a_mismatch_and_changes_nothing():
    """Missing keys or wrong shapes raise ValueError naming the key, with the state untouched."""
    mlp = MLP([3, 2], rng=np.random.default_rng(4), dtype="float64")
    opt = Adam(mlp.named_parameters())
    for g in mlp.gradients().values():
        g[...] = 1.0
    opt.step()
    before = opt.state_dict()
    bad = dict(before)
    bad["v/0.b"] = np.zeros(5)
    bad["m/0.W"] = np.full((3, 2), 7.0)            # valid, but must not be applied either
    with pytest.raises(ValueError, match="v/0.b"):
        opt.load_state_dict(bad)
    missing = {k: v for k, v in before.items() if k != "m/0.W"}
    with pytest.raises(ValueError, match="m/0.W"):
        opt.load_state_dict(missing)
    after = opt.state_dict()
    assert after["t"] == before["t"]
    for k in before:
        if k != "t":
            np.testing.assert_array_equal(after[k], before[k])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, kwargs", [("sgd", {}), ("sgd", {"momentum": 0.9}), ("adagrad", {}),
                                          ("adam", {})])
def test_step_matches_the_textbook_form_after_many_steps(monkeypatch, dtype, name, kwargs):
    """``step()`` (flat buffer, cache-sized blocks, rearranged passes) against ``textbook_step()``
    (per tensor, the formula as written) on two copies of a model with more parameters than
    one block, for 200 steps of random gradients. SGD does the same operations, so it agrees
    bit for bit; Adagrad and Adam round differently at each step, by a few units in the last
    place of the step (at most lr), so after T steps they agree to T * lr * 8 eps."""
    steps, lr = 200, 0.01
    monkeypatch.setattr(optim, "BLOCK", 4096)   # several blocks, the last one partial
    models = [MLP([40, 200, 60], rng=np.random.default_rng(0), dtype=dtype) for _ in range(2)]
    assert sum(p.size for p in models[0].parameters().values()) > optim.BLOCK
    fast, textbook = (OPTIMIZERS[name](m.named_parameters(), lr=lr, **kwargs) for m in models)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        for (_, _, g1), (_, _, g2) in zip(*(m.named_parameters() for m in models)):
            g1[...] = g2[...] = rng.standard_normal(g1.shape) * rng.uniform(0, 2)
        fast.step()
        textbook.textbook_step()
    atol = 0.0 if name == "sgd" else steps * lr * 8 * np.finfo(dtype).eps
    moved = 0.0
    for (k, p1, _), (_, p2, _) in zip(*(m.named_parameters() for m in models)):
        np.testing.assert_allclose(p1, p2, rtol=0, atol=atol, err_msg=k)
        moved = max(moved, float(np.abs(p2 - MLP([40, 200, 60], rng=np.random.default_rng(0),
                                                     dtype=dtype).parameters()[k]).max()))
    assert moved > 100 * atol + 1e-3     # the parameters did move: the test compares something
    for s in fast.state_names:   # m, v, h: running sums that forget, so rounding stays at a few eps
        for k, ref in textbook.state[s].items():
            scale = float(np.abs(ref).max())
            np.testing.assert_allclose(fast.state[s][k], ref, rtol=0, atol=64 * np.finfo(dtype).eps * scale,
                                       err_msg=f"{s}/{k}")


# -- no subnormal numbers in a decaying state -------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_to_zero_zeroes_what_is_below_the_threshold_and_keeps_the_rest(dtype):
    from scratchvae.optim import flush_threshold, flush_to_zero
    th = flush_threshold(dtype)
    rng = np.random.default_rng(0)
    small = (rng.uniform(-1, 1, 1000) * th).astype(dtype)          # |a| <= threshold
    ordinary = (rng.standard_normal(1000) * 10.0 ** rng.uniform(-12, 3, 1000)).astype(dtype)
    middle = (rng.uniform(1, 1e6, 1000) * th).astype(dtype)        # just above: rounded
    a = np.concatenate([small, ordinary, middle])
    b = a.copy()
    flush_to_zero(b, th)
    n = small.size
    assert np.all(b[:n] == 0)
    assert np.array_equal(b[n:2 * n], ordinary)                     # exact: far above threshold
    assert np.abs(b[2 * n:] - middle).max() <= th                   # moved by at most threshold


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda ps: Adam(ps, lr=1e-3), lambda ps: SGD(ps, lr=1e-3, momentum=0.9)])
def test_a_decaying_state_never_becomes_subnormal(make, dtype):
    """Where the gradient stops (a dead unit), b1^t m falls below the smallest normal float
    after a few hundred steps in float32; the optimizer's periodic flush keeps it out of the
    subnormal range (x86 CPUs compute with subnormals many times slower), and the parameters
    still follow the textbook update."""
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal(300).astype(dtype), np.zeros(300, dtype)
    p_ref = p.copy()
    opt, ref = make([("w", p, g)]), make([("w", p_ref, g)])
    tiny = np.finfo(dtype).tiny
    subnormal = lambda a: int(((a != 0) & (np.abs(a) < tiny)).sum())   # noqa: E731
    worst = ref_worst = 0
    for t in range(7500 if dtype == np.float64 else 1500):
        g[...] = rng.standard_normal(300) if t < 20 else 0.0         # the gradient stops at t = 20
        opt.step()
        ref.textbook_step()
        worst = max([worst] + [subnormal(opt.state[s]["w"]) for s in opt.state_names])
        ref_worst = max([ref_worst] + [subnormal(ref.state[s]["w"]) for s in ref.state_names])
    assert ref_worst > 0      # the textbook form, never flushed, did go subnormal
    assert worst == 0
    np.testing.assert_allclose(p, p_ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=0)


# -- a step in parts -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", [("sgd", {"momentum": 0.9}), ("adagrad", {"warmup": 3}),
                                          ("adam", {})])
def test_a_step_in_parts_is_the_same_step_bit_for_bit(monkeypatch, name, kwargs):
    """Updating the last layer first and the first layer later, in one step, gives the very
    parameters and state of ``step()`` with the same gradients (every update is elementwise),
    over 120 steps: through Adagrad's warm-up and the flush of decaying states at step 100."""
    monkeypatch.setattr(optim, "BLOCK", 4096)   # several blocks, the parts' edges inside them
    models = [MLP([40, 200, 60], rng=np.random.default_rng(0), dtype="float32") for _ in range(2)]
    whole, parts = (OPTIMIZERS[name](m.named_parameters(), lr=0.01, **kwargs) for m in models)
    rng = np.random.default_rng(1)
    for _ in range(120):
        for (_, _, g1), (_, _, g2) in zip(*(m.named_parameters() for m in models)):
            g1[...] = g2[...] = rng.standard_normal(g1.shape) * rng.uniform(0, 2)
        whole.step()
        with parts.step_in_parts() as update:
            update("2.")
            update("0.")
    assert parts.t == whole.t == 120
    for (k, p1, _), (_, p2, _) in zip(*(m.named_parameters() for m in models)):
        np.testing.assert_array_equal(p1, p2, err_msg=k)
    for s in whole.state_names:
        for k, a in whole.state[s].items():
            np.testing.assert_array_equal(parts.state[s][k], a, err_msg=f"{s}/{k}")


def test_a_step_in_parts_updates_every_parameter_exactly_once():
    model = MLP([3, 4, 2], rng=np.random.default_rng(0))
    opt = Adam(model.named_parameters())
    before = {k: p.copy() for k, p in model.parameters().items()}
    with pytest.raises(ValueError, match="no parameter's name starts with 'decoder.'"):
        with opt.step_in_parts() as update:
            update("decoder.")
    with pytest.raises(KeyError):                 # an error before the first update ...
        with opt.step_in_parts() as update:
            raise KeyError("in the model's code")
    assert opt.t == 0                             # ... leaves the optimizer untouched
    assert all(np.array_equal(before[k], p) for k, p in model.parameters().items())
    with pytest.raises(RuntimeError, match=r"\['2.W', '2.b'\] were not updated"):
        with opt.step_in_parts() as update:
            update("0.")
    with pytest.raises(ValueError, match=r"\['0.W'\] were already updated in this step"):
        with opt.step_in_parts() as update:
            update("0.")
            update("0.W")
