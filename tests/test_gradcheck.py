"""The public gradient checker: it must pass right gradients, catch wrong ones, and say where."""
import numpy as np
import pytest

from scratchvae.backend import as_numpy
from scratchvae.gradcheck import (DEFAULT_DELTA, THRESHOLD, TensorReport, check_directional, check_gradients,
                                  format_report, numerical_gradient, rel_error)


def test_rel_error_formula():
    """rel(a, b) = |a - b| / max(|a| + |b|, tiny): symmetric, 0 for equal values, 1 for opposite signs."""
    assert rel_error(1.0, 1.0) == 0.0
    assert rel_error(1.0, -1.0) == 1.0
    assert rel_error(2.0, 1.0) == pytest.approx(1 / 3)
    assert rel_error(1.0, 2.0) == rel_error(2.0, 1.0)
    assert rel_error(0.0, 0.0) == 0.0                      # tiny keeps 0/0 away
    assert rel_error(1e-20, 0.0) == pytest.approx(1e-8)   # below tiny the error is absolute / tiny


def test_numerical_gradient_is_second_order_accurate(xp):
    """Central differences of sum(x^3) give 3 x^2 with error h^2 per coordinate (no round-off
    trouble at delta = 1e-5 for values of order one), and x is restored bit for bit."""
    x = xp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    original = as_numpy(x).copy()
    num = numerical_gradient(lambda: float((x ** 3).sum()), x)
    assert isinstance(num, np.ndarray) and num.shape == (3, 4)
    np.testing.assert_allclose(num, 3 * original ** 2, rtol=0, atol=5 * DEFAULT_DELTA ** 2)
    np.testing.assert_array_equal(as_numpy(x), original)


def test_numerical_gradient_of_selected_indices(xp):
    """With flat indices, only those derivatives are computed, as a 1-D array in that order."""
    x = xp.asarray(np.arange(6.0).reshape(2, 3))
    num = numerical_gradient(lambda: float((x * x).sum()), x, indices=[5, 0, 3])
    np.testing.assert_allclose(num, [10.0, 0.0, 6.0], atol=1e-8)


def test_right_gradient_passes_and_report_fields(xp):
    """A correct gradient passes, and each report names the tensor, its shape, how many
    coordinates were compared, the worst relative error, where, and both derivatives there."""
    rng = np.random.default_rng(1)
    W, b = xp.asarray(rng.standard_normal((3, 2))), xp.asarray(rng.standard_normal(2))
    f = lambda: float(((W ** 2).sum() + xp.sin(b).sum()))  # noqa: E731
    reports = check_gradients(f, {"W": W, "b": b}, {"W": 2 * W, "b": xp.cos(b)})
    assert [r.name for r in reports] == ["W", "b"]
    r = reports[0]
    assert isinstance(r, TensorReport) and r.shape == (3, 2) and r.checked == 6 and len(r.where) == 2
    assert r.worst < THRESHOLD and r.passed
    assert r.analytic == pytest.approx(2 * float(as_numpy(W)[tuple(r.where)]))
    assert r.numeric == pytest.approx(r.analytic, rel=1e-8)


def test_planted_wrong_gradient_is_caught(xp):
    """Analytic gradient of sum(x^3) written as 2 x^2 (a typical slip) fails, and the report says where."""
    x = xp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, (4, 3)))
    (report,) = check_gradients(lambda: float((x ** 3).sum()), {"x": x}, {"x": 2 * x ** 2})
    assert not report.passed and report.worst > 0.1
    assert report.analytic == pytest.approx(2 * float(as_numpy(x)[tuple(report.where)]) ** 2)
    table = format_report([report])
    assert "NO" in table and "x" in table and "(4, 3)" in table


