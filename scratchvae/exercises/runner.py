"""Grading a workbook, or functions from a notebook: one child process per exercise, a time limit
on each, a report that names what is wrong, and Gradescope's ``results.json``.

The command never runs the student's code itself. It imports the library and its checks once,
then forks a child per exercise (copy-on-write, so a child starts in milliseconds); the child
reads the workbook file, patches, grades, sends its result back through a pipe and ends, taking
every patch with it. A child that passes the time limit is killed and the next exercise is
graded in a new one; a child that dies (a crash in the code under test) is reported as such.
Where ``fork`` does not exist, each child is spawned instead (slower: it imports the library).
"""
import ast
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog
from .workbook import WorkbookError, check_folder, is_stub, load_file

DEFAULT_TIMEOUT = 30.0
STATUS = {"passed": "passed", "failed": "FAILED", "not implemented": "not implemented", "skipped": "skipped"}


# ---------------------------------------------------------------------------------------
# In the child
# ---------------------------------------------------------------------------------------
def _load(directory, display, files_wanted):
    """Run the workbook files: ``({name: function}, {path: shown name}, {file: problem})``."""
    functions, files, problems = {}, {}, {}
    for f in files_wanted:
        path = (Path(directory) / f).resolve()
        shown = str(Path(display) / f)
        if not path.is_file():
            problems[f] = f"{shown} is missing"
            continue
        files[str(path)] = shown
        try:
            module = load_file(path)
        except SyntaxError as e:
            problems[f] = (f"{shown} does not load: {type(e).__name__}: {e.msg}\n    at {shown}:{e.lineno}: "
                           f"{(e.text or '').strip()}")
            continue
        except BaseException as e:       # noqa: B902 (the student's module-level code)
            from .grader import explain
            problems[f] = f"{shown} does not load: " + explain(e, files)[0]
            continue
        functions.update({k: v for k, v in vars(module).items()      # defined there, not imported
                          if k in catalog.BY_NAME and callable(v) and getattr(v, "__module__", None) == module.__name__})
    return functions, files, problems


def _run_job(job):
    """Grade one exercise as the job says; returns the result dict."""
    from . import grader, whole_model

    name = job["name"]
    if job.get("functions") is not None:
        functions, files, problems = job["functions"], job["files"], {}
    else:
        wanted = catalog.FILES if name == catalog.WHOLE_MODEL else (catalog.get(name).file,)
        functions, files, problems = _load(job["directory"], job["display"], wanted)
    if name == catalog.WHOLE_MODEL:
        pieces = {n: f for n, f in functions.items()
                  if catalog.BY_NAME[n].library_function() is not None and not is_stub(f)}
        result = whole_model.grade(pieces, files)
        result["diagnosis"] += [p for p in problems.values() if "missing" not in p]
        return result
    exercise = catalog.get(name)
    if exercise.file in problems:
        missing = "missing" in problems[exercise.file]
        return {"name": name, "status": "not implemented" if missing else "failed", "rel_error": None,
                "checks": [], "diagnosis": [problems[exercise.file]]}
    function = functions.get(name)
    if function is None:
        return {"name": name, "status": "not implemented", "rel_error": None, "checks": [],
                "diagnosis": [f"no function {name} in {exercise.file}"]}
    return grader.grade(exercise, function, files)


def _child(connection, job):
    """The child's whole life: grade, send the result, end."""
    import numpy as np

    sys.dont_write_bytecode = True          # nothing compiled here is written anywhere
    np.seterr(all="ignore")
    warnings.simplefilter("ignore")
    printed = io.StringIO()
    sys.stdout = sys.stderr = printed       # what the student's code prints is shown in the report
    try:
        result = _run_job(job)
    except BaseException:                   # noqa: B902 (a fault of the grader itself: say so)
        result = {"name": job["name"], "status": "failed", "rel_error": None, "checks": [],
                  "diagnosis": ["the grader failed:\n" + traceback.format_exc(limit=-3)]}
    result["printed"] = printed.getvalue()[-2000:]
    connection.send(result)
    connection.close()


# ---------------------------------------------------------------------------------------
# In the command
# ---------------------------------------------------------------------------------------
def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def default_workers():
    """Children at once: one per core, at most two (each runs one BLAS thread)."""
    return max(1, min(2, os.cpu_count() or 1))


def _failed(name, message):
    return {"name": name, "status": "failed", "rel_error": None, "checks": [], "diagnosis": [message]}


class _Child:
    """One grading child: its process, the pipe it answers on, and when it started."""

    def __init__(self, ctx, index, job):
        self.index, self.job = index, job
        self.receive, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_child, args=(send, job), daemon=True)
        self.started = time.perf_counter()
        self.process.start()
        send.close()

    def result(self):
        """The child's answer, or what its death means."""
        try:
            return self.receive.recv()
        except EOFError:
            self.process.join(5)
            return _failed(self.job["name"], f"the grading process ended (exit code {self.process.exitcode}) "
                                             f"before reporting: did the code under test crash or call exit()?")

    def stop(self):
        self.process.kill()

    def close(self):
        self.receive.close()
        self.process.join(5)


