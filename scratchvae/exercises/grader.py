"""Grading one exercise: the project's checks, run on a student's function in place of the
library's. This module runs in the grading process (a child of the command), never in the
command itself: the student's code is untrusted, and everything patched here dies with it.

The checks, in order:

(a) outputs: the student's function and the library's on the same seeded float64 inputs (several
    shapes, S > 1 samples where there is a sample axis), every output compared elementwise by
    relative error against :data:`~.exercise.OUTPUT_TOL`. A result of the wrong kind, shape or
    dtype is named; when the outputs equal a known mistake's on every input (or on every input
    where they hold no nan or inf that the library's outputs do not, the others then named), the
    grader names the mistake, otherwise the worst coordinate with its expected and received values.
(b) gradient: for a gradient exercise, the student's gradient against central differences of
    the library's forward (:mod:`scratchvae.gradcheck`, float64, away from kinks).
(c) derivations: the checks of :mod:`scratchvae.derivations` that use the function, with the
    student's version patched into every loaded scratchvae module (modules import names, so
    every attribute that *is* the library's function is replaced, and so is every default
    argument that holds it); and the exercise's other semantic check, if any.
"""
import sys
import traceback
import types
from contextlib import contextmanager
from importlib import import_module

import numpy as np

from ..gradcheck import THRESHOLD
from .exercise import MISTAKE_TOL, OUTPUT_TOL, Case, Malformed, describe


class StudentError(Exception):
    """The student's code raised: ``message`` says what and where (file:line and the line)."""

    def __init__(self, message, not_implemented=False):
        super().__init__(message)
        self.not_implemented = not_implemented


# ---------------------------------------------------------------------------------------
# Running the student's code
# ---------------------------------------------------------------------------------------
def explain(exc, files, function=None):
    """'raised ValueError: ... at 05_kl.py:23: return ...', naming the last line of the
    student's own files in the traceback (not the grader's or NumPy's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    text = str(exc)
    text = text if len(text) <= 500 else text[:500] + " ..."
    message = f"raised {type(exc).__name__}" + (f": {text}" if text else "")
    if frames:
        f = frames[-1]
        message += f"\n    at {files[f.filename]}:{f.lineno}: {(f.line or '').strip()}"
    stub = (isinstance(exc, NotImplementedError) and function is not None and frames
            and frames[-1].name == function.__name__ and frames[-1].filename == function.__code__.co_filename)
    return message, bool(stub)


def fresh(case):
    """The case with copies of its arrays: a student's function may write into its inputs."""
    def copy(a):
        return a.copy() if isinstance(a, np.ndarray) else a
    return Case(case.label, tuple(copy(a) for a in case.args), {k: copy(v) for k, v in case.kwargs.items()})


def run_student(exercise, function, files):
    """The student's outputs on every case, or a StudentError / Malformed."""
    outputs = []
    for case in exercise.cases():
        try:
            outputs.append(exercise.call(function, fresh(case)))
        except Malformed:
            raise
        except BaseException as e:       # noqa: B902 (SystemExit too: the student's code is not ours)
            message, stub = explain(e, files, function)
            raise StudentError(message, not_implemented=stub) from None
    return outputs


def run_trusted(exercise, function):
    """Outputs of the library's function, or of a known mistake, on every case (None when a
    mistake cannot run on them)."""
    try:
        return [exercise.call(function, fresh(case)) for case in exercise.cases()]
    except Exception:
        return None


# ---------------------------------------------------------------------------------------
# Comparing outputs
# ---------------------------------------------------------------------------------------
def as_array(value):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (np.generic, float, int)) and not isinstance(value, bool):
        return np.asarray(value)
    return None


