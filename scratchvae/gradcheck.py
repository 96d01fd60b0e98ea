r"""Finite-difference gradient checks, for scratchvae and for your own code.

The numerical gradient uses central differences, accurate to :math:`O(\delta^2)`:

.. math::

    \frac{\partial f}{\partial \theta_i} \approx
    \frac{f(\theta + \delta e_i) - f(\theta - \delta e_i)}{2 \delta}

and is compared with the analytic gradient through the relative error of an analytic
derivative :math:`a` and a numerical one :math:`n`:

.. math::

    \operatorname{rel}(a, n) = \frac{|a - n|}{\max(|a| + |n|, \text{tiny})}

Thresholds, in float64 with :math:`\delta = 10^{-5}` (it balances the :math:`O(\delta^2)`
truncation error against round-off of order :math:`10^{-16} |f| / \delta`) and a loss of order
one: below about :math:`10^{-7}` the gradient is right; :math:`10^{-7}` to :math:`10^{-5}` look
closer (a kink such as ReLU's at 0 nearby, or a loss so large that round-off dominates); above
:math:`10^{-4}` it is almost certainly wrong. Checks need float64: in float32 the round-off of
:math:`f` alone is about :math:`10^{-7} / \delta`, which swamps any real error.

A derivative smaller than what central differences can resolve has no meaningful
relative error: :math:`f(\theta \pm \delta)` are each known to a few units in the last place, so
their difference over :math:`2\delta` is uncertain by about

.. math::

    \text{resolution} = \frac{4\, \epsilon_\text{mach} |f|}{2 \delta}

(:math:`\epsilon_\text{mach} = 2.2 \times 10^{-16}`; :math:`3.5 \times 10^{-10}` for a loss of 8
and :math:`\delta = 10^{-5}`). :func:`check_gradients` therefore uses
``tiny = resolution / THRESHOLD`` by default: derivatives above the resolution are judged by
relative error as usual, those below it by an absolute error within the resolution.

Usage::

    report = check_gradients(loss_fn, model.parameters(), model.gradients())
    print(format_report(report))

where ``loss_fn()`` recomputes the scalar loss from the *current* values of the
parameter arrays (they are perturbed in place and restored).

The loss must be deterministic: the same number at the same parameters. A loss that draws
fresh noise at each call (a VAE's eps, dropout) changes by far more than any derivative
times delta, and every relative error comes out near 1. :func:`check_gradients` and
:func:`check_directional` therefore evaluate it twice before any difference and raise
:class:`NondeterministicLoss` if the two values differ by more than round-off; freeze the
noise (draw eps once and pass it: ``lambda: model.loss(x, eps=eps)``).
"""
from dataclasses import dataclass

import numpy as np

from .backend import as_numpy, get_array_module

DEFAULT_DELTA = 1e-5
DEFAULT_TINY = 1e-12
THRESHOLD = 1e-7


class NondeterministicLoss(ValueError):
    """The loss gave two different values at the same parameters: it draws fresh noise."""


def require_deterministic(f):
    """Evaluate ``f()`` twice at the same parameters; return the value, or raise
    :class:`NondeterministicLoss` when the two differ by more than 4 units in the last place
    (a deterministic float64 function repeats itself exactly)."""
    first, second = float(f()), float(f())
    if abs(first - second) > 4 * np.finfo(np.float64).eps * max(abs(first), abs(second)):
        raise NondeterministicLoss(
            f"the loss is not deterministic: two evaluations at the same parameters gave "
            f"{first!r} and {second!r}. It draws fresh noise at every call, so finite "
            f"differences measure the noise, not the gradient. Freeze the noise: draw it once "
            f"and pass it in, e.g. eps = rng.standard_normal((B, Z)) and "
            f"loss = lambda: model.loss(x, eps=eps) (then model.loss_and_grads(x, eps=eps) for "
            f"the analytic gradient at the same noise)")
    return first


def rel_error(a, b, tiny=DEFAULT_TINY):
    r"""Elementwise :math:`|a - b| / \max(|a| + |b|, \text{tiny})`, on the host."""
    a, b = as_numpy(a).astype(np.float64), as_numpy(b).astype(np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), tiny)


def _require_float64(name, a):
    if a.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays; {name} is {a.dtype}")


def numerical_gradient(f, x, delta=DEFAULT_DELTA, indices=None):
    """Central-difference gradient of the scalar ``f()`` with respect to the array ``x``.

    ``x`` is perturbed in place, one coordinate at a time, and restored exactly.
    ``indices`` (flat) limits the coordinates; the result is then a 1-D host array
    of those derivatives, otherwise a host array shaped like ``x``."""
    _require_float64("x", x)
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous so that it can be perturbed in place")
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    idx = range(flat.size) if indices is None else indices
    out = np.empty(len(idx))
    for k, i in enumerate(idx):
        old = float(flat[i])
        flat[i] = old + delta
        f_plus = float(f())
        flat[i] = old - delta
        f_minus = float(f())
        flat[i] = old
        out[k] = (f_plus - f_minus) / (2 * delta)
    return out.reshape(x.shape) if indices is None else out


