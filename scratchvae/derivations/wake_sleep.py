"""The two gradients of the wake-sleep algorithm (:mod:`scratchvae.models.wake_sleep`),
each against central differences of the objective of its own phase, in float64 with the
noise frozen, for every parameter tensor the phase trains, on both decoders:

    wake:   d/dtheta [-1/(S B) sum_sb log p(x_b | z_sb)],  z = mu(x) + sigma(x) eps, eps frozen
    sleep:  d/dphi   [-1/n sum_i log q(z_i | x_i)],        dreams (z_i, x_i) frozen

Each phase must also leave the other network's gradients alone: a phase that wrote into
the wrong tensors fails its check (its error is reported as infinite).
"""
import numpy as np

from ..distributions import gaussian_log_density
from ..gradcheck import check_directional, check_gradients
from ..models.wake_sleep import WakeSleep
from .checks import GRAD, REL, device_name, make_check


def _model(likelihood, device, model_cls):
    return model_cls(5, z_dim=2, hidden_dims=(4,), likelihood=likelihood, activation="tanh",
                     dtype="float64", device=device, seed=7)


def _split(model, prefix):
    """The model's parameters and (copies of its) gradients whose names start with ``prefix``."""
    params = {k: p for k, p in model.parameters().items() if k.startswith(prefix)}
    grads = {k: g.copy() for k, g in model.gradients().items() if k.startswith(prefix)}
    return params, grads


def _check_phase(f, model, trained, frozen):
    """Worst relative error of the hand gradient of ``f`` for the tensors under ``trained``,
    and whether the tensors under ``frozen`` were left at zero."""
    params, grads = _split(model, trained)
    untouched = all(bool((g == 0).all()) for g in _split(model, frozen)[1].values())
    reports = check_gradients(f, params, grads)
    directional, _, _ = check_directional(f, params, grads)
    return max(max(r.worst for r in reports), directional), len(reports), untouched


def wake_gradient(xp=np, model_cls=WakeSleep):
    """The wake phase: the decoder's gradient of -mean log p(x|z) at z ~ q(z|x), S = 2, eps
    frozen; the encoder's gradients stay zero."""
    device = device_name(xp)
    rng = np.random.default_rng(31)
    x = xp.asarray(rng.uniform(0.05, 0.95, (6, 5)))
    eps = xp.asarray(rng.standard_normal((2, 6, 2)))
    parts, worst, ok = [], 0.0, True
    for likelihood in ("bernoulli", "gaussian"):
        model = _model(likelihood, device, model_cls)
        model.zero_grad()
        model.wake(x, eps)
        f = lambda: -float(model.elbo(x, eps=eps).rec.mean())  # noqa: E731
        w, n, untouched = _check_phase(f, model, "decoder.", "encoder.")
        worst, ok = max(worst, w), ok and untouched
        parts.append(f"{likelihood}: {n} decoder tensors, worst {w:.1e}"
                     + ("" if untouched else ", and it wrote into the encoder"))
    return make_check("wake_gradient", "-", "wake: d(-1/(SB) sum log p(x|z))/dtheta_decoder, z ~ q(z|x), eps frozen",
                  worst, GRAD, REL, "; ".join(parts), extra_ok=ok)


def sleep_gradient(xp=np, model_cls=WakeSleep):
    """The sleep phase: the encoder's gradient of -mean log q(z|x) on frozen dreams
    z ~ N(0, I), x ~ p(x|z) of the model's own decoder; the decoder's gradients stay zero."""
    device = device_name(xp)
    parts, worst, ok = [], 0.0, True
    for likelihood in ("bernoulli", "gaussian"):
        model = _model(likelihood, device, model_cls)
        z, x = model.dream(6)
        model.zero_grad()
        model.sleep(z, x)

        def f():
            mu, logvar = model.encode(x)
            return -float(gaussian_log_density(z, mu, logvar).mean())
        w, n, untouched = _check_phase(f, model, "encoder.", "decoder.")
        worst, ok = max(worst, w), ok and untouched
        parts.append(f"{likelihood}: {n} encoder tensors, worst {w:.1e}"
                     + ("" if untouched else ", and it wrote into the decoder"))
    return make_check("sleep_gradient", "-", "sleep: d(-1/n sum log q(z|x))/dphi_encoder, z ~ p(z), x ~ p(x|z) frozen",
                  worst, GRAD, REL, "; ".join(parts), extra_ok=ok)


CHECKS = (wake_gradient, sleep_gradient)