def relative_errors(expected, received):
    """|e - r| / max(|e| + |r|, floor) elementwise, floor = 1e-6 of the largest |e| (so that a value
    that is nearly 0 is judged by an absolute error); 0 where both are the same inf or both nan,
    inf where only one is finite."""
    e, r = expected.astype(np.float64), received.astype(np.float64)
    finite_e, finite_r = np.isfinite(e), np.isfinite(r)
    scale = float(np.abs(e[finite_e]).max()) if finite_e.any() else 0.0
    floor = 1e-6 * scale if scale > 0 else 1e-12
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(e - r) / np.maximum(np.abs(e) + np.abs(r), floor)
    same_special = ~finite_e & ~finite_r & ((e == r) | (np.isnan(e) & np.isnan(r)))
    err = np.where(finite_e & finite_r, err, np.where(same_special, 0.0, np.inf))
    return np.where(e == r, 0.0, err)


def structure_problem(name, expected, received):
    """What is wrong with the kind, shape or dtype of ``received``, or None."""
    r = as_array(received)
    if r is None:
        return f"{name} is {describe(received)}, expected a NumPy array of shape {expected.shape}"
    if r.shape != expected.shape:
        hint = ""
        if r.ndim == 2 and r.shape == expected.shape[::-1] and np.allclose(r.T, expected, rtol=1e-6):
            hint = " (it is the transpose of the expected array)"
        return f"{name} has shape {r.shape}, expected {expected.shape}{hint}"
    if r.dtype != expected.dtype:
        return f"{name} has dtype {r.dtype}, expected {expected.dtype} (like the inputs)"
    return None


def compare(expected, received, align=None):
    """``(worst, where, problem)`` of one case's outputs: the largest relative error with
    ``(name, index, expected value, received value)``, or a structure problem (worst = inf)."""
    if align is not None:
        received = align(expected, received)
    worst, where = 0.0, None
    for name, e in expected.items():
        e = np.asarray(e)
        problem = structure_problem(name, e, received.get(name))
        if problem:
            return np.inf, None, problem
        r = as_array(received[name])
        if e.size == 0:
            continue
        err = relative_errors(e, r)
        k = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        if err[k] > worst or where is None:
            worst, where = float(err[k]), (name, k, float(e[k]), float(r[k]))
    return worst, where, None


def same_outputs(a, b, align=None, tol=MISTAKE_TOL):
    """True when two runs' outputs agree on every case (structure and values). A value lost
    to overflow is lost in both whether it came out as nan, inf or -inf (which one depends on
    the order of the operations, not on the mistake)."""
    if a is None or b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if set(x) != set(y):
            return False
        worst, _, problem = compare(_lost_as_nan(x), _lost_as_nan(y), align)
        if problem or worst > tol:
            return False
    return True


def _lost_as_nan(outputs):
    return {k: np.where(np.isfinite(v), v, np.nan) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for k, v in outputs.items()}


def _index(k):
    return "[" + ", ".join(str(int(i)) for i in k) + "]" if len(k) else ""


def constant_factor(expected, received):
    """'received = c x expected' hints, per output, when every value differs by one factor."""
    hints = []
    for name, e in expected.items():
        e, r = np.asarray(e, dtype=np.float64), np.asarray(received[name], dtype=np.float64)
        mask = np.isfinite(e) & np.isfinite(r) & (np.abs(e) > 1e-6 * max(np.abs(e).max(), 1e-300))
        if mask.sum() < 2 or not np.isfinite(r).all():
            continue
        ratio = r[mask] / e[mask]
        c = float(np.median(ratio))
        if abs(c - 1) > 1e-6 and np.abs(ratio - c).max() <= 1e-6 * max(abs(c), 1e-300) and c != 0:
            what = "the sign is flipped" if abs(c + 1) < 1e-6 else "a factor missing or extra"
            hints.append(f"every value of {name} is {c:.6g} times the expected one ({what})")
    return hints


# ---------------------------------------------------------------------------------------
# Patching the student's function into the library
# ---------------------------------------------------------------------------------------
def _library_modules():
    for name, module in list(sys.modules.items()):
        if (name == "scratchvae" or name.startswith("scratchvae.")) and not name.startswith(
                "scratchvae.exercises") and isinstance(module, types.ModuleType):
            yield module


