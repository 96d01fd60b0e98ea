"""What every derivation check shares: the :class:`Check` it returns, its thresholds, and the
small helpers and example models that several notes' checks use.

Three kinds of threshold, each stated in the check:

- ``GRAD`` (gradcheck.THRESHOLD = 1e-7): the relative error |a - n| / (|a| + |n|) between an
  analytic gradient and central differences in float64 (see :mod:`scratchvae.gradcheck`).
- ``EXACT`` = 1e-10: the relative error between two float64 routes to the same number (a
  closed form against scipy or quadrature, two sides of an identity). Round-off puts them
  1e-16 to 1e-13 apart; an algebra mistake puts them 1e-3 or more apart.
- Monte Carlo checks report the worst |estimate - exact| / SE over m comparisons, with the
  standard error SE estimated from the same samples. The threshold is the two-sided
  Bonferroni bound ``z_bound(m)`` = Phi^{-1}(1 - alpha / (2 m)) with alpha = 1e-4: a correct
  implementation exceeds it with probability below 1e-4 (the estimates being averages of
  thousands of samples, hence close to normal), while the bugs these checks target
  shift the estimate by hundreds of standard errors. Seeds are fixed, so every run agrees.
"""
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from ..backend import as_numpy, device_of
from ..gradcheck import THRESHOLD as GRAD  # noqa: F401  (re-exported: the gradient threshold)
from ..gradcheck import rel_error
from ..models.linear_gaussian import LinearGaussian
from ..models.mixture import GaussianMixture

EXACT = 1e-10
ALPHA = 1e-4
REL = "relative error"
ZSCORE = "|z| (standard errors)"


@dataclass
class Check:
    """The outcome of one derivation check."""
    name: str
    note: str             # which lecture note the derivation comes from
    formula: str          # the identity, in one line
    worst: float          # worst relative error, or worst |z| for a Monte Carlo check
    threshold: float
    measure: str          # REL or ZSCORE: what ``worst`` is
    details: str
    passed: bool = field(init=False)   # worst is finite and below threshold

    def __post_init__(self):
        self.passed = bool(np.isfinite(self.worst)) and self.worst < self.threshold


def make_check(name, note, formula, worst, threshold, measure, details, extra_ok=True):
    """A Check whose ``worst`` is forced to inf when a side condition (``extra_ok``) fails."""
    return Check(name, note, formula, float(worst) if extra_ok else math.inf, threshold, measure, details)


def z_bound(m, alpha=ALPHA, dof=None):
    """Phi^{-1}(1 - alpha / (2 m)): the largest |z| among m standard normals exceeds it with
    probability at most alpha (e.g. 4.42 for m = 10, 4.89 for m = 100). With ``dof``, the
    Student-t quantile instead, for a standard error estimated from only dof + 1 values."""
    law = scipy.stats.norm if dof is None else scipy.stats.t(dof)
    return float(law.isf(alpha / (2 * m)))


# ---------------------------------------------------------------------------------------
# Errors and z-scores, on the host
# ---------------------------------------------------------------------------------------
def max_rel(a, b):
    """The worst elementwise relative error between a and b."""
    return float(rel_error(a, b).max())


def per_tensor(reports):
    """'name worst, ...' for gradcheck's reports, one entry per tensor."""
    return ", ".join(f"{r.name} {r.worst:.1e}" for r in reports)


def mean_and_se(samples, axis=0):
    """Sample mean and its standard error sd / sqrt(n) along ``axis``."""
    n = samples.shape[axis]
    return samples.mean(axis=axis), samples.std(axis=axis, ddof=1) / math.sqrt(n)


def z_scores(estimate, exact, se):
    """|estimate - exact| / se elementwise, on the host."""
    return np.abs(as_numpy(estimate) - as_numpy(exact)) / as_numpy(se)


def mean_z_scores(samples, exact):
    """|mean - exact| / SE of the mean, over the first axis of ``samples``."""
    mean, se = mean_and_se(samples)
    return z_scores(mean, exact, se)


def device_name(xp):
    """'cpu' for NumPy, 'gpu' for CuPy."""
    return device_of(xp.zeros(1))


# ---------------------------------------------------------------------------------------
# Example models shared by the checks of several notes
# ---------------------------------------------------------------------------------------
def example_mixture(xp, covariance="full"):
    """A 3-component mixture in 2-D with unequal weights and correlated components."""
    pi = np.array([0.2, 0.3, 0.5])
    mu = np.array([[-3.0, 0.0], [2.0, 2.0], [1.0, -2.5]])
    if covariance == "full":
        cov = np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.5, -0.2], [-0.2, 1.2]], [[1.5, 0.0], [0.0, 0.3]]])
    else:
        cov = np.array([[1.0, 0.8], [0.5, 1.2], [1.5, 0.3]])
    return GaussianMixture(xp.asarray(pi), xp.asarray(mu), xp.asarray(cov))


def example_linear_gaussian(xp, orthogonal=False):
    """x_dim 4, z_dim 2; with ``orthogonal`` W has orthogonal columns, so that p(z|x) is diagonal."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((4, 2))
    if orthogonal:
        W = np.linalg.qr(W)[0] * np.array([1.5, 0.7])
    return LinearGaussian(xp.asarray(W), xp.asarray(rng.standard_normal(4)), 0.6)
