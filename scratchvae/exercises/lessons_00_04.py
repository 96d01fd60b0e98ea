"""The exercises of lessons 00 to 04: the activations' backward, a linear layer and the MLP's
chain rule, logsumexp, the E and M steps of EM, and PCA.

Every mistake below is a wrong body with the exercise's signature; the grader compares a
student's outputs with it, and the tests write it into a workbook.
"""
import numpy as np

from ..activations import relu, sigmoid, softplus, tanh
from ..backend import get_array_module
from ..gradcheck import check_gradients
from ..layers import MLP, Linear
from ..models.mixture import GaussianMixture, component_log_densities
from .exercise import Case, Exercise, Malformed, Mistake


def _away_from_zero(rng, shape, low=0.1, high=2.0):
    """Values at least ``low`` from 0, either sign: no ReLU kink within a finite difference."""
    return np.sign(rng.standard_normal(shape)) * rng.uniform(low, high, shape)


# ---------------------------------------------------------------------------------------
# Lesson 00: the activations' backward
# ---------------------------------------------------------------------------------------
def _activation_cases(forward, seed, takes_output=True, spread=2.0):
    def cases():
        rng = np.random.default_rng(seed)
        out = []
        for shape in ((4, 5), (2, 3, 4)):
            a = _away_from_zero(rng, shape, high=spread)
            dy = rng.standard_normal(shape)
            out.append(Case(f"dy {shape}", (dy, forward(a) if takes_output else a)))
        a = np.array([[-30.0, -5.0, -0.5, 0.5, 5.0, 30.0]])     # saturated ends
        out.append(Case("large |a|", (rng.standard_normal(a.shape), forward(a) if takes_output else a)))
        return out
    return cases


def _activation_gradient(forward, seed, takes_output=True):
    """da from the student's backward against central differences of f(a) = sum(dy * forward(a))."""
    def gradient(function):
        rng = np.random.default_rng(seed)
        a = _away_from_zero(rng, (4, 5))
        dy = rng.standard_normal((4, 5))
        da = function(dy, forward(a) if takes_output else a)
        return check_gradients(lambda: float((dy * forward(a)).sum()), {"a": a}, {"a": da})
    return gradient


LAYERS = (("scratchvae.derivations.library:layer_backward", None),)


def _relu_backward_identity(dy, y):
    return dy


def _relu_backward_times_output(dy, y):
    return dy * y


def _relu_backward_mask_flipped(dy, y):
    return dy * (y <= 0)


def _tanh_backward_identity(dy, y):
    return dy


def _tanh_backward_one_minus_y(dy, y):
    return dy * (1 - y)


def _tanh_backward_tanh_again(dy, y):
    return dy * (1 - np.tanh(y) ** 2)


def _sigmoid_backward_identity(dy, y):
    return dy


def _sigmoid_backward_sigmoid_again(dy, y):
    return dy * sigmoid(y) * (1 - sigmoid(y))


def _sigmoid_backward_no_dy(dy, y):
    return y * (1 - y)


def _softplus_backward_identity(dy, a):
    return dy


def _softplus_backward_sigmoid_of_minus_a(dy, a):
    return dy * sigmoid(-a)


def _softplus_backward_softplus(dy, a):
    return dy * softplus(a)


LEFT_OUT = "the activation's derivative left out: dy passed through unchanged; "