@contextmanager
def patched(replacements, shims=()):
    """Replace each library object by its replacement (``{id(original): (original, replacement)}``)
    wherever a loaded scratchvae module holds it: module attributes, and default arguments of
    the functions and methods defined there; then set the ``shims`` ``(owner, attribute,
    value)``. Everything is restored on exit."""
    undo = []

    def swap_defaults(function):
        defaults = getattr(function, "__defaults__", None)
        if defaults and any(id(d) in replacements for d in defaults):
            undo.append((function, "__defaults__", defaults))
            function.__defaults__ = tuple(replacements[id(d)][1] if id(d) in replacements else d
                                          for d in defaults)

    try:
        for module in _library_modules():
            for attribute, value in list(vars(module).items()):
                if id(value) in replacements and replacements[id(value)][0] is value:
                    undo.append((module, attribute, value))
                    setattr(module, attribute, replacements[id(value)][1])
                elif isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
                    swap_defaults(value)
                elif isinstance(value, type) and value.__module__ == module.__name__:
                    for member in vars(value).values():
                        if isinstance(member, types.FunctionType):
                            swap_defaults(member)
        for owner, attribute, value in shims:
            undo.append((owner, attribute, vars(owner).get(attribute)))
            setattr(owner, attribute, value)
        yield
    finally:
        for owner, attribute, value in reversed(undo):
            setattr(owner, attribute, value)


def replacement_for(exercise, function):
    original = exercise.library_function()
    return {id(original): (original, function)}, (exercise.shims(function) if exercise.shims else [])


# ---------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------
def _check(name, passed, worst, detail):
    return {"check": name, "passed": bool(passed), "worst": float(worst), "detail": detail}


def _outputs_check(exercise, expected, received):
    worst, where, label = 0.0, None, None
    for case, e, r in zip(exercise.cases(), expected, received):
        w, at, prob = compare(e, r, exercise.align)
        if prob:
            return {**_check("outputs", False, np.inf, f"on '{case.label}': {prob}"), "malformed": True}
        if w > worst or where is None:
            worst, where, label = w, at, case.label
    passed = worst <= OUTPUT_TOL
    if passed:
        return _check("outputs", True, worst, f"{len(expected)} inputs, worst relative error {worst:.1e}")
    name, k, e, r = where
    return _check("outputs", False, worst, f"{name}{_index(k)} on '{label}': expected {e:.8g}, received {r:.8g}")


def _gradient_check(exercise, function, files):
    try:
        reports = exercise.gradient(function)
    except BaseException as e:       # noqa: B902
        message, _ = explain(e, files)
        return _check("gradient check", False, np.inf, f"could not run: {message}")
    r = max(reports, key=lambda r: r.worst)
    detail = (f"worst relative error {r.worst:.1e} at {r.name}{_index(r.where)}: analytic "
              f"{r.analytic:.8g}, central differences {r.numeric:.8g}")
    return _check("gradient check", r.worst < THRESHOLD, r.worst, detail)


def _derivation_checks(exercise, function, files):
    out = []
    for path, keyword in exercise.derivations:
        module, _, name = path.partition(":")
        check_function = getattr(import_module(module), name)
        try:
            c = check_function(np, **({keyword: function} if keyword else {}))
            out.append(_check(f"derivation check {name}", c.passed, c.worst,
                              f"{c.worst:.2e} against a threshold of {c.threshold:.1e} ({c.measure}); {c.details}"))
        except BaseException as e:   # noqa: B902
            message, _ = explain(e, files)
            out.append(_check(f"derivation check {name}", False, np.inf, f"could not run: {message}"))
    if exercise.semantic is not None:
        try:
            passed, worst, detail = exercise.semantic(function)
            out.append(_check("semantic check", passed, worst, detail))
        except BaseException as e:   # noqa: B902
            message, _ = explain(e, files)
            out.append(_check("semantic check", False, np.inf, f"could not run: {message}"))
    return out


def _lost_values(expected, received):
    """Whether ``received`` holds a nan or inf where ``expected`` is finite."""
    return any((np.isfinite(np.asarray(e, dtype=np.float64))
                & ~np.isfinite(np.asarray(received[name], dtype=np.float64))).any()
               for name, e in expected.items())