@dataclass
class TensorReport:
    """How one tensor's analytic gradient compares with finite differences."""
    name: str
    shape: tuple
    checked: int          # coordinates compared
    worst: float          # largest relative error among them
    where: tuple          # index of the worst coordinate
    analytic: float       # the analytic derivative there
    numeric: float        # the finite-difference derivative there

    @property
    def passed(self):
        return self.worst < THRESHOLD


def resolution(f_value, delta=DEFAULT_DELTA):
    r"""How finely a central difference of a float64 function of size ``f_value`` can
    resolve a derivative: about :math:`4\, \epsilon_\text{mach} |f| / (2 \delta)` (see the
    module docstring)."""
    return 4 * np.finfo(np.float64).eps * abs(f_value) / (2 * delta)


def check_gradients(f, params, grads, delta=DEFAULT_DELTA, max_coords=100, seed=0, tiny=None):
    """Compare ``grads[name]`` with finite differences of ``f`` for every tensor.

    Every coordinate of a tensor with at most ``max_coords`` entries is checked,
    and a seeded random sample of ``max_coords`` coordinates of a larger one.
    ``tiny`` defaults to ``max(resolution(f()) / THRESHOLD, 1e-12)``. ``f`` is evaluated
    twice first: a loss that is not deterministic raises :class:`NondeterministicLoss`.
    Returns a list of :class:`TensorReport`, one per tensor, in order."""
    f_value = require_deterministic(f)
    if tiny is None:
        tiny = max(resolution(f_value, delta) / THRESHOLD, DEFAULT_TINY)
    rng = np.random.default_rng(seed)
    reports = []
    for name, x in params.items():
        _require_float64(name, x)
        g = as_numpy(grads[name]).reshape(-1)
        if g.size != x.size:
            raise ValueError(f"grads[{name!r}] has {g.size} entries but the parameter has {x.size}")
        idx = (np.arange(x.size) if x.size <= max_coords
               else np.sort(rng.choice(x.size, max_coords, replace=False)))
        num = numerical_gradient(f, x, delta, indices=idx)
        err = rel_error(g[idx], num, tiny)
        k = int(np.argmax(err))
        reports.append(TensorReport(name, tuple(x.shape), len(idx), float(err[k]),
                                    np.unravel_index(idx[k], x.shape), float(g[idx[k]]), float(num[k])))
    return reports


def check_directional(f, params, grads, delta=DEFAULT_DELTA, seed=0, tiny=DEFAULT_TINY):
    r"""One check over all parameters at once: along a random unit direction :math:`u`, it
    compares

    .. math::

        \frac{f(\theta + \delta u) - f(\theta - \delta u)}{2 \delta}
        \quad\text{with}\quad \sum_i \nabla_i f \cdot u_i

    over the tensors :math:`i`, with :math:`\nabla_i f` the analytic gradient of tensor :math:`i`
    and :math:`u_i` its part of the direction. Returns ``(relative_error, analytic, numeric)``.
    A loss that is not deterministic raises :class:`NondeterministicLoss`."""
    require_deterministic(f)
    rng = np.random.default_rng(seed)
    dirs = {n: rng.standard_normal(x.shape) for n, x in params.items()}
    norm = np.sqrt(sum((u * u).sum() for u in dirs.values()))
    analytic = sum(float((as_numpy(grads[n]) * u).sum()) for n, u in dirs.items()) / norm
    originals = {n: x.copy() for n, x in params.items()}
    xp = get_array_module(*params.values())

    def shifted(sign):
        for n, x in params.items():
            x[...] = originals[n] + sign * delta * xp.asarray(dirs[n] / norm)
        return float(f())

    try:
        numeric = (shifted(+1) - shifted(-1)) / (2 * delta)
    finally:
        for n, x in params.items():
            x[...] = originals[n]
    return float(rel_error(analytic, numeric, tiny)), analytic, numeric


def format_report(reports):
    """A table of the per-tensor reports: one row per tensor with its worst relative error, where
    it occurred and whether it passed."""
    lines = [f"{'tensor':<24}{'shape':<14}{'checked':>8}{'worst rel err':>15}  {'at':<12}{'ok':>4}"]
    for r in reports:
        lines.append(f"{r.name:<24}{str(r.shape):<14}{r.checked:>8}{r.worst:>15.2e}  "
                     f"{str(tuple(int(i) for i in r.where)):<12}{'yes' if r.passed else 'NO':>4}")
    return "\n".join(lines)