ACTIVATIONS = (
    Exercise(
        "relu_backward", "scratchvae.activations.relu_backward", "00", "00_backprop.py", ("da",),
        _activation_cases(relu, 1), checks="outputs; da against central differences of sum(dy * relu(a)) "
        "away from the kink; the layers' derivation check",
        gradient=_activation_gradient(relu, 2), derivations=LAYERS, mistakes=(
            Mistake(LEFT_OUT + "da = dy * relu'(a), with relu'(a) = 1 where y > 0 and 0 elsewhere",
                    _relu_backward_identity),
            Mistake("y used as the derivative: relu'(a) is 1 where y > 0 (a mask), not y itself",
                    _relu_backward_times_output),
            Mistake("the mask flipped: the gradient passes where y = 0 and stops where y > 0; it passes where y > 0",
                    _relu_backward_mask_flipped))),
    Exercise(
        "tanh_backward", "scratchvae.activations.tanh_backward", "00", "00_backprop.py", ("da",),
        _activation_cases(tanh, 3), checks="outputs; da against central differences of sum(dy * tanh(a)); "
        "the layers' derivation check",
        gradient=_activation_gradient(tanh, 4), derivations=LAYERS, mistakes=(
            Mistake(LEFT_OUT + "da = dy * (1 - y^2)", _tanh_backward_identity),
            Mistake("1 - y where 1 - y^2 belongs: d tanh(a)/da = 1 - tanh(a)^2 = 1 - y^2",
                    _tanh_backward_one_minus_y),
            Mistake("tanh applied to the output again: backward receives y = tanh(a), so the "
                    "derivative is 1 - y^2, not 1 - tanh(y)^2", _tanh_backward_tanh_again))),
    Exercise(
        "sigmoid_backward", "scratchvae.activations.sigmoid_backward", "00", "00_backprop.py", ("da",),
        _activation_cases(sigmoid, 5), checks="outputs; da against central differences of "
        "sum(dy * sigmoid(a)); the layers' derivation check",
        gradient=_activation_gradient(sigmoid, 6), derivations=LAYERS, mistakes=(
            Mistake(LEFT_OUT + "da = dy * y (1 - y)", _sigmoid_backward_identity),
            Mistake("sigmoid applied to the output again: y already is sigmoid(a), so the derivative "
                    "is y (1 - y)", _sigmoid_backward_sigmoid_again),
            Mistake("the upstream gradient dropped: the chain rule multiplies the local derivative "
                    "y (1 - y) by dy", _sigmoid_backward_no_dy))),
    Exercise(
        "softplus_backward", "scratchvae.activations.softplus_backward", "00", "00_backprop.py", ("da",),
        _activation_cases(softplus, 7, takes_output=False), checks="outputs; da against central "
        "differences of sum(dy * softplus(a)); the layers' derivation check",
        gradient=_activation_gradient(softplus, 9, takes_output=False), derivations=LAYERS, mistakes=(
            Mistake(LEFT_OUT + "da = dy * sigmoid(a)", _softplus_backward_identity),
            Mistake("sigmoid(-a) where sigmoid(a) belongs: d log(1 + exp(a))/da = exp(a) / (1 + exp(a)) "
                    "= sigmoid(a)", _softplus_backward_sigmoid_of_minus_a),
            Mistake("softplus used as its own derivative: d softplus(a)/da = sigmoid(a)",
                    _softplus_backward_softplus))),
)


# ---------------------------------------------------------------------------------------
# Lesson 00: a linear layer and the MLP's chain rule
# ---------------------------------------------------------------------------------------
def _linear_cases():
    rng = np.random.default_rng(9)
    out = []
    for B, n_in, n_out in ((5, 4, 3), (1, 6, 2), (7, 3, 5)):     # B differs from n_out
        x, W = rng.standard_normal((B, n_in)), rng.standard_normal((n_in, n_out))
        out.append(Case(f"B={B}, W {(n_in, n_out)}", (rng.standard_normal((B, n_out)), x, W)))
    return out


def _linear_gradient(function):
    rng = np.random.default_rng(10)
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    dy = rng.standard_normal((5, 3))
    dx, dW, db = function(dy, x, W)
    f = lambda: float((dy * (x @ W + b)).sum())  # noqa: E731
    return check_gradients(f, {"x": x, "W": W, "b": b}, {"x": dx, "W": dW, "b": db})


def _linear_shims(function):
    """Linear.backward writes dW and db into the model's buffer in place (its fast form); for the
    library to use the student's function, a backward that calls it and copies."""
    def backward(self, dy, input_grad=True):
        dx, dW, db = function(dy, self.cache, self.params["W"])
        for name, g in (("dW", dW), ("db", db)):
            want = self.grads[name[1:]].shape
            if getattr(g, "shape", None) != want:
                raise ValueError(f"linear_backward returned {name} of shape {getattr(g, 'shape', None)} "
                                 f"for a layer whose {name[1:]} has shape {want}")
        self.grads["W"][...] = dW
        self.grads["b"][...] = db
        return dx if input_grad else None
    return [(Linear, "backward", backward)]


def _linear_backward_db_mean(dy, x, W):
    return dy @ W.T, x.T @ dy, dy.mean(axis=0)


def _linear_backward_dW_transposed(dy, x, W):
    return dy @ W.T, dy.T @ x, dy.sum(axis=0)


def _linear_backward_db_wrong_axis(dy, x, W):
    return dy @ W.T, x.T @ dy, dy.sum(axis=1)


