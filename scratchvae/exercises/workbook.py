"""The workbook: one Python file per topic, each exercise made at run time from the library's own
function (its signature and docstring, with the body left to the student).

Nothing here holds a solution: :func:`start` reads each library function's source with
:mod:`inspect` and keeps the ``def`` line and the docstring; :func:`write_solution` (for tests
and instructors) puts a function's whole source in place of a stub. Reading a workbook
(:func:`load`) compiles each file from its text, opened read-only, so no ``__pycache__`` is
ever written into the workbook folder.
"""
import ast
import builtins
import inspect
import re
import shlex
import sys
import textwrap
import types
from pathlib import Path

from . import catalog

STUB = 'raise NotImplementedError("{name}: write its body")'

HEADER = '''"""scratchvae workbook, lesson {lesson} ({title}): {file}

Each function below is one exercise: the signature and docstring of scratchvae's own function,
with the body left to you. Replace its `raise NotImplementedError(...)` with your code, then run

    scratchvae exercises check {dir}
    scratchvae exercises check {dir} {first}

(the first grades the whole workbook, the second one exercise).

The grader calls your functions with float64 NumPy arrays, in a separate process with a time
limit; it compares their outputs with scratchvae's, runs the project's gradient checks and
derivation checks on them, and names the mistake when it knows it.
"""
'''


class WorkbookError(ValueError):
    """A workbook that cannot be written or read: the message says why and what to do."""


# ---------------------------------------------------------------------------------------
# Reading a function's definition
# ---------------------------------------------------------------------------------------
def definition(function):
    """``(lines, node)``: the dedented source lines of ``function`` (the library's formula, not a
    wrapper around it) and its ``ast.FunctionDef``; ``node.lineno`` is the ``def`` line, after
    any decorators."""
    function = inspect.unwrap(function)
    source = textwrap.dedent(inspect.getsource(function))
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise WorkbookError(f"{function!r} is not a plain function")
    return source.splitlines(), node


def stub_lines(function, name):
    """The ``def`` line(s) and docstring of ``function``, renamed ``name``, and a body that raises
    NotImplementedError."""
    lines, node = definition(function)
    first = node.body[0]
    has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
               and isinstance(first.value.value, str))
    end = first.end_lineno if has_doc else first.lineno - 1
    indent = " " * first.col_offset
    out = lines[node.lineno - 1:end] + [indent + STUB.format(name=name)]
    out[0] = re.sub(r"def\s+\w+", f"def {name}", out[0], count=1)
    return out


def source_lines(function, name):
    """The whole ``def`` of ``function`` (decorators dropped), renamed ``name``."""
    lines, node = definition(function)
    out = lines[node.lineno - 1:node.end_lineno]
    out[0] = re.sub(r"def\s+\w+", f"def {name}", out[0], count=1)
    return out


def imports_for(function):
    """The import lines that give a copy of ``function``'s source, in a file of its own, the
    global names it reads: ``import math``, ``from scratchvae.backend import get_array_module``..."""
    function = inspect.unwrap(function)
    lines, node = definition(function)
    nodes = [n for part in (node.args, *node.body) for n in ast.walk(part)]   # not the decorators
    local = {n.arg for n in nodes if isinstance(n, ast.arg)}
    local |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    used = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    out = set()
    for name in sorted(used - local):
        if name not in function.__globals__:
            continue                                  # a builtin
        if hasattr(builtins, name) and function.__globals__[name] is getattr(builtins, name):
            continue
        out.add(_import_line(name, function.__globals__[name], function.__module__))
    return out


def _import_line(name, obj, home):
    if isinstance(obj, types.ModuleType):
        full = obj.__name__
        if full == name:
            return f"import {name}"
        parent, _, last = full.rpartition(".")
        return f"from {parent} import {name}" if last == name else f"import {full} as {name}"
    origin = getattr(obj, "__module__", None)
    if origin and getattr(sys.modules.get(origin), name, None) is obj:
        return f"from {origin} import {name}"
    return f"from {home} import {name}"


def _sorted_imports(lines):
    """Plain imports first, then the from-imports, one line per module, each group sorted."""
    plain = sorted(line for line in lines if line.startswith("import "))
    names = {}
    for line in lines:
        if line.startswith("from "):
            module, _, name = line[len("from "):].partition(" import ")
            names.setdefault(module, set()).add(name)
    return plain + [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(names.items())]


# ---------------------------------------------------------------------------------------
# Writing a workbook
# ---------------------------------------------------------------------------------------
def exercises_of(file):
    """The exercises of one workbook file whose library function exists, in lesson order."""
    return [e for e in catalog.EXERCISES if e.file == file and e.library_function() is not None]


