"""Every derivation of the lecture notes, checked numerically: one function per derivation.

One module per note (``note000`` ... ``note003``) holds the checks of the formulas that note
derives, ``library`` those of the implementation around them (layers, the whole VAE,
optimizers), ``wake_sleep`` and ``hmc`` those of the paper's comparisons (wake-sleep's two
gradients; HMC and the appendix-D estimator); :mod:`.checks` holds what they share. Each
check returns a :class:`Check` (what was compared, the worst discrepancy found, the threshold
it must stay under, and a line of details); :func:`run_all` returns them all in the order of
the notes. ``scratchvae gradcheck``
prints them as a table; the tests assert on the same functions, so the checking logic lives
here once.

Every check takes ``xp`` (NumPy, or CuPy for the same check on a GPU); the data are drawn on
the host with NumPy and moved, so both devices check the same numbers (except the ancestral
samples, which come from the device's own generator). Some take the function under test as a
keyword, so the tests can show that a planted bug makes the check fail.
"""
from importlib import import_module

import numpy as np

from .checks import Check  # noqa: F401  (the type every check returns)

# The catalogue in reading order, one module per line; each lists its checks in ``CHECKS``.
MODULES = tuple(import_module(f"{__name__}.{name}") for name in (
    "note000",   # latent variable models: the mixture of Gaussians, the deep LVM
    "note001",   # ln p(X) = L(q) + KL(q || p(Z|X)), and EM
    "note002",   # the reparameterization trick
    "note003",   # the ELBO's terms: KL, the Gaussian and Bernoulli decoders, the pathwise gradient
    "library",   # the implementation: layers, the whole VAE, optimizers
    "wake_sleep",  # the paper's comparison: wake-sleep's two gradients
    "hmc",         # posterior sampling (appendices D and E): HMC, the marginal-likelihood estimator
))
CHECKS = tuple(check for module in MODULES for check in module.CHECKS)


def run_all(xp=np):
    """Every check, in the order of the notes."""
    return [check(xp) for check in CHECKS]


def format_table(checks):
    """A plain-text table of checks: name, note, worst error, threshold, verdict."""
    lines = [f"{'check':<34}{'note':<6}{'worst':>10}{'threshold':>11}  {'measure':<22}{'ok':>4}"]
    for c in checks:
        lines.append(f"{c.name:<34}{c.note:<6}{c.worst:>10.2e}{c.threshold:>11.2e}  {c.measure:<22}"
                     f"{'yes' if c.passed else 'NO':>4}")
    return "\n".join(lines)
