"""What an exercise is: the library function it is made from, the lesson that teaches it, the
seeded inputs it is graded on, the checks of the project it must pass, and the known mistakes
the grader can name (:class:`Exercise`, :class:`Case`, :class:`Mistake`), and how its outputs
are named and compared.

An :class:`Exercise` holds no solution: the workbook stub and the expected outputs both come
from the library function named by ``target``, looked up when they are needed. A
:class:`Mistake` is a wrong body written once as code, with the line the grader prints when a
student's outputs equal its outputs on every input (the tests also write it into a workbook
to prove that the grader names it). The entries themselves are listed by :mod:`.catalog`.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable

# The lessons, by number: what a workbook comment names.
LESSONS = {
    "00": "manual backprop and gradient checking",
    "01": "latent variable models",
    "02": "mixture of Gaussians and EM",
    "04": "autoencoders and PCA",
    "05": "variational inference",
    "06": "the reparameterization trick",
    "07": "the VAE on MNIST",
    "08": "the VAE on Frey Face",
    "09": "importance sampling",
    "11": "wake-sleep",
    "12": "posterior sampling",
}

# Outputs must agree with the library's to this relative error (float64). Two correct ways of
# writing one formula round differently, about 1e-16 relative per operation and 1e-13 after a
# Cholesky factorization or an SVD; the mistakes this grader names change outputs by 1e-6 (a
# forgotten reg_covar of 1e-6) to order one.
OUTPUT_TOL = 1e-8
# A student's outputs "are" a known mistake's when they agree with its outputs this closely.
MISTAKE_TOL = 1e-6


@dataclass(frozen=True)
class Case:
    """One seeded input: ``args`` (and ``kwargs``) for a call, and a label that says what is
    special about it (shape, samples, extreme values)."""
    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A known mistake: what the grader says (what went wrong, and the right formula to look
    at), and the wrong body, a function with the exercise's signature."""
    says: str
    body: Callable


@dataclass(frozen=True)
class Exercise:
    """One exercise of the workbook.

    Attributes:
        name: the exercise's (and the workbook function's) name.
        target: dotted path of the library function it is made from.
        lesson, file: the lesson that teaches it and the workbook file that holds it.
        outputs: names of the compared values, one per element of a returned tuple (or of the
            arrays ``run`` collects).
        cases: ``() -> [Case]``, fresh arrays on every call (seeded).
        mistakes: the known mistakes, the most common first.
        checks: one line: what grading runs besides comparing outputs.
        run: ``(function, case) -> {name: value}`` when calling and naming the result is not
            enough (in-place updates, layers); default ``function(*case.args, **case.kwargs)``.
        gradient: ``(function) -> [TensorReport]``: the function's gradient against central
            differences of its forward (float64, away from kinks), for gradient exercises.
        derivations: ``("module:check", keyword or None)``: derivation checks of
            :mod:`scratchvae.derivations` that use the function, run with the student's version
            patched in (and passed as ``keyword`` where the check takes it).
        semantic: ``(function) -> (passed, worst, detail)``: another check of the project.
        align: ``(expected, received) -> received``, where outputs are defined up to a choice
            (the signs of principal components).
        shims: ``(function) -> [(owner, attribute, replacement)]``: what else must change for the
            library to use the student's function (a method that keeps its own fast form).
    """
    name: str
    target: str
    lesson: str
    file: str
    outputs: tuple
    cases: Callable
    mistakes: tuple
    checks: str
    run: Callable = None
    gradient: Callable = None
    derivations: tuple = ()
    semantic: Callable = None
    align: Callable = None
    shims: Callable = None

    @property
    def module(self):
        return self.target.rpartition(".")[0]

    @property
    def function_name(self):
        return self.target.rpartition(".")[2]

    def library_function(self):
        """The library function this exercise is made from, or None when this version of the
        library does not have it."""
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            return None
        return getattr(module, self.function_name, None)

    def call(self, function, case):
        """``{output name: value}`` of one call on ``case``."""
        if self.run is not None:
            return self.run(function, case)
        return named(function(*case.args, **case.kwargs), self.outputs)


class Malformed(Exception):
    """A result of the wrong kind: a tuple where one array belongs, too few values, a list."""


def describe(value):
    """'a tuple of 3 values', 'None', 'a float', ... for messages."""
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def named(result, names):
    """Name the values a function returned: one array, or a tuple of ``len(names)``."""
    if len(names) == 1:
        if isinstance(result, (tuple, list)):
            raise Malformed(f"returned {describe(result)}, expected one array ({names[0]})")
        return {names[0]: result}
    if not isinstance(result, (tuple, list)):
        raise Malformed(f"returned {describe(result)}, expected a tuple of {len(names)} arrays "
                        f"({', '.join(names)})")
    if len(result) != len(names):
        raise Malformed(f"returned {len(result)} values, expected {len(names)} ({', '.join(names)})")
    return dict(zip(names, result))