def run_jobs(jobs, timeout, workers=None, done=None):
    """Grade every job (a dict, or a ready result for what needs no child) with up to ``workers``
    children at once, each killed after ``timeout`` seconds; ``done(index, result)`` is called
    in order as results arrive. Returns the results in order."""
    ctx = _context()
    workers = workers or default_workers()
    results, running, queue, shown = [None] * len(jobs), [], list(enumerate(jobs)), 0
    while queue or running:
        while queue and len(running) < workers:
            index, job = queue.pop(0)
            if "status" in job:                               # settled without running anything
                results[index] = job
            elif ctx.get_start_method() != "fork" and job.get("functions") is not None:
                t = time.perf_counter()                       # a notebook's functions cannot be spawned
                results[index] = {**_run_job(job), "time": time.perf_counter() - t}
            else:
                running.append(_Child(ctx, index, job))
        if running:
            now = time.perf_counter()
            wait = max(0.0, min(c.started + timeout for c in running) - now)
            ready = multiprocessing.connection.wait([c.receive for c in running], timeout=wait)
            for child in list(running):
                elapsed = time.perf_counter() - child.started
                if child.receive in ready:
                    result = child.result()
                elif elapsed >= timeout:
                    child.stop()
                    name = child.job["name"]
                    result = _failed(name, f"{name} did not finish within {timeout:g} s, the time limit of one "
                                           f"exercise (--timeout): an infinite loop, or far too much work?")
                else:
                    continue
                child.close()
                running.remove(child)
                results[child.index] = {**result, "time": elapsed}
        while shown < len(jobs) and results[shown] is not None:
            if done is not None:
                done(shown, results[shown])
            shown += 1
    return results