def file_text(file, shown_dir):
    """The text of one workbook file; ``shown_dir`` is the folder as the check commands name it."""
    exercises = exercises_of(file)
    lesson = exercises[0].lesson
    parts = [HEADER.format(lesson=lesson, title=catalog.LESSONS[lesson], file=file, dir=shown_dir,
                           first=exercises[0].name)]
    imports = {"import numpy as np"}
    for e in exercises:
        imports |= imports_for(e.library_function())
    ordered = _sorted_imports(imports)
    plain = [line for line in ordered if line.startswith("import ")]
    parts.append("\n".join(plain) + "\n\n" + "\n".join(ordered[len(plain):]) + "\n")
    for e in exercises:
        parts.append(
            "\n# " + "-" * 87 + "\n"
            f"# {e.name}: taught in lesson {e.lesson} ({catalog.LESSONS[e.lesson]}).\n"
            f"# Check it: scratchvae exercises check {shown_dir} {e.name}\n"
            f"# The library's own is {e.target} (read it once yours passes).\n"
            + "\n".join(stub_lines(e.library_function(), e.name)) + "\n")
    return "\n".join(parts)


def start(directory):
    """Write a fresh workbook into ``directory`` (created if needed): one file per topic, in
    lesson order. Refuses, before writing anything, if any of its files exists already.
    Returns the paths written."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise WorkbookError(f"{str(folder)!r} is a file, not a folder for a workbook")
    files = [f for f in catalog.FILES if exercises_of(f)]
    taken = [folder / f for f in files if (folder / f).exists()]
    if taken:
        raise WorkbookError(
            f"{str(taken[0])!r} already exists: `scratchvae exercises start` never overwrites a "
            f"workbook (your answers may be in it); grade it with `scratchvae exercises check "
            f"{shlex.quote(str(folder))}`, or start a new one in another folder")
    folder.mkdir(parents=True, exist_ok=True)
    shown = shlex.quote(str(directory))
    written = []
    for f in files:
        path = folder / f
        with open(path, "x", encoding="utf-8") as out:      # "x": never over an existing file
            out.write(file_text(f, shown))
        written.append(path)
    return written


def write_solution(directory, name, function):
    """Put ``function``'s whole source, renamed ``name``, in place of that exercise's function in
    the workbook, with the imports it needs. The tests fill a workbook with the library's own
    functions, or with a known mistake, this way; an instructor can too."""
    exercise = catalog.get(name)
    path = Path(directory) / exercise.file
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if node is None:
        raise WorkbookError(f"{path} has no function {name}")
    start_line = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines[start_line - 1:node.end_lineno] = source_lines(function, name)
    bound = _bound_names(tree)
    missing = _sorted_imports({line for line in imports_for(function) if _binds(line) not in bound})
    if missing:
        last_import = max((n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                           and n.lineno < node.lineno), default=0)
        lines[last_import:last_import] = missing
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _binds(line):
    """The name an import line of :func:`imports_for` binds."""
    return line.rpartition(" ")[2]


def _bound_names(tree):
    """The names a module's top-level imports bind."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).partition(".")[0] for a in node.names}
    return names


# ---------------------------------------------------------------------------------------
# Reading a workbook (in the grading process)
# ---------------------------------------------------------------------------------------
def check_folder(directory):
    """Raise unless ``directory`` holds at least one workbook file."""
    folder = Path(directory)
    if not folder.is_dir():
        raise WorkbookError(f"no workbook folder {str(folder)!r}; write one with "
                            f"`scratchvae exercises start {shlex.quote(str(folder))}`")
    if not any((folder / f).is_file() for f in catalog.FILES):
        raise WorkbookError(f"{str(folder)!r} holds no workbook file ({catalog.FILES[0]}, ...); write "
                            f"one with `scratchvae exercises start {shlex.quote(str(folder))}`")


def load_file(path):
    """Run one workbook file (compiled from its text, read-only: no bytecode is written) and
    return its module. Its functions keep ``path`` as their file, so tracebacks name it."""
    path = Path(path).resolve()
    with open(path, "r", encoding="utf-8") as f:
        source = f.read()
    module = types.ModuleType(f"scratchvae_workbook_{path.stem}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    return module


def is_stub(function):
    """True for a body that only raises NotImplementedError (what :func:`start` wrote)."""
    code = getattr(function, "__code__", None)
    return code is not None and "NotImplementedError" in code.co_names and set(code.co_names) <= {
        "NotImplementedError"}