def _mistake_where_finite(exercise, expected, received):
    """Two mistakes at once, one of them a nan or inf (often the unguarded edge case), hide the
    other from a whole-output match: name a known mistake that the outputs equal on every
    input where they lost no finite value, if they are wrong on one of those inputs."""
    if any(compare(e, r, exercise.align)[2] for e, r in zip(expected, received)):
        return []                                        # the wrong kind of array: said elsewhere
    cases = exercise.cases()
    align = exercise.align or (lambda e, r: r)
    lost = [_lost_values(e, align(e, r)) for e, r in zip(expected, received)]
    kept = [i for i, x in enumerate(lost) if not x]
    if not kept or len(kept) == len(cases) or same_outputs([expected[i] for i in kept],
                                                             [received[i] for i in kept], exercise.align):
        return []
    for mistake in exercise.mistakes:
        theirs = run_trusted(exercise, mistake.body)
        if theirs and same_outputs([theirs[i] for i in kept], [received[i] for i in kept], exercise.align):
            where = ", ".join(repr(c.label) for c, x in zip(cases, lost) if x)
            return [f"known mistake: {mistake.says}; and a nan or inf where the value is finite, on {where}"]
    return []


def diagnose(exercise, expected, received):
    """Lines that say what is wrong: the known mistake the outputs equal, or generic hints."""
    for mistake in exercise.mistakes:
        if same_outputs(run_trusted(exercise, mistake.body), received, exercise.align):
            return [f"known mistake: {mistake.says}"]
    lines = _mistake_where_finite(exercise, expected, received)
    if lines:
        return lines
    right = [c.label for c, e, r in zip(exercise.cases(), expected, received)
             if not compare(e, r, exercise.align)[2] and compare(e, r, exercise.align)[0] <= OUTPUT_TOL]
    if right:
        lines.append(f"right on {', '.join(repr(x) for x in right)}, wrong on the other inputs")
    for e, r in zip(expected, received):
        if not compare(e, r, exercise.align)[2]:
            lines += constant_factor(e, r)
            break
    return lines


def grade(exercise, function, files):
    """Grade ``function`` as ``exercise``. ``files`` maps the student's source files (absolute
    paths) to the names to show. Returns a dict: status ('passed', 'failed', 'not implemented'),
    rel_error (of the outputs against the library's), checks (each with check, passed, worst,
    detail) and diagnosis lines."""
    result = {"name": exercise.name, "status": "failed", "rel_error": None, "checks": [], "diagnosis": []}
    expected = run_trusted(exercise, exercise.library_function())
    try:
        received = run_student(exercise, function, files)
    except StudentError as e:
        if e.not_implemented:
            result["status"] = "not implemented"
        else:
            result["diagnosis"] = [str(e)]
        return result
    except Malformed as e:
        received = None
        structure = str(e)
    if received is None:
        for mistake in exercise.mistakes:      # a mistake may return the same wrong kind of thing
            if _same_malformation(exercise, mistake.body, structure):
                result["diagnosis"] = [f"known mistake: {mistake.says}"]
        result["checks"].append(_check("outputs", False, np.inf, structure))
        result["rel_error"] = float("inf")
        return result
    outputs = _outputs_check(exercise, expected, received)
    result["checks"].append(outputs)
    result["rel_error"] = outputs["worst"]
    if not outputs["passed"]:
        result["diagnosis"] = diagnose(exercise, expected, received)
        if outputs.get("malformed"):
            return result                  # the wrong kind of array: the other checks cannot say more
    if exercise.gradient is not None:
        result["checks"].append(_gradient_check(exercise, function, files))
    replacements, shims = replacement_for(exercise, function)
    with patched(replacements, shims):
        result["checks"] += _derivation_checks(exercise, function, files)
    result["status"] = "passed" if all(c["passed"] for c in result["checks"]) else "failed"
    return result


def _same_malformation(exercise, body, structure):
    try:
        for case in exercise.cases():
            exercise.call(body, fresh(case))
    except Malformed as e:
        return str(e) == structure
    except Exception:
        return False
    return False
