"""The exercises of lessons 05 to 07 that make the VAE's gradient: the closed-form KL and its
gradient, the reparameterization and its backward, the Bernoulli log-likelihood and its
gradient, and the assembly of VAE.backward (encoder_output_grad).

Every mistake below is a wrong body with the exercise's signature; the grader compares a
student's outputs with it, and the tests write it into a workbook.
"""
import numpy as np

from ..activations import sigmoid, softplus
from ..backend import get_array_module
from ..distributions import bernoulli_log_likelihood, kl_standard_normal, reparameterize
from ..gradcheck import check_gradients
from .exercise import Case, Exercise, Mistake

VAE_GRADIENT = ("scratchvae.derivations.library:vae_gradient", None)


def _normal_pairs(seed, shapes, logvar_scale=1.5):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s), rng.normal(0.0, logvar_scale, s)) for s in shapes]


# ---------------------------------------------------------------------------------------
# Lesson 05: the closed-form KL and its gradient
# ---------------------------------------------------------------------------------------
def _kl_cases():
    return [Case(f"mu, logvar {mu.shape}", (mu, logvar))
            for mu, logvar in _normal_pairs(20, ((4, 3), (2, 5, 3), (1, 6)))]


def _kl_sign(mu, logvar):
    xp = get_array_module(mu, logvar)
    return 0.5 * (1.0 + logvar - mu * mu - xp.exp(logvar)).sum(axis=-1)


def _kl_no_half(mu, logvar):
    xp = get_array_module(mu, logvar)
    return (mu * mu + xp.exp(logvar) - 1.0 - logvar).sum(axis=-1)


def _kl_std_for_variance(mu, logvar):
    xp = get_array_module(mu, logvar)
    return 0.5 * (mu * mu + xp.exp(logvar / 2) - 1.0 - logvar).sum(axis=-1)


def _kl_wrong_axis(mu, logvar):
    xp = get_array_module(mu, logvar)
    return 0.5 * (mu * mu + xp.exp(logvar) - 1.0 - logvar).sum(axis=0)


def _kl_gradient(function):
    mu, logvar = _normal_pairs(21, ((4, 3),))[0]
    dmu, dlogvar = function(mu, logvar)
    return check_gradients(lambda: float(kl_standard_normal(mu, logvar).sum()),
                           {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})


def _kl_grad_no_half(mu, logvar):
    xp = get_array_module(mu, logvar)
    return mu.copy(), xp.exp(logvar) - 1.0


def _kl_grad_sign(mu, logvar):
    xp = get_array_module(mu, logvar)
    return -mu, -0.5 * (xp.exp(logvar) - 1.0)


def _kl_grad_wrt_variance(mu, logvar):
    xp = get_array_module(mu, logvar)
    return mu.copy(), 0.5 * (1.0 - xp.exp(-logvar))


def _kl_grad_half_mu(mu, logvar):
    xp = get_array_module(mu, logvar)
    return 0.5 * mu, 0.5 * (xp.exp(logvar) - 1.0)


KL = (
    Exercise(
        "kl_standard_normal", "scratchvae.distributions.kl_standard_normal", "05", "05_kl.py", ("kl",),
        _kl_cases, checks="outputs; note 003's KL against numerical integration and against a Monte "
        "Carlo average with it", derivations=(
            ("scratchvae.derivations.note003:kl_closed_form", "kl"),
            ("scratchvae.derivations.note003:kl_monte_carlo", None)), mistakes=(
            Mistake("the sign flipped: that is -KL, the term as it enters the ELBO; "
                    "KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j) >= 0", _kl_sign),
            Mistake("the 1/2 left out: KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)", _kl_no_half),
            Mistake("exp(logvar / 2) (the standard deviation) where the variance exp(logvar) belongs",
                    _kl_std_for_variance),
            Mistake("summed over the wrong axis: one KL per row, a sum over the latent dimensions "
                    "(the last axis)", _kl_wrong_axis))),
    Exercise(
        "kl_standard_normal_grad", "scratchvae.distributions.kl_standard_normal_grad", "05", "05_kl.py",
        ("dmu", "dlogvar"), _kl_cases, checks="outputs; dmu, dlogvar against central differences of "
        "sum KL; note 003's KL gradient check and the whole VAE's gradient with it",
        gradient=_kl_gradient, derivations=(("scratchvae.derivations.note003:kl_gradient", "grad"),
                                            VAE_GRADIENT), mistakes=(
            Mistake("the missing 1/2 in d/dlogvar: dKL/dlogvar = (exp(logvar) - 1) / 2", _kl_grad_no_half),
            Mistake("the sign flipped: that is the gradient of -KL (the ELBO's term); dKL/dmu = mu",
                    _kl_grad_sign),
            Mistake("the derivative taken with respect to the variance v = exp(logvar), not logvar: "
                    "d/dlogvar = v d/dv = (exp(logvar) - 1) / 2", _kl_grad_wrt_variance),
            Mistake("dKL/dmu = mu: the 1/2 in front of mu^2 cancels the 2 of its derivative",
                    _kl_grad_half_mu))),
)


