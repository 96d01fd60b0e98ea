"""Exercises: a workbook made from the library's own functions, and a grader that names the mistake.

    scratchvae exercises start DIR                 write the workbook: one file per topic
    scratchvae exercises check DIR [NAME ...]      grade it (--json FILE for Gradescope)
    scratchvae exercises list                      the exercises, their lessons, checks and mistakes

From a notebook::

    from scratchvae.exercises import check
    check("kl_standard_normal_grad")          # the function of that name defined in the notebook
    check("kl_standard_normal_grad", my_kl_grad)

The pieces, each importing the core and never imported by it:

    catalog      what an exercise is; :data:`~.catalog.EXERCISES` in lesson order
    lessons_00_04, lessons_05_07, lessons_07_12    the exercises, by lesson
    workbook     writing a workbook from the library's source, and reading one
    grader       the checks of one exercise, run in a child process
    whole_model  the student's pieces together, training VAEs on the digits
    runner       one child per exercise, time limits, the report and results.json
"""
from .catalog import EXERCISES, NAMES, WHOLE_MODEL
from .runner import DEFAULT_TIMEOUT, Report, gradescope, write_json
from .runner import check as _check
from .runner import grade
from .workbook import WorkbookError, start, write_solution

__all__ = ["EXERCISES", "NAMES", "WHOLE_MODEL", "DEFAULT_TIMEOUT", "Report", "WorkbookError", "check",
           "grade", "gradescope", "start", "write_json", "write_solution"]


def check(name, function=None, timeout=DEFAULT_TIMEOUT):
    """Grade the exercise ``name``: the function of that name in the caller's namespace (a
    notebook's), or ``function``; ``"whole_model"`` takes every function there named like an
    exercise. Prints the report of ``scratchvae exercises check`` and returns the result (a dict
    with ``status``, ``rel_error``, ``checks``, ``diagnosis``, ``score``)."""
    import inspect

    return _check(name, function, timeout, _caller=inspect.currentframe().f_back.f_globals)
