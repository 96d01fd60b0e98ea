"""The ``whole_model`` exercise: every piece the student has written, patched into the library
at once, trains small VAEs on the 8 x 8 digits (scikit-learn's, no download), and each must
reach the ELBO that the same run reaches with the library's own functions.

Four runs cover the pieces: a Bernoulli decoder with ReLU and Adam, a Gaussian decoder with
tanh and Adagrad, a Bernoulli decoder with sigmoid and SGD with momentum, a Gaussian decoder
with softplus and Adam; each 40 steps of 50 images, S = 2 samples of z per image, float64,
every seed fixed, the optimizers' textbook path (which calls the update functions). The
held-out ELBO of 100 images and L_10 of 20, computed with the student's forward pieces too
(log-mean-exp and logsumexp among them), are compared.

Tolerance: a relative difference of 1e-9. Correct pieces written another way than the
library's round differently, by about 1e-16 relative per operation, and 40 optimizer steps
amplify that only a little: with every piece rewritten in other but equivalent forms (einsum for
the matrix products, Adam's bias corrections folded into its step, un-fused leapfrog half steps,
...) the four runs differ from the library's by at most 3e-15. A wrong piece moves them by far
more: Adam without bias correction by 4e-2 and 3e-1 in the two runs that use Adam.
"""
import numpy as np

from ..optim import SGD, Adagrad, Adam
from ..training.evaluate import importance_sampled_bound
from ..vae import VAE
from . import catalog
from .grader import explain, patched, replacement_for

TOL = 1e-9
RUNS = (("bernoulli", "relu", "adam"), ("gaussian", "tanh", "adagrad"), ("bernoulli", "sigmoid", "sgd"),
        ("gaussian", "softplus", "adam"))
OPTIMIZERS = {"adam": (Adam, dict(lr=0.01)), "adagrad": (Adagrad, dict(lr=0.05)),
              "sgd": (SGD, dict(lr=0.02, momentum=0.9))}
STEPS, BATCH, SAMPLES = 40, 50, 2

_DATA = {}


def digits(likelihood="bernoulli"):
    """(train, test): 300 and 100 of the digits, float64, loaded once per process. For a Gaussian
    decoder the 17 grey levels are dequantized, (16 x + u) / 17 with u ~ U(0, 1) seeded: pixels that
    are 0 in every image would otherwise drive their variance, and the ELBO, towards infinity."""
    if not _DATA:
        from ..data import load_dataset
        d = load_dataset("digits")
        _DATA["bernoulli"] = d.train[:300].astype(np.float64), d.test[:100].astype(np.float64)
        u = np.random.default_rng(4).random((400, 64))
        _DATA["gaussian"] = tuple((16 * x + v) / 17 for x, v in zip(_DATA["bernoulli"], (u[:300], u[300:])))
    return _DATA[likelihood]


def train(likelihood, activation, optimizer):
    """The held-out ELBO and L_10 after a short, fully seeded training run (with whatever
    functions the library holds at the time)."""
    x_train, x_test = digits(likelihood)
    model = VAE(64, z_dim=2, hidden_dims=(16,), likelihood=likelihood, activation=activation,
                dtype="float64", seed=0)
    cls, kwargs = OPTIMIZERS[optimizer]
    opt = cls(model.named_parameters(), **kwargs)
    rng = np.random.default_rng(1)
    for _ in range(STEPS):
        x = x_train[rng.choice(len(x_train), BATCH, replace=False)]
        model.loss_and_grads(x, eps=rng.standard_normal((SAMPLES, BATCH, 2)), check=False)
        opt.textbook_step()
    eps = np.random.default_rng(2).standard_normal((1, len(x_test), 2))
    elbo = float(model.elbo(x_test, eps=eps, check=False).elbo.mean())
    return elbo, float(importance_sampled_bound(model, x_test[:20], k=10, seed=3).mean())


def _bernoulli_shim(pieces):
    """The Bernoulli decoder computes log p and its gradient in one fused function; with the
    student's pieces, it calls them instead."""
    from .. import decoders
    from ..distributions import bernoulli_log_likelihood, bernoulli_log_likelihood_grad
    log_p = pieces.get("bernoulli_log_likelihood", bernoulli_log_likelihood)
    grad = pieces.get("bernoulli_log_likelihood_grad", bernoulli_log_likelihood_grad)
    return [(decoders, "bernoulli_log_likelihood_and_grad", lambda x, logits: (log_p(x, logits), grad(x, logits)))]


def grade(pieces, files):
    """Grade the student's ``pieces`` ({exercise name: function}) together."""
    result = {"name": catalog.WHOLE_MODEL, "status": "failed", "rel_error": None, "checks": [], "diagnosis": []}
    if not pieces:
        result["status"] = "not implemented"
        return result
    replacements, shims = {}, []
    for name, function in pieces.items():
        r, s = replacement_for(catalog.get(name), function)
        replacements.update(r)
        shims += s
    if "bernoulli_log_likelihood" in pieces or "bernoulli_log_likelihood_grad" in pieces:
        shims += _bernoulli_shim(pieces)
    worst = 0.0
    for likelihood, activation, optimizer in RUNS:
        label = f"{likelihood} decoder, {activation}, {optimizer}"
        reference = train(likelihood, activation, optimizer)
        try:
            with patched(replacements, shims):
                elbo = train(likelihood, activation, optimizer)
        except BaseException as e:       # noqa: B902
            message, _ = explain(e, files)
            result["checks"].append({"check": label, "passed": False, "worst": float("inf"),
                                     "detail": f"training {message}"})
            worst = float("inf")
            continue
        diff = max(abs(a - b) / abs(b) if np.isfinite(a) else float("inf") for a, b in zip(elbo, reference))
        worst = max(worst, diff)
        result["checks"].append({"check": label, "passed": bool(diff <= TOL), "worst": diff,
                                 "detail": f"held-out ELBO {elbo[0]:.6f} and L_10 {elbo[1]:.6f} with your "
                                           f"pieces, {reference[0]:.8g} and {reference[1]:.8g} with the "
                                           f"library's (relative difference {diff:.1e}, tolerance {TOL:.0e})"})
    result["rel_error"] = worst
    result["status"] = "passed" if all(c["passed"] for c in result["checks"]) else "failed"
    result["diagnosis"] = [f"your pieces patched in: {', '.join(pieces)}"]
    return result