def test_one_wrong_coordinate_is_caught_and_located(xp):
    """A single wrong entry among many is found: the worst coordinate is the planted one."""
    x = xp.asarray(np.random.default_rng(3).standard_normal((5, 5)))
    grad = 2 * x.copy()
    grad[3, 1] += 1e-3
    (report,) = check_gradients(lambda: float((x * x).sum()), {"x": x}, {"x": grad})
    assert not report.passed and tuple(int(i) for i in report.where) == (3, 1)


def test_directional_check_catches_a_wrong_gradient(xp):
    """Along a random direction the wrong gradient disagrees with the finite difference; the right one agrees."""
    x = xp.asarray(np.random.default_rng(4).uniform(0.5, 2.0, (6,)))
    f = lambda: float((x ** 3).sum())  # noqa: E731
    rel, analytic, numeric = check_directional(f, {"x": x}, {"x": 3 * x ** 2})
    assert rel < THRESHOLD and analytic == pytest.approx(numeric, rel=1e-7)
    bad, _, _ = check_directional(f, {"x": x}, {"x": 2 * x ** 2})
    assert bad > 1e-2


def test_large_tensors_are_sampled_with_a_seed(xp):
    """A tensor with more than max_coords entries gets a seeded sample of max_coords coordinates."""
    x = xp.asarray(np.random.default_rng(5).standard_normal(500))
    f = lambda: float((x * x).sum())  # noqa: E731
    r1, = check_gradients(f, {"x": x}, {"x": 2 * x}, max_coords=40, seed=1)
    r2, = check_gradients(f, {"x": x}, {"x": 2 * x}, max_coords=40, seed=1)
    assert r1.checked == 40 and r1 == r2 and r1.passed


def test_float32_is_refused(xp):
    """Finite differences in float32 are meaningless (round-off ~ 1e-7 / h): TypeError naming the tensor."""
    x = xp.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match="float64.*x|x.*float32"):
        check_gradients(lambda: float(x.sum()), {"x": x}, {"x": xp.ones(3)})
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: float(x.sum()), x)


def test_size_mismatch_and_non_contiguous_are_refused(xp):
    """A gradient of the wrong size, or a parameter that cannot be perturbed in place, is a ValueError."""
    x = xp.ones((3, 2))
    with pytest.raises(ValueError, match="grads\\['x'\\]"):
        check_gradients(lambda: float(x.sum()), {"x": x}, {"x": xp.ones(5)})
    with pytest.raises(ValueError, match="C-contiguous"):
        numerical_gradient(lambda: float(x.sum()), x.T)


def test_parameters_are_restored_after_checks(xp):
    """check_gradients and check_directional leave every parameter exactly as it was."""
    rng = np.random.default_rng(6)
    params = {"a": xp.asarray(rng.standard_normal((3, 3))), "b": xp.asarray(rng.standard_normal(4))}
    before = {k: as_numpy(v).copy() for k, v in params.items()}
    f = lambda: float(sum((p ** 2).sum() for p in params.values()))  # noqa: E731
    grads = {k: 2 * v for k, v in params.items()}
    check_gradients(f, params, grads)
    check_directional(f, params, grads)
    for k in params:
        np.testing.assert_array_equal(as_numpy(params[k]), before[k])


def test_derivatives_below_the_resolution_are_judged_by_absolute_error():
    """f = 1e3 + 1e-12 theta: the derivative 1e-12 is far below the resolution of a central
    difference of a function of size 1e3 (about 4e-8 with delta = 1e-5), so any analytic value
    within that resolution passes, and one that is off by more fails."""
    import numpy as np
    from scratchvae.gradcheck import check_gradients, resolution, THRESHOLD
    theta = np.zeros(1)
    f = lambda: 1e3 + 1e-12 * theta[0]
    res = resolution(1e3)
    assert 1e-8 < res < 1e-7
    assert check_gradients(f, {"theta": theta}, {"theta": np.array([1e-12])})[0].worst < THRESHOLD
    off = check_gradients(f, {"theta": theta}, {"theta": np.array([10 * res])})[0]
    assert off.worst > THRESHOLD