def _mlp_cases():
    return [Case("[4, 6, 3], tanh, sigmoid output", ([4, 6, 3], "tanh", "sigmoid", 11)),
            Case("[3, 5, 5, 2], softplus", ([3, 5, 5, 2], "softplus", "identity", 12)),
            Case("[4, 6, 3], relu, tanh output", ([4, 6, 3], "relu", "tanh", 13))]


def _mlp(sizes, activation, out_activation, seed):
    rng = np.random.default_rng(seed)
    mlp = MLP(sizes, activation=activation, out_activation=out_activation, init="pytorch", rng=rng,
              dtype="float64")
    return mlp, rng.standard_normal((5, sizes[0])), rng.standard_normal((5, sizes[-1]))


def _mlp_run(function, case):
    """dx from the student's chain rule, and every layer's gradients after it."""
    mlp, x, dy = _mlp(*case.args)
    mlp.forward(x)
    dx = function(mlp.layers, dy)
    if isinstance(dx, (tuple, list)):
        raise Malformed(f"returned a {type(dx).__name__}, expected one array (dx)")
    return {"dx": dx, **{f"gradient of {k}": g.copy() for k, g in mlp.gradients().items()}}


def _mlp_gradient(function):
    mlp, x, dy = _mlp([4, 6, 5, 3], "tanh", "sigmoid", 14)
    mlp.forward(x)
    dx = function(mlp.layers, dy)
    grads = {**{k: g.copy() for k, g in mlp.gradients().items()}, "x": dx}
    f = lambda: float((dy * mlp.forward(x)).sum())  # noqa: E731
    return check_gradients(f, {**mlp.parameters(), "x": x}, grads)


def _mlp_backward_linear_only(layers, dy):
    for layer in reversed(layers):
        if layer.params:
            dy = layer.backward(dy)
    return dy


def _mlp_backward_last_skipped(layers, dy):
    for layer in reversed(layers[:-1]):
        dy = layer.backward(dy)
    return dy


def _mlp_backward_first_skipped(layers, dy):
    for layer in reversed(layers[1:]):
        dy = layer.backward(dy)
    return dy


LAYERS_AND_CHAIN = (
    Exercise(
        "linear_backward", "scratchvae.layers.linear_backward", "00", "00_backprop.py", ("dx", "dW", "db"),
        _linear_cases, checks="outputs; dx, dW, db against central differences of sum(dy * (x W + b)); "
        "the layers' derivation check with Linear.backward calling it",
        gradient=_linear_gradient, derivations=LAYERS, shims=_linear_shims, mistakes=(
            Mistake("db averaged over the batch: b is added to every row, so db = sum over the batch "
                    "of dy (no 1/B)", _linear_backward_db_mean),
            Mistake("dW transposed: W is (in, out), so dW = x^T dy (in, out), not dy^T x",
                    _linear_backward_dW_transposed),
            Mistake("db summed over the wrong axis: sum over the batch (axis 0), one value per output",
                    _linear_backward_db_wrong_axis))),
    Exercise(
        "mlp_backward", "scratchvae.layers.mlp_backward", "00", "00_backprop.py", ("dx",),
        _mlp_cases, run=_mlp_run, checks="dx and every layer's gradients; all of them against "
        "central differences of sum(dy * mlp(x)); the layers' derivation check",
        gradient=_mlp_gradient, derivations=LAYERS, mistakes=(
            Mistake("the activations' derivatives left out: only the Linear layers' backward was "
                    "called; every layer, activations too, sends dy back through its derivative",
                    _mlp_backward_linear_only),
            Mistake("the last layer skipped: the loop starts at layers[-2], so the output "
                    "activation's derivative is missing", _mlp_backward_last_skipped),
            Mistake("the first layer skipped: the loop stops before layers[0], so its gradients stay "
                    "empty and dx is the gradient at its output", _mlp_backward_first_skipped))),
)


# ---------------------------------------------------------------------------------------
# Lesson 01: logsumexp
# ---------------------------------------------------------------------------------------
def _logsumexp_cases():
    rng = np.random.default_rng(15)
    with_inf = rng.standard_normal((3, 4))
    with_inf[1, 2] = -np.inf
    return [Case("(4, 5), axis -1", (rng.standard_normal((4, 5)),)),
            Case("(4, 5), axis 0", (rng.standard_normal((4, 5)),), {"axis": 0}),
            Case("values near +1000", (rng.normal(1000.0, 3.0, (3, 5)),)),
            Case("values near -1000", (rng.normal(-1000.0, 3.0, (3, 5)),)),
            Case("(2, 3, 4), axis 1", (rng.standard_normal((2, 3, 4)),), {"axis": 1}),
            Case("one entry -inf", (with_inf,))]


