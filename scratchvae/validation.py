"""Argument checks that fail early with a message naming the argument.

Each raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind,
wrong value) before any state is touched, so a bad call changes nothing.
"""
import numbers

import numpy as np

from .backend import check_seed, get_array_module


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def real_number(name, value):
    """A finite real number (not a bool), returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def positive_number(name, value):
    """A finite real number > 0 (a step size, or an eps that divides), returned as a float."""
    if real_number(name, value) <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


def non_negative_number(name, value):
    """A finite real number >= 0 (a weight decay), returned as a float."""
    if real_number(name, value) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def layer_sizes(name, value):
    """Hidden layer sizes: a positive integer or a tuple/list of them, returned as a tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a positive integer or a tuple of them, got {value!r}")
    return tuple(positive_int(f"{name}[{i}]", size) for i, size in enumerate(value))


seed = check_seed   # a seed: None or an integer >= 0 (defined beside the generators, in backend)


def choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value


def float_array(name, a, ndim=None, shape=None, finite=True):
    """Check that ``a`` is a floating NumPy/CuPy array of the given rank/shape
    (``None`` entries in ``shape`` match any size) and, optionally, finite."""
    xp = get_array_module(a)
    if not isinstance(a, xp.ndarray):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must have a float dtype (float32 or float64), got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(a.shape)}")
    if shape is not None:
        if len(shape) != a.ndim or any(s is not None and s != t for s, t in zip(shape, a.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(a.shape)}")
    if finite and not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def in_unit_interval(name, a):
    xp = get_array_module(a)
    if a.size and (bool((a < 0).any()) or bool((a > 1).any())):
        raise ValueError(f"{name} must lie in [0, 1] for a Bernoulli likelihood; "
                         f"got values in [{float(xp.min(a))}, {float(xp.max(a))}]")
    return a


def same_dtype(name, a, dtype):
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)} (the model's), got {a.dtype}")
    return a
