"""The implementation beyond the notes' formulas: every layer's backward, the whole VAE's
gradient through both decoders, and the optimizers' updates.
"""
import math

import numpy as np

from ..activations import ACTIVATIONS
from ..gradcheck import check_directional, check_gradients
from ..layers import MLP, Linear
from ..optim import SGD, Adagrad, Adam
from ..vae import VAE
from .checks import EXACT, GRAD, REL, device_name, make_check, max_rel


def _module_errors(layer, x, dy):
    """Worst relative errors of dx and of every parameter gradient of f = sum(dy * layer(x))."""
    layer.forward(x)
    dx = layer.backward(dy)
    grads = {**{k: g.copy() for k, g in layer.gradients().items()}, "x": dx}
    f = lambda: float((dy * layer.forward(x)).sum())  # noqa: E731
    return check_gradients(f, {**layer.parameters(), "x": x}, grads)


def layer_backward(xp=np):
    """Every layer's backward against central differences of f = sum(dy * layer(x)): Linear
    (dW = x^T dy, db = sum dy, dx = dy W^T), each activation (dx = dy f'(a)), and an MLP of
    each activation. ReLU's inputs are kept at least 0.1 from its kink."""
    device = device_name(xp)
    rng = np.random.default_rng(23)
    x = xp.asarray(rng.standard_normal((5, 4)))
    away = xp.asarray(np.sign(rng.standard_normal((5, 4))) * rng.uniform(0.1, 2.0, (5, 4)))
    dy3, dy4 = xp.asarray(rng.standard_normal((5, 3))), xp.asarray(rng.standard_normal((5, 4)))
    worst = {}
    lin = Linear(4, 3, init="pytorch", rng=rng, dtype="float64", device=device)
    worst["Linear"] = max(r.worst for r in _module_errors(lin, x, dy3))
    for name, cls in ACTIVATIONS.items():
        worst[cls.__name__] = max(r.worst for r in _module_errors(cls(), away if name == "relu" else x, dy4))
    for act in ("tanh", "sigmoid", "softplus", "relu"):
        mlp = MLP([4, 6, 3], activation=act, init="pytorch", rng=np.random.default_rng(24),
                  dtype="float64", device=device)
        worst[f"MLP({act})"] = max(r.worst for r in _module_errors(mlp, x, dy3))
    return make_check("layer_backward", "-", "dW = x^T dy, db = sum dy, dx = dy W^T;  da = dy f'(a)",
                      max(worst.values()), GRAD, REL, ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


def vae_gradient(xp=np):
    """d/dtheta of -1/B sum_b [1/S sum_s log p(x_b|z_sb) - KL_b] + lambda/2 |theta|^2 for every
    parameter tensor of the encoder and decoder, Bernoulli and Gaussian decoders, S = 2, eps
    frozen, by manual backprop against central differences (and one directional check)."""
    device = device_name(xp)
    rng = np.random.default_rng(25)
    x = xp.asarray(rng.uniform(0.05, 0.95, (6, 5)))
    eps = xp.asarray(rng.standard_normal((2, 6, 2)))
    parts, worst = [], 0.0
    for likelihood in ("bernoulli", "gaussian"):
        model = VAE(5, z_dim=2, hidden_dims=(4,), likelihood=likelihood, activation="tanh",
                    weight_decay=0.05, dtype="float64", device=device, seed=5)
        model.loss_and_grads(x, eps=eps)
        grads = {k: g.copy() for k, g in model.gradients().items()}
        f = lambda: model.loss(x, eps=eps)  # noqa: E731
        reports = check_gradients(f, model.parameters(), grads)
        directional, _, _ = check_directional(f, model.parameters(), grads)
        w = max(max(r.worst for r in reports), directional)
        worst = max(worst, w)
        parts.append(f"{likelihood}: {len(reports)} tensors, worst {w:.1e}")
    return make_check("vae_gradient", "003", "d(-ELBO + lambda/2 |theta|^2)/dtheta, every tensor, eps frozen",
                      worst, GRAD, REL, "; ".join(parts))


def _reference_trajectory(kind, theta, a, steps, lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8):
    """Plain-Python steps on f(theta) = sum_i a_i theta_i^2 / 2 (gradient a_i theta_i), coordinate
    by coordinate, in the textbook form (Adam with explicit bias corrections)."""
    out = []
    for th, ai in zip(theta, a):
        v = h = m = s = 0.0
        for t in range(1, steps + 1):
            g = ai * th
            if kind == "sgd":
                v = momentum * v + g
                th -= lr * v
            elif kind == "adagrad":
                h += g * g
                th -= lr * g / (math.sqrt(h) + eps)
            else:
                m = betas[0] * m + (1 - betas[0]) * g
                s = betas[1] * s + (1 - betas[1]) * g * g
                m_hat, s_hat = m / (1 - betas[0] ** t), s / (1 - betas[1] ** t)
                th -= lr * m_hat / (math.sqrt(s_hat) + eps)
        out.append(th)
    return np.array(out)


def optimizers(xp=np, steps=5):
    """SGD with momentum, Adagrad and Adam, updating in place, against the same steps written
    out in plain Python on f(theta) = sum_i a_i theta_i^2 / 2."""
    theta0 = np.array([1.0, -2.0, 0.5, 3.0])
    a = np.array([1.0, 0.5, 4.0, 0.1])
    worst = {}
    for kind, cls, kwargs in (("sgd", SGD, dict(lr=0.1, momentum=0.9)), ("adagrad", Adagrad, dict(lr=0.5)),
                              ("adam", Adam, dict(lr=0.1))):
        theta, grad = xp.asarray(theta0.copy()), xp.zeros(4)
        opt = cls([("theta", theta, grad)], **kwargs)
        for _ in range(steps):
            grad[...] = xp.asarray(a) * theta
            opt.step()
        worst[kind] = max_rel(theta, _reference_trajectory(kind, theta0, a, steps, kwargs["lr"]))
    return make_check("optimizers", "-", "SGD: v = m v + g; Adagrad: h += g^2; Adam: m_hat/(sqrt(v_hat)+eps)",
                      max(worst.values()), EXACT, REL,
                      f"{steps} steps: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


CHECKS = (layer_backward, vae_gradient, optimizers)