def _logsumexp_no_shift(a, axis=-1):
    xp = get_array_module(a)
    return xp.log(xp.exp(a).sum(axis=axis))


def _logsumexp_max_not_added_back(a, axis=-1):
    xp = get_array_module(a)
    m = a.max(axis=axis, keepdims=True)
    return xp.log(xp.exp(a - m).sum(axis=axis))


def _logsumexp_axis_ignored(a, axis=-1):
    xp = get_array_module(a)
    m = a.max(axis=0, keepdims=True)
    return (m + xp.log(xp.exp(a - m).sum(axis=0, keepdims=True))).squeeze(0)


LOGSUMEXP = Exercise(
    "logsumexp", "scratchvae.distributions.logsumexp", "01", "01_latent_variables.py", ("logsumexp",),
    _logsumexp_cases, checks="outputs (values near +-1000, an -inf entry, other axes); the mixture's "
    "log-likelihood and note 001's decomposition with it", derivations=(
        ("scratchvae.derivations.note000:mog_log_likelihood", None),
        ("scratchvae.derivations.note001:decomposition_discrete", None)), mistakes=(
        Mistake("logsumexp without the max shift: exp(a) overflows to inf at a = 1000 (and underflows "
                "to 0 at a = -1000); compute m + log sum_i exp(a_i - m) with m = max_i a_i",
                _logsumexp_no_shift),
        Mistake("the max subtracted but not added back: log sum_i exp(a_i) = m + log sum_i exp(a_i - m)",
                _logsumexp_max_not_added_back),
        Mistake("the axis argument ignored: the sum runs over axis 0 whatever axis is",
                _logsumexp_axis_ignored)))


# ---------------------------------------------------------------------------------------
# Lesson 02: EM for a mixture of Gaussians
# ---------------------------------------------------------------------------------------
PI = np.array([0.2, 0.3, 0.5])
MU = np.array([[-3.0, 0.0], [2.0, 2.0], [1.0, -2.5]])
COV = np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.5, -0.2], [-0.2, 1.2]], [[1.5, 0.0], [0.0, 0.3]]])
VAR = np.array([[1.0, 0.8], [0.5, 1.2], [1.5, 0.3]])


def _e_step_cases():
    rng = np.random.default_rng(16)
    x = np.concatenate([rng.normal(0.0, 2.0, (20, 2)), [[200.0, 0.0]]])    # and one far point
    A = rng.standard_normal((2, 3, 3))
    cov3 = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(3)
    return [Case("K=3 full covariances, a point at (200, 0)", (x, PI.copy(), MU.copy(), COV.copy())),
            Case("K=3 diagonal covariances", (x[:20].copy(), PI.copy(), MU.copy(), VAR.copy())),
            Case("K=2 in 3-D", (rng.standard_normal((15, 3)), np.array([0.6, 0.4]),
                                rng.standard_normal((2, 3)), cov3))]


def _log_joint(x, pi, mu, cov):
    return get_array_module(x).log(pi) + component_log_densities(x, mu, cov)


def _e_step_joint(x, pi, mu, cov):
    return np.exp(_log_joint(x, pi, mu, cov))


def _e_step_no_pi(x, pi, mu, cov):
    log_density = component_log_densities(x, mu, cov)
    log_density = log_density - log_density.max(axis=1, keepdims=True)
    return np.exp(log_density) / np.exp(log_density).sum(axis=1, keepdims=True)


def _e_step_wrong_axis(x, pi, mu, cov):
    log_joint = _log_joint(x, pi, mu, cov)
    log_joint = log_joint - log_joint.max(axis=0, keepdims=True)
    return np.exp(log_joint) / np.exp(log_joint).sum(axis=0, keepdims=True)


def _e_step_densities(x, pi, mu, cov):
    joint = np.exp(_log_joint(x, pi, mu, cov))
    return joint / joint.sum(axis=1, keepdims=True)


EM = (("scratchvae.derivations.note001:em_decomposition", None),)