# ---------------------------------------------------------------------------------------
# Lesson 06: the reparameterization and its backward
# ---------------------------------------------------------------------------------------
def _reparameterize_cases():
    rng = np.random.default_rng(22)
    out = []
    for label, eps_shape, shape in (("S=1, eps (4, 3)", (4, 3), (4, 3)), ("S=3, eps (3, 4, 3)", (3, 4, 3), (4, 3)),
                                    ("S=2, eps (2, 1, 5)", (2, 1, 5), (1, 5))):
        mu, logvar = rng.standard_normal(shape), rng.normal(0.0, 1.5, shape)
        out.append(Case(label, (mu, logvar, rng.standard_normal(eps_shape))))
    return out


def _reparameterize_variance_as_std(mu, logvar, eps):
    xp = get_array_module(mu, logvar, eps)
    return mu + xp.exp(logvar) * eps


def _reparameterize_logvar_as_std(mu, logvar, eps):
    return mu + logvar * eps


def _reparameterize_no_mu(mu, logvar, eps):
    xp = get_array_module(mu, logvar, eps)
    return xp.exp(0.5 * logvar) * eps


def _backward_cases():
    rng = np.random.default_rng(23)
    out = []
    for label, dz_shape, shape in (("dz (4, 3), no sample axis", (4, 3), (4, 3)),
                                   ("S=3, dz (3, 4, 3)", (3, 4, 3), (4, 3)), ("S=5, dz (5, 2, 4)", (5, 2, 4), (2, 4))):
        out.append(Case(label, (rng.standard_normal(dz_shape), rng.normal(0.0, 1.5, shape),
                                rng.standard_normal(dz_shape))))
    return out


def _reparameterize_backward_gradient(function):
    rng = np.random.default_rng(24)
    mu, logvar = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    eps, dz = rng.standard_normal((3, 4, 3)), rng.standard_normal((3, 4, 3))
    dmu, dlogvar = function(dz, logvar, eps)
    return check_gradients(lambda: float((dz * reparameterize(mu, logvar, eps)).sum()),
                           {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})


def _sum_samples(dz, dmu, dlogvar, logvar):
    extra = tuple(range(dz.ndim - logvar.ndim))
    return (dmu.sum(axis=extra), dlogvar.sum(axis=extra)) if extra else (dmu, dlogvar)


def _reparameterize_backward_no_half(dz, logvar, eps):
    xp = get_array_module(dz, logvar, eps)
    return _sum_samples(dz, dz, dz * eps * xp.exp(0.5 * logvar), logvar)


def _reparameterize_backward_mean(dz, logvar, eps):
    xp = get_array_module(dz, logvar, eps)
    dlogvar = dz * eps * (0.5 * xp.exp(0.5 * logvar))
    extra = tuple(range(dz.ndim - logvar.ndim))
    return (dz.mean(axis=extra), dlogvar.mean(axis=extra)) if extra else (dz, dlogvar)


def _reparameterize_backward_not_summed(dz, logvar, eps):
    xp = get_array_module(dz, logvar, eps)
    return dz, dz * eps * (0.5 * xp.exp(0.5 * logvar))


def _reparameterize_backward_variance_as_std(dz, logvar, eps):
    xp = get_array_module(dz, logvar, eps)
    return _sum_samples(dz, dz, dz * eps * xp.exp(logvar), logvar)