def stub_in_file(path, name):
    """True when the file's last top-level binding of ``name`` is the untouched stub that
    :func:`~.workbook.start` wrote (found by parsing the file, which runs none of it)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    last = None
    for node in tree.body:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            targets = [(a.asname or a.name).partition(".")[0] for a in node.names]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            nodes = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [n.id for t in nodes for n in ast.walk(t) if isinstance(n, ast.Name)]
        else:
            targets = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        if name in targets:
            last = node
    if not isinstance(last, ast.FunctionDef) or last.decorator_list:
        return False
    body = last.body[1:] if (last.body and isinstance(last.body[0], ast.Expr)
                             and isinstance(last.body[0].value, ast.Constant)) else last.body
    return (len(body) == 1 and isinstance(body[0], ast.Raise) and isinstance(body[0].exc, ast.Call)
            and getattr(body[0].exc.func, "id", None) == "NotImplementedError")


def _prepare():
    """Import in the command what every child needs, so that forked children start at once."""
    import scratchvae.derivations  # noqa: F401  (every derivation module, scipy with them)

    from . import grader, whole_model  # noqa: F401


def _job(name, directory, functions, files):
    """What grading ``name`` takes: a dict for a child, or a settled result."""
    exercise = catalog.BY_NAME.get(name)
    if exercise is not None and exercise.library_function() is None:
        return {"name": name, "status": "skipped", "rel_error": None, "checks": [], "time": 0.0,
                "diagnosis": [f"not in this version of the library ({exercise.target})"]}
    if directory is not None:
        folder = Path(directory)
        implemented = [e for e in ([exercise] if exercise else catalog.EXERCISES)
                       if e.library_function() is not None and (folder / e.file).is_file()
                       and not stub_in_file(folder / e.file, e.name)]
        if not implemented:
            missing = exercise is not None and not (folder / exercise.file).is_file()
            return {"name": name, "status": "not implemented", "rel_error": None, "checks": [], "time": 0.0,
                    "diagnosis": [f"{folder / exercise.file} is missing"] if missing else []}
    return {"name": name, "directory": str(directory) if directory is not None else None,
            "display": str(directory) if directory is not None else "", "functions": functions, "files": files}


@dataclass
class Report:
    """The results of one grading, in order, and how long it took."""
    results: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def graded(self):
        return [r for r in self.results if r["status"] != "skipped"]

    @property
    def score(self):
        return sum(r["score"] for r in self.graded)

    @property
    def all_passed(self):
        return all(r["status"] == "passed" for r in self.graded)

    def summary(self):
        counts = {s: sum(r["status"] == s for r in self.graded) for s in ("passed", "failed", "not implemented")}
        text = (f"score {self.score:g}/{len(self.graded)}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                + f"; graded in {self.seconds:.1f} s")
        skipped = [r["name"] for r in self.results if r["status"] == "skipped"]
        if skipped:
            text += f"\nnot in this version of the library, so not graded: {', '.join(skipped)}"
        return text


def result_lines(result):
    """The report of one exercise: a line, and under a failure what is wrong."""
    rel = result.get("rel_error")
    rel_text = f"rel err {rel:.1e}" if rel is not None else ""
    grad = next((c["worst"] for c in result["checks"] if c["check"] == "gradient check"), None)
    grad_text = f"grad {grad:.1e}" if grad is not None else ""
    lines = [f"  {result['name']:<30}{STATUS[result['status']]:<16}{rel_text:<17}{grad_text:<14}"
             f"{result.get('time', 0):5.2f} s   {result['score']:g}/{result['max_score']:g}"]
    detail = []
    if result["status"] in ("failed", "skipped") or (result["name"] == catalog.WHOLE_MODEL):
        detail += [line for d in result["diagnosis"] for line in d.splitlines()]
        detail += [line for c in result["checks"] if not c["passed"] or result["name"] == catalog.WHOLE_MODEL
                   for line in f"{c['check']}: {c['detail']}".splitlines()]
    elif result["status"] == "not implemented" and result["diagnosis"]:
        detail += result["diagnosis"]
    printed = result.get("printed", "").strip().splitlines()
    if printed:
        detail += ["it printed:"] + ["  " + line for line in printed[-5:]]
    return lines + ["      " + line for line in detail]


def grade(names=None, directory=None, functions=None, files=None, timeout=DEFAULT_TIMEOUT, out=None,
          workers=None):
    """Grade exercises ``names`` (default: all, then ``whole_model``) of the workbook in
    ``directory``, or the given ``functions`` ({name: function}, shown files ``files``), each in
    a child process limited to ``timeout`` seconds, up to ``workers`` at once; print each
    exercise's report to ``out`` (default: standard output) in order as it comes. Returns a
    :class:`Report`."""
    out = out or sys.stdout
    names = list(names or catalog.NAMES)
    for name in names:
        if name != catalog.WHOLE_MODEL:
            catalog.get(name)               # an unknown name is an error before anything runs
    if directory is not None:
        check_folder(directory)
    start = time.perf_counter()
    jobs = [_job(name, directory, functions, files) for name in names]
    if any("status" not in job for job in jobs):
        _prepare()
    report = Report()
    heading = [None]

    def show(index, result):
        name = names[index]
        exercise = catalog.BY_NAME.get(name)
        here = exercise.file if exercise else name
        if here != heading[0]:
            heading[0] = here
            print(f"\n{exercise.file} (lesson {exercise.lesson}, {catalog.LESSONS[exercise.lesson]})" if exercise
                  else "\nthe whole model (your pieces together)", file=out)
        result["max_score"] = 0.0 if result["status"] == "skipped" else 1.0
        result["score"] = 1.0 if result["status"] == "passed" else 0.0
        if name == catalog.WHOLE_MODEL and result["status"] == "failed":
            failing = [r["name"] for r in report.results if r["status"] == "failed"]
            if failing:
                result["diagnosis"].append(f"pieces that fail their own checks: {', '.join(failing)}")
        report.results.append(result)
        print("\n".join(result_lines(result)), file=out, flush=True)

    run_jobs(jobs, timeout, workers, show)
    report.seconds = time.perf_counter() - start
    print("\n" + report.summary(), file=out, flush=True)
    return report


def gradescope(report):
    """The report in Gradescope's results.json format: top-level ``score``, ``execution_time``,
    ``output`` and ``tests``, each test with ``name``, ``number``, ``score``, ``max_score``,
    ``status`` ('passed' or 'failed') and ``output`` (the format is specified in Gradescope's
    "Autograder Specifications", https://gradescope-autograders.readthedocs.io/en/latest/specs/).
    Exercises the library does not have yet are left out."""
    tests = []
    for i, r in enumerate(report.graded, 1):
        exercise = catalog.BY_NAME.get(r["name"])
        lesson = f" (lesson {exercise.lesson})" if exercise else ""
        tests.append({"name": r["name"] + lesson, "number": str(i), "score": r["score"],
                      "max_score": r["max_score"], "status": "passed" if r["status"] == "passed" else "failed",
                      "output": "\n".join(line.strip() for line in result_lines(r))})
    return {"score": report.score, "execution_time": round(report.seconds, 2), "output": report.summary(),
            "tests": tests}


def write_json(report, path):
    """Write :func:`gradescope` of the report to ``path`` (through a temporary file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(gradescope(report), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check(name, function=None, timeout=DEFAULT_TIMEOUT, _caller=None):
    """Grade one exercise from Python (a notebook): the function called ``name`` in the caller's
    namespace, or ``function``; for ``"whole_model"`` every function there named like an
    exercise. Prints the same report as ``scratchvae exercises check`` and returns the result."""
    import inspect

    namespace = _caller if _caller is not None else inspect.currentframe().f_back.f_globals
    if name == catalog.WHOLE_MODEL:
        functions = {n: namespace[n] for n in catalog.BY_NAME if callable(namespace.get(n))}
    else:
        catalog.get(name)
        function = function if function is not None else namespace.get(name)
        if not callable(function):
            raise WorkbookError(f"there is no function called {name} here: define it, or pass it: "
                                f"check({name!r}, my_function)")
        functions = {name: function}
    files = {}
    for f in functions.values():
        path = getattr(getattr(f, "__code__", None), "co_filename", "<unknown>")
        files[path] = Path(path).name if os.path.isabs(path) else path
    return grade([name], functions=functions, files=files, timeout=timeout).results[0]
