"""The exercises of the workbook, in lesson order: :data:`EXERCISES` (and :data:`NAMES`, which
adds ``whole_model``), and :func:`get` one by name.

The entries themselves are in :mod:`.lessons_00_04`, :mod:`.lessons_05_07` and
:mod:`.lessons_07_12`, each made of the kinds of :mod:`.exercise` (what an exercise is, its
inputs and its known mistakes), which this module also offers under their names.
"""
from .exercise import (LESSONS, MISTAKE_TOL, OUTPUT_TOL, Case, Exercise, Malformed,  # noqa: F401
                       Mistake, describe, named)

WHOLE_MODEL = "whole_model"


def _entries():
    from . import lessons_00_04, lessons_05_07, lessons_07_12
    return (*lessons_00_04.EXERCISES, *lessons_05_07.EXERCISES, *lessons_07_12.EXERCISES)


EXERCISES = _entries()
BY_NAME = {e.name: e for e in EXERCISES}
NAMES = (*BY_NAME, WHOLE_MODEL)
FILES = tuple(dict.fromkeys(e.file for e in EXERCISES))


def get(name):
    """The :class:`Exercise` called ``name`` (a ValueError listing the names otherwise)."""
    if name not in BY_NAME:
        raise ValueError(f"no exercise called {name!r}; the exercises are: {', '.join(NAMES)}")
    return BY_NAME[name]