E_STEP = Exercise(
    "e_step", "scratchvae.models.mixture.e_step", "02", "02_mixture_em.py", ("responsibilities",),
    _e_step_cases, checks="outputs (full and diagonal covariances, a point far from every component); "
    "note 001's decomposition and EM with it", derivations=(
        ("scratchvae.derivations.note001:decomposition_discrete", None), *EM), mistakes=(
        Mistake("the joint p(x, z = k) returned: divide by p(x) = sum_k p(x, z = k) (Bayes' rule), so "
                "that each row sums to 1", _e_step_joint),
        Mistake("pi_k left out of Bayes' rule: r_nk is proportional to pi_k N(x_n; mu_k, Sigma_k)",
                _e_step_no_pi),
        Mistake("normalized over the points instead of the components: each row (one point) sums to "
                "1 over k", _e_step_wrong_axis),
        Mistake("densities instead of log-densities: far from every component (the point (200, 0)) "
                "every pi_k N(x; mu_k, Sigma_k) underflows to 0 and r = 0/0; normalize in log space "
                "with logsumexp", _e_step_densities)))


def _m_step_cases():
    rng = np.random.default_rng(17)
    x, q = rng.normal(0.0, 2.0, (40, 2)), rng.dirichlet(np.ones(3), 40)
    return [Case("full covariances", (x.copy(), q.copy())),
            Case("diagonal covariances", (x.copy(), q.copy()), {"covariance": "diag"}),
            Case("reg_covar = 0", (x.copy(), q.copy()), {"reg_covar": 0.0}),
            Case("K=2 in 3-D", (rng.standard_normal((30, 3)), rng.dirichlet(np.ones(2), 30)))]


def _m_step_run(function, case):
    model = function(*case.args, **case.kwargs)
    if not isinstance(model, GaussianMixture):
        raise Malformed(f"returned a {type(model).__name__}, expected a GaussianMixture(pi, mu, cov)")
    return {"pi": model.pi, "mu": model.mu, "cov": model.cov}


def _m_step_cov_over_n(x, q, covariance="full", reg_covar=1e-6):
    Nk = q.sum(axis=0)
    mu = (q.T @ x) / Nk[:, None]
    if covariance == "diag":
        var = (q[:, :, None] * (x[:, None, :] - mu[None]) ** 2).sum(axis=0) / x.shape[0]
        return GaussianMixture(Nk / x.shape[0], mu, var + reg_covar)
    covs = [(q[:, k, None] * (x - mu[k])).T @ (x - mu[k]) / x.shape[0] + reg_covar * np.eye(x.shape[1])
            for k in range(q.shape[1])]
    return GaussianMixture(Nk / x.shape[0], mu, np.stack(covs))


def _m_step_data_mean(x, q, covariance="full", reg_covar=1e-6):
    Nk = q.sum(axis=0)
    mu = (q.T @ x) / Nk[:, None]
    diff = x - x.mean(axis=0)
    if covariance == "diag":
        var = (q[:, :, None] * diff[:, None, :] ** 2).sum(axis=0) / Nk[:, None]
        return GaussianMixture(Nk / x.shape[0], mu, var + reg_covar)
    covs = [(q[:, k, None] * diff).T @ diff / Nk[k] + reg_covar * np.eye(x.shape[1]) for k in range(q.shape[1])]
    return GaussianMixture(Nk / x.shape[0], mu, np.stack(covs))


def _m_step_no_reg_covar(x, q, covariance="full", reg_covar=1e-6):
    Nk = q.sum(axis=0)
    mu = (q.T @ x) / Nk[:, None]
    if covariance == "diag":
        var = (q[:, :, None] * (x[:, None, :] - mu[None]) ** 2).sum(axis=0) / Nk[:, None]
        return GaussianMixture(Nk / x.shape[0], mu, var)
    covs = [(q[:, k, None] * (x - mu[k])).T @ (x - mu[k]) / Nk[k] for k in range(q.shape[1])]
    return GaussianMixture(Nk / x.shape[0], mu, np.stack(covs))


def _m_step_unweighted_mean(x, q, covariance="full", reg_covar=1e-6):
    Nk = q.sum(axis=0)
    mu = np.repeat(x.mean(axis=0)[None], q.shape[1], axis=0)
    if covariance == "diag":
        var = (q[:, :, None] * (x[:, None, :] - mu[None]) ** 2).sum(axis=0) / Nk[:, None]
        return GaussianMixture(Nk / x.shape[0], mu, var + reg_covar)
    covs = [(q[:, k, None] * (x - mu[k])).T @ (x - mu[k]) / Nk[k] + reg_covar * np.eye(x.shape[1])
            for k in range(q.shape[1])]
    return GaussianMixture(Nk / x.shape[0], mu, np.stack(covs))