REPARAMETERIZATION = (
    Exercise(
        "reparameterize", "scratchvae.distributions.reparameterize", "06", "06_reparameterization.py", ("z",),
        _reparameterize_cases, checks="outputs (S = 1, 3 and 2 samples); note 002's moments of z and the "
        "whole VAE's gradient with it", derivations=(
            ("scratchvae.derivations.note002:reparameterization_moments", "reparameterize"), VAE_GRADIENT),
        mistakes=(
            Mistake("exp(logvar) used as the standard deviation: sigma = exp(logvar / 2)",
                    _reparameterize_variance_as_std),
            Mistake("logvar used as the standard deviation: sigma = exp(logvar / 2)",
                    _reparameterize_logvar_as_std),
            Mistake("mu left out: z = mu + sigma * eps", _reparameterize_no_mu))),
    Exercise(
        "reparameterize_backward", "scratchvae.distributions.reparameterize_backward", "06",
        "06_reparameterization.py", ("dmu", "dlogvar"), _backward_cases,
        checks="outputs (no sample axis, S = 3 and 5); dmu, dlogvar against central differences of "
        "sum(dz * z); note 002's gradient check and the whole VAE's gradient with it",
        gradient=_reparameterize_backward_gradient, derivations=(
            ("scratchvae.derivations.note002:reparameterization_gradient", "backward"), VAE_GRADIENT),
        mistakes=(
            Mistake("the missing 1/2 in dlogvar: d exp(logvar / 2)/dlogvar = exp(logvar / 2) / 2",
                    _reparameterize_backward_no_half),
            Mistake("averaged over the samples instead of summed: each sample z_s adds its own path to "
                    "mu and logvar (dz already carries the loss's 1/S)", _reparameterize_backward_mean),
            Mistake("not summed over the samples: dmu and dlogvar have the shape of mu; sum over dz's "
                    "leading sample axes", _reparameterize_backward_not_summed),
            Mistake("differentiated as if sigma were exp(logvar): sigma = exp(logvar / 2), so "
                    "dsigma/dlogvar = sigma / 2", _reparameterize_backward_variance_as_std))),
)


# ---------------------------------------------------------------------------------------
# Lesson 07: the Bernoulli likelihood, the assembly of VAE.backward
# ---------------------------------------------------------------------------------------
def _bernoulli_cases():
    rng = np.random.default_rng(25)
    large = rng.choice([-40.0, 40.0], (3, 6)) + rng.standard_normal((3, 6))
    return [Case("binary x (4, 6)", ((rng.random((4, 6)) < 0.5).astype(float), rng.normal(0.0, 3.0, (4, 6)))),
            Case("grey x (3, 5)", (rng.random((3, 5)), rng.normal(0.0, 3.0, (3, 5)))),
            Case("logits near +-40", ((rng.random((3, 6)) < 0.5).astype(float), large)),
            Case("(2, 3, 4)", (rng.random((2, 3, 4)), rng.normal(0.0, 3.0, (2, 3, 4))))]


def _bernoulli_probabilities_for_logits(x, logits):
    p = sigmoid(logits)
    return (x * p - softplus(p)).sum(axis=-1)


def _bernoulli_log_of_probabilities(x, logits):
    xp = get_array_module(x, logits)
    p = sigmoid(logits)
    return (x * xp.log(p) + (1 - x) * xp.log(1 - p)).sum(axis=-1)


def _bernoulli_sign(x, logits):
    return (softplus(logits) - x * logits).sum(axis=-1)


def _bernoulli_wrong_axis(x, logits):
    return (x * logits - softplus(logits)).sum(axis=0)


def _bernoulli_gradient(function):
    rng = np.random.default_rng(26)
    x, logits = rng.random((4, 6)), rng.normal(0.0, 3.0, (4, 6))
    dlogits = function(x, logits)
    return check_gradients(lambda: float(bernoulli_log_likelihood(x, logits).sum()),
                           {"logits": logits}, {"logits": dlogits})


def _bernoulli_grad_sign(x, logits):
    return sigmoid(logits) - x


def _bernoulli_grad_logits_for_probabilities(x, logits):
    return x - logits


def _bernoulli_grad_summed(x, logits):
    return (x - sigmoid(logits)).sum(axis=-1)


def _encoder_cases():
    rng = np.random.default_rng(27)
    out = []
    for S, B, Z in ((1, 4, 2), (3, 5, 2), (2, 6, 3)):
        out.append(Case(f"S={S}, B={B}, Z={Z}", (rng.standard_normal((S, B, Z)) / (S * B), rng.standard_normal((B, Z)),
                                                 rng.normal(0.0, 1.5, (B, Z)), rng.standard_normal((S, B, Z)))))
    return out


def _encoder_gradient(function):
    rng = np.random.default_rng(28)
    dz, mu = rng.standard_normal((3, 5, 2)) / 15, rng.standard_normal((5, 2))
    logvar, eps = rng.standard_normal((5, 2)), rng.standard_normal((3, 5, 2))
    dmu, dlogvar = function(dz, mu, logvar, eps)
    f = lambda: float((dz * reparameterize(mu, logvar, eps)).sum() + kl_standard_normal(mu, logvar).sum() / 5)  # noqa: E731
    return check_gradients(f, {"mu": mu, "logvar": logvar}, {"mu": dmu, "logvar": dlogvar})


def _pathwise(dz, logvar, eps):
    xp = get_array_module(dz, logvar, eps)
    return dz.sum(axis=0), (dz * eps * (0.5 * xp.exp(0.5 * logvar))).sum(axis=0)