M_STEP = Exercise(
    "m_step", "scratchvae.models.mixture.m_step", "02", "02_mixture_em.py", ("pi", "mu", "cov"),
    _m_step_cases, run=_m_step_run, checks="pi, mu and the covariances (full, diagonal, reg_covar = 0); "
    "EM with it: ln p(X) = L + KL at every step, never decreasing", derivations=EM, mistakes=(
        Mistake("each covariance divided by N instead of N_k = sum_n q_nk (its share of the points)",
                _m_step_cov_over_n),
        Mistake("the covariance taken around the data's mean instead of the component's new mean mu_k",
                _m_step_data_mean),
        Mistake("reg_covar left out: it is added to the diagonal of every Sigma_k (to every variance "
                "for 'diag')", _m_step_no_reg_covar),
        Mistake("mu_k not weighted by the responsibilities: mu_k = sum_n q_nk x_n / N_k",
                _m_step_unweighted_mean)))


# ---------------------------------------------------------------------------------------
# Lesson 04: PCA
# ---------------------------------------------------------------------------------------
def _pca_data(rng, n, d, scales):
    basis = np.linalg.qr(rng.standard_normal((d, len(scales))))[0]
    return (rng.standard_normal((n, len(scales))) * scales) @ basis.T + 0.1 * rng.standard_normal((n, d)) + 1.0


def _pca_cases():
    rng = np.random.default_rng(18)
    return [Case("N=50, D=6, k=2", (_pca_data(rng, 50, 6, [3.0, 2.0, 1.0]), 2)),
            Case("N=30, D=4, k=4", (_pca_data(rng, 30, 4, [2.0, 1.5, 1.0, 0.5]), 4)),
            Case("N=8, D=10, k=3", (_pca_data(rng, 8, 10, [3.0, 2.0, 1.0]), 3))]


def _pca_align(expected, received):
    """A principal direction is defined up to its sign: flip each received row to the expected one's."""
    e, r = expected.get("components"), received.get("components")
    if isinstance(e, np.ndarray) and isinstance(r, np.ndarray) and r.shape == e.shape and r.ndim == 2:
        signs = np.where((e * r).sum(axis=1) < 0, -1.0, 1.0)
        received = {**received, "components": r * signs[:, None]}
    return received


def _pca_eckart_young(function):
    """Projecting onto the k components loses exactly the variance of the others (Eckart-Young),
    and the variances are those of the projections."""
    x = _pca_data(np.random.default_rng(19), 60, 5, [3.0, 2.0, 1.0])
    mean, components, variances = function(x, 2)
    centred = x - mean
    codes = centred @ components.T
    lost = float(((centred - codes @ components) ** 2).sum(axis=1).mean())
    all_variances = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2 / len(x)
    errors = [abs(lost - all_variances[2:].sum()) / all_variances[2:].sum(),
              float(np.abs(codes.var(axis=0) - variances).max() / variances.max())]
    return max(errors) < 1e-10, max(errors), (
        f"mean squared reconstruction error {lost:.6f} vs the discarded variance "
        f"{all_variances[2:].sum():.6f}; variances {np.round(variances, 6).tolist()} vs those of the "
        f"projections {np.round(codes.var(axis=0), 6).tolist()}")


def _pca_not_centred(x, k):
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return x.mean(axis=0), vt[:k], s[:k] ** 2 / x.shape[0]


def _pca_n_minus_one(x, k):
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k], s[:k] ** 2 / (x.shape[0] - 1)


def _pca_columns_of_u(x, k):
    mean = x.mean(axis=0)
    u, s, _ = np.linalg.svd(x - mean, full_matrices=False)
    return mean, u[:, :k].T, s[:k] ** 2 / x.shape[0]


PCA = Exercise(
    "pca", "scratchvae.models.autoencoder.pca", "04", "04_pca.py", ("mean", "components", "variances"),
    _pca_cases, align=_pca_align, semantic=_pca_eckart_young, checks="mean, components (up to sign) and "
    "variances; Eckart-Young: the reconstruction error equals the discarded variance", mistakes=(
        Mistake("the data not centred: the SVD is of x - mean, not of x", _pca_not_centred),
        Mistake("variances divided by N - 1: they are s_i^2 / N here (np.cov divides by N - 1 unless "
                "bias=True)", _pca_n_minus_one),
        Mistake("the columns of U taken as the components: the principal directions are the rows of "
                "V^T, each of length D", _pca_columns_of_u)))


EXERCISES = (*ACTIVATIONS, *LAYERS_AND_CHAIN, LOGSUMEXP, E_STEP, M_STEP, PCA)