def _encoder_output_grad_no_b(dz, mu, logvar, eps):
    xp = get_array_module(dz, mu, logvar, eps)
    dmu, dlogvar = _pathwise(dz, logvar, eps)
    return dmu + mu, dlogvar + 0.5 * (xp.exp(logvar) - 1.0)


def _encoder_output_grad_kl_sign(dz, mu, logvar, eps):
    xp = get_array_module(dz, mu, logvar, eps)
    B = mu.shape[0]
    dmu, dlogvar = _pathwise(dz, logvar, eps)
    return dmu - mu / B, dlogvar - 0.5 * (xp.exp(logvar) - 1.0) / B


def _encoder_output_grad_kl_per_sample(dz, mu, logvar, eps):
    xp = get_array_module(dz, mu, logvar, eps)
    SB = dz.shape[0] * mu.shape[0]
    dmu, dlogvar = _pathwise(dz, logvar, eps)
    return dmu + mu / SB, dlogvar + 0.5 * (xp.exp(logvar) - 1.0) / SB


def _encoder_output_grad_no_half(dz, mu, logvar, eps):
    xp = get_array_module(dz, mu, logvar, eps)
    B = mu.shape[0]
    return (dz.sum(axis=0) + mu / B,
            (dz * eps * xp.exp(0.5 * logvar)).sum(axis=0) + 0.5 * (xp.exp(logvar) - 1.0) / B)


VAE = (
    Exercise(
        "bernoulli_log_likelihood", "scratchvae.distributions.bernoulli_log_likelihood", "07", "07_vae.py",
        ("log_likelihood",), _bernoulli_cases, checks="outputs (binary and grey x, logits near +-40); "
        "note 003's Bernoulli check against scipy and at float32 logits of +-1e4", derivations=(
            ("scratchvae.derivations.note003:bernoulli_nll", None),), mistakes=(
            Mistake("probabilities where logits belong: x l - softplus(l) takes the logits l, not "
                    "p = sigmoid(l)", _bernoulli_probabilities_for_logits),
            Mistake("the log of probabilities that round to 0 or 1: at logits of +-40, 1 - sigmoid(l) is "
                    "0 in floating point and log 0 = -inf; use x l - softplus(l)",
                    _bernoulli_log_of_probabilities),
            Mistake("the sign flipped: that is the negative log-likelihood (the loss), not log p(x|z)",
                    _bernoulli_sign),
            Mistake("summed over the wrong axis: one value per row, a sum over the pixels (the last axis)",
                    _bernoulli_wrong_axis))),
    Exercise(
        "bernoulli_log_likelihood_grad", "scratchvae.distributions.bernoulli_log_likelihood_grad", "07",
        "07_vae.py", ("dlogits",), _bernoulli_cases, checks="outputs; dlogits against central differences "
        "of sum log p(x|l); note 003's Bernoulli gradient check", gradient=_bernoulli_gradient,
        derivations=(("scratchvae.derivations.note003:bernoulli_nll_gradient", "grad"),), mistakes=(
            Mistake("the sign flipped: sigmoid(l) - x is the gradient of the negative log-likelihood; "
                    "d log p/dl = x - sigmoid(l)", _bernoulli_grad_sign),
            Mistake("the logits where probabilities belong: d log p/dl = x - sigmoid(l)",
                    _bernoulli_grad_logits_for_probabilities),
            Mistake("summed over the pixels: the gradient has one value per logit, the shape of the logits",
                    _bernoulli_grad_summed))),
    Exercise(
        "encoder_output_grad", "scratchvae.vae.encoder_output_grad", "07", "07_vae.py", ("dmu", "dlogvar"),
        _encoder_cases, checks="outputs (S = 1, 3, 2); dmu, dlogvar against central differences of "
        "sum(dz * z) + 1/B sum KL; the whole VAE's gradient with it", gradient=_encoder_gradient,
        derivations=(VAE_GRADIENT,), mistakes=(
            Mistake("a missing 1/B on the KL part: the loss is the batch mean -1/B sum_b elbo_b, so each "
                    "image's KL enters with weight 1/B", _encoder_output_grad_no_b),
            Mistake("the KL part's sign flipped: the loss is -elbo = -rec + KL, so the KL's gradient "
                    "is added", _encoder_output_grad_kl_sign),
            Mistake("the KL part divided by S B: the KL is computed once per image, not once per sample, "
                    "so its weight is 1/B", _encoder_output_grad_kl_per_sample),
            Mistake("the missing 1/2 in the pathwise dlogvar: dz/dlogvar = eps exp(logvar / 2) / 2",
                    _encoder_output_grad_no_half))),
)



EXERCISES = (*KL, *REPARAMETERIZATION, *VAE)
