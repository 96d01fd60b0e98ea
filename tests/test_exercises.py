"""The exercises: a workbook made from the library's own functions, and a grader that runs the
project's checks on a student's versions, names known mistakes, and survives hostile code.

Workbooks are real files and grading runs the real command in a subprocess (as a student would);
the catalogue's own consistency and the tolerances are tested in this process."""
import ast
import contextlib
import hashlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import exercise_other_forms as other_forms
from scratchvae.exercises import catalog, grader, whole_model, workbook

ROOT = Path(__file__).resolve().parents[1]
AVAILABLE = [e for e in catalog.EXERCISES if e.library_function() is not None]


def _cli(*args, timeout=180):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "scratchvae", "exercises", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def _main(capsys, *argv):
    """The command in this process (for the quick error paths): (status, stdout, stderr)."""
    from scratchvae.cli import main

    status = main(["exercises", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def _hashes(folder, pattern="**/*"):
    """{relative path: sha256} of every file under ``folder`` (outside __pycache__)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).glob(pattern)) if p.is_file() and "__pycache__" not in p.parts}


def _filled(folder, pick):
    """A workbook whose exercises hold ``pick(exercise)`` (a function; None leaves the stub)."""
    workbook.start(folder)
    for e in AVAILABLE:
        function = pick(e)
        if function is not None:
            workbook.write_solution(folder, e.name, function)
    return folder


def _sections(stdout):
    """{exercise name: its report (first line and the indented lines under it)}."""
    out, name = {}, None
    for line in stdout.splitlines():
        m = re.match(r"  (\w+)\s", line)
        if m and m.group(1) in catalog.NAMES:
            name = m.group(1)
            out[name] = line
        elif name and line.startswith("      "):
            out[name] += "\n" + line
        else:
            name = None
    return out


def _valid_gradescope(path):
    """results.json as Gradescope's autograder specification describes it
    (https://gradescope-autograders.readthedocs.io/en/latest/specs/): a top-level score, and tests
    each with a name, a score, a max_score, an output and a status of passed or failed."""
    data = json.loads(Path(path).read_text())
    assert set(data) <= {"score", "execution_time", "output", "visibility", "stdout_visibility",
                         "extra_data", "tests", "leaderboard"}
    assert isinstance(data["tests"], list) and data["tests"]
    for t in data["tests"]:
        assert set(t) <= {"score", "max_score", "status", "name", "name_format", "number", "output",
                          "output_format", "tags", "visibility", "extra_data"}
        assert isinstance(t["name"], str) and isinstance(t["output"], str) and isinstance(t["number"], str)
        assert isinstance(t["score"], float) and isinstance(t["max_score"], float)
        assert t["status"] in ("passed", "failed") and 0 <= t["score"] <= t["max_score"]
    assert data["score"] == sum(t["score"] for t in data["tests"])
    return data


# -- the workbook -------------------------------------------------------------------------------
def test_start_writes_the_library_functions_without_their_bodies(tmp_path):
    """One file per topic in lesson order; each exercise has the library function's signature and
    docstring, a body that raises NotImplementedError, and a comment with its lesson and check."""
    result = _cli("start", tmp_path / "w")
    assert result.returncode == 0, result.stderr
    files = [f for f in catalog.FILES if any(e.file == f for e in AVAILABLE)]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(files)
    assert [f[:2] for f in files] == sorted(f[:2] for f in files)          # lesson order
    for e in AVAILABLE:
        text = (tmp_path / "w" / e.file).read_text()
        assert f"# {e.name}: taught in lesson {e.lesson} ({catalog.LESSONS[e.lesson]})" in text
        assert f"# Check it: scratchvae exercises check {tmp_path / 'w'} {e.name}" in text
        stub = getattr(workbook.load_file(tmp_path / "w" / e.file), e.name)
        library = inspect.unwrap(e.library_function())
        assert inspect.signature(stub) == inspect.signature(library)
        assert stub.__doc__ == library.__doc__ and library.__doc__
        assert workbook.is_stub(stub)
        with pytest.raises(NotImplementedError, match=e.name):
            e.call(stub, e.cases()[0])
    assert not list((tmp_path / "w").glob("__pycache__"))


def test_start_writes_docstrings_with_backslashes_as_raw_strings(tmp_path):
    """The library's docstrings write their math as LaTeX (``\\frac``, ``\\log``): a stub keeps
    them raw, so every workbook file compiles without an invalid-escape warning and no
    ``\\f`` or ``\\t`` turns into a control character."""
    import warnings

    workbook.start(tmp_path)
    raw = 0
    for path in sorted(tmp_path.glob("*.py")):
        text = path.read_text()
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # an invalid escape warns (SyntaxWarning in 3.12)
            tree = compile(text, str(path), "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node, clean=False):
                source = ast.get_source_segment(text, node.body[0].value)
                if "\\" in source:
                    assert source.startswith(("r\"", "r'")), f"{path.name}: {node.name}"
                    raw += 1
                assert not re.search(r"[\x00-\x09\x0b-\x1f]", ast.get_docstring(node) or "")
    assert raw >= 10                                # the formulas of lessons 00 to 08


def test_start_never_overwrites_a_workbook(tmp_path, capsys):
    assert _main(capsys, "start", tmp_path)[0] == 0
    (tmp_path / "05_kl.py").write_text("# my answers\n")
    before = _hashes(tmp_path)
    status, _, err = _main(capsys, "start", tmp_path)
    assert status == 1 and "_backprop.py' already exists" in err and "never overwrites" in err
    assert _hashes(tmp_path) == before


def test_check_needs_a_workbook_and_known_names(tmp_path, capsys):
    status, _, err = _main(capsys, "check", tmp_path / "nothing")
    assert status == 1 and "exercises start" in err
    workbook.start(tmp_path / "w")
    status, _, err = _main(capsys, "check", tmp_path / "w", "no_such_exercise")
    assert status == 1 and "no exercise called 'no_such_exercise'" in err
    status, out, _ = _main(capsys, "check", tmp_path / "w", "pca", "logsumexp")   # parsed, not run
    assert status == 1 and "2 not implemented" in out


# -- grading whole workbooks ----------------------------------------------------------------------
def test_a_fresh_workbook_is_not_implemented(tmp_path):
    _cli("start", tmp_path)
    result = _cli("check", tmp_path)
    assert result.returncode == 1, result.stderr
    sections = _sections(result.stdout)
    assert set(sections) == set(catalog.NAMES)
    for e in AVAILABLE:
        assert "not implemented" in sections[e.name].splitlines()[0]
    assert "not implemented" in sections[catalog.WHOLE_MODEL]
    assert f"{len(AVAILABLE) + 1} not implemented" in result.stdout


def test_a_workbook_of_the_library_functions_passes_and_grading_changes_nothing(tmp_path, capsys):
    """The library's own source in every exercise: every exercise and the whole model pass, exit
    status 0; the workbook and the library's files are byte for byte what they were, and no
    __pycache__ appears in the workbook."""
    folder = _filled(tmp_path / "w", lambda e: e.library_function())
    workbook_before, library_before = _hashes(folder), _hashes(ROOT / "scratchvae")
    status, out, err = _main(capsys, "check", folder, "--json", tmp_path / "results.json")
    assert status == 0, out + err
    sections = _sections(out)
    for name in [e.name for e in AVAILABLE] + [catalog.WHOLE_MODEL]:
        assert re.match(rf"  {name}\s+passed\s", sections[name]), sections[name]
    data = _valid_gradescope(tmp_path / "results.json")
    assert data["score"] == len(AVAILABLE) + 1 and all(t["status"] == "passed" for t in data["tests"])
    assert _hashes(folder) == workbook_before and not list(folder.rglob("__pycache__"))
    assert _hashes(ROOT / "scratchvae") == library_before
    assert re.search(r"score \d+/\d+: \d+ passed; graded in [\d.]+ s", out)


@pytest.fixture(scope="module")
def wrong_workbook(tmp_path_factory):
    """Every exercise holding its first known mistake, graded once (with --json) by the command
    run in this process (each exercise still in a child process of its own)."""
    from scratchvae.cli import main

    folder = _filled(tmp_path_factory.mktemp("wrong") / "w", lambda e: e.mistakes[0].body)
    results = folder.parent / "results.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["exercises", "check", str(folder), "--json", str(results)])
    return status, _sections(out.getvalue()), _valid_gradescope(results)


@pytest.mark.parametrize("name", [e.name for e in catalog.EXERCISES])
def test_the_first_known_mistake_of_every_exercise_is_named(wrong_workbook, name):
    exercise = catalog.get(name)
    if exercise.library_function() is None:
        pytest.skip(f"{exercise.target} is not in this version of the library")
    status, sections, data = wrong_workbook
    assert status == 1
    assert re.match(rf"  {name}\s+FAILED\s", sections[name]), sections[name]
    assert f"known mistake: {exercise.mistakes[0].says}" in sections[name]
    test = next(t for t in data["tests"] if t["name"].startswith(name + " "))
    assert test["status"] == "failed" and test["score"] == 0 and exercise.mistakes[0].says in test["output"]


def test_the_whole_model_fails_with_wrong_pieces(wrong_workbook):
    _, sections, _ = wrong_workbook
    assert re.match(rf"  {catalog.WHOLE_MODEL}\s+FAILED\s", sections[catalog.WHOLE_MODEL])
    assert "pieces that fail their own checks" in sections[catalog.WHOLE_MODEL]


# -- hostile code ---------------------------------------------------------------------------------
def _replace_body(folder, name, body):
    path = folder / catalog.get(name).file
    text = path.read_text()
    stub = f'    raise NotImplementedError("{name}: write its body")'
    assert stub in text
    path.write_text(text.replace(stub, body))
    return path


def test_a_hang_an_exception_a_wrong_shape_and_a_wrong_dtype_each_say_so(tmp_path):
    """An infinite loop stops at the time limit and the next exercises are still graded; an
    exception names the student's file, line and code; a wrong shape or dtype is named; a
    process that exits, and a file that does not parse, are reported as such."""
    folder = tmp_path / "w"
    workbook.start(folder)
    _replace_body(folder, "relu_backward", "    while True:\n        pass")
    workbook.write_solution(folder, "tanh_backward", catalog.get("tanh_backward").library_function())
    _replace_body(folder, "sigmoid_backward", "    return y > 0")
    path = _replace_body(folder, "kl_standard_normal", "    total = (mu * mu).sum(axis=3)\n    return total")
    line = path.read_text().splitlines().index("    total = (mu * mu).sum(axis=3)") + 1
    _replace_body(folder, "reparameterize", "    return (mu + np.exp(logvar / 2) * eps).sum()")
    _replace_body(folder, "softplus_backward", "    import os\n    os._exit(3)")
    pca = _replace_body(folder, "pca", "    return x.mean(axis=0),, None")
    result = _cli("check", folder, "relu_backward", "tanh_backward", "sigmoid_backward", "softplus_backward",
                  "kl_standard_normal", "reparameterize", "pca", "--timeout", 3)
    assert result.returncode == 1
    s = _sections(result.stdout)
    assert "relu_backward did not finish within 3 s, the time limit of one exercise" in s["relu_backward"]
    assert re.match(r"  tanh_backward\s+passed", s["tanh_backward"])
    assert "da has dtype bool, expected float64" in s["sigmoid_backward"]
    assert "raised AxisError: axis 3 is out of bounds" in s["kl_standard_normal"]
    assert f"at {path}:{line}: total = (mu * mu).sum(axis=3)" in s["kl_standard_normal"]
    assert "z has shape (), expected (4, 3)" in s["reparameterize"]
    assert "the grading process ended (exit code 3) before reporting" in s["softplus_backward"]
    assert f"{pca} does not load: SyntaxError" in s["pca"] and "return x.mean(axis=0),, None" in s["pca"]
    assert "Traceback" not in result.stdout + result.stderr


# -- from Python (a notebook) ---------------------------------------------------------------------
def kl_standard_normal_grad(mu, logvar):
    """A student's version, as a notebook would define it: the 1/2 forgotten."""
    return mu, np.exp(logvar) - 1.0


def test_check_from_python_grades_the_callers_function(capsys):
    from scratchvae.exercises import check

    result = check("kl_standard_normal_grad")             # this module's function of that name
    out = capsys.readouterr().out
    assert result["status"] == "failed" and "known mistake: the missing 1/2 in d/dlogvar" in out
    assert check("kl_standard_normal_grad", other_forms.kl_standard_normal_grad)["status"] == "passed"


# -- the catalogue and the tolerances, in this process ------------------------------------------
@pytest.mark.parametrize("name", [e.name for e in AVAILABLE])
def test_every_known_mistake_fails_and_is_told_apart(name):
    """Each known mistake gives outputs that fail the comparison with the library's, and no two
    mistakes of one exercise give the same outputs (so the grader can only name the right one)."""
    e = catalog.get(name)
    with np.errstate(all="ignore"):
        expected = grader.run_trusted(e, e.library_function())
        runs = [grader.run_trusted(e, m.body) for m in e.mistakes]
        assert e.mistakes and all(r is not None for r in runs), "a mistake that does not run"
        for mistake, received in zip(e.mistakes, runs):
            assert not grader._outputs_check(e, expected, received)["passed"], mistake.says
            assert grader.diagnose(e, expected, received) == [f"known mistake: {mistake.says}"]


def _energies(logp0, p0, logp1, p1):
    return -logp0 + 0.5 * (p0 ** 2).sum(axis=1), -logp1 + 0.5 * (p1 ** 2).sum(axis=1)


def test_a_known_mistake_beside_a_nan_is_still_named():
    """The first acceptance probability a student writes often has two mistakes: the energies
    reversed and diverged chains left as nan. Its outputs equal no known mistake everywhere, so
    the grader names the reversal from the inputs without a nan, and says where the nan is."""
    e = catalog.get("hmc_accept_prob")

    def reversed_unguarded(logp0, p0, logp1, p1):
        h0, h1 = _energies(logp0, p0, logp1, p1)
        return np.minimum(1.0, np.exp(h1 - h0))

    def guarded_but_wrong_elsewhere(logp0, p0, logp1, p1):      # no known mistake: none is named
        h0, h1 = _energies(logp0, p0, logp1, p1)
        return np.where(np.isfinite(h1), np.minimum(1.0, np.exp(h0 - h1)) * 0.9, np.nan)

    with np.errstate(all="ignore"):
        expected = grader.run_trusted(e, e.library_function())
        lines = grader.diagnose(e, expected, grader.run_student(e, reversed_unguarded, {}))
        assert lines == ["known mistake: the energies' difference reversed: a = min(1, exp(H(z, p) - "
                         "H(z', p'))), start minus end; and a nan or inf where the value is finite, on "
                         "'diverged chains (log p = -inf, nan)'"]
        other = grader.diagnose(e, expected, grader.run_student(e, guarded_but_wrong_elsewhere, {}))
        assert not any("known mistake" in line for line in other), other


def test_a_value_lost_as_nan_or_as_inf_is_the_same_mistake():
    """The Bernoulli log-likelihood from probabilities, written with 1 / (1 + exp(-l)) rather
    than the library's sigmoid, loses the same values at logits of +-40 as the known mistake,
    one of them as nan where the mistake's is -inf: it is that mistake."""
    e = catalog.get("bernoulli_log_likelihood")

    def from_probabilities(x, logits):
        p = 1 / (1 + np.exp(-logits))
        return np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)

    with np.errstate(all="ignore"):
        expected = grader.run_trusted(e, e.library_function())
        received = grader.run_student(e, from_probabilities, {})
        mistake = grader.run_trusted(e, e.mistakes[1].body)
        lost = [np.flatnonzero(~np.isfinite(r["log_likelihood"])).tolist() for r in received]
        assert any(lost) and lost == [np.flatnonzero(~np.isfinite(m["log_likelihood"])).tolist()
                                      for m in mistake]
        assert not all(np.array_equal(r["log_likelihood"], m["log_likelihood"], equal_nan=True)
                       for r, m in zip(received, mistake))             # nan here, -inf there
        assert grader.diagnose(e, expected, received) == [f"known mistake: {e.mistakes[1].says}"]


@pytest.mark.parametrize("name", [e.name for e in AVAILABLE])
def test_correct_pieces_written_another_way_pass(name):
    """The outputs tolerance leaves room for other correct forms of each formula, and so does the
    gradient check (the derivation checks have their own thresholds)."""
    e, function = catalog.get(name), getattr(other_forms, name)
    with np.errstate(all="ignore"):
        outputs = grader._outputs_check(e, grader.run_trusted(e, e.library_function()),
                                        grader.run_student(e, function, {}))
        assert outputs["passed"] and outputs["worst"] < 1e-10, outputs      # 100 times inside OUTPUT_TOL
        if e.gradient is not None:
            gradient = grader._gradient_check(e, function, {})
            assert gradient["passed"], gradient


def test_the_whole_model_passes_pieces_written_another_way_and_fails_one_wrong_piece():
    pieces = {e.name: getattr(other_forms, e.name) for e in AVAILABLE}
    with np.errstate(all="ignore"):
        result = whole_model.grade(pieces, {})
    assert result["status"] == "passed", result["checks"]
    assert max(c["worst"] for c in result["checks"]) < 1e-12          # far inside the 1e-9
    with np.errstate(all="ignore"):
        wrong = whole_model.grade({**pieces, "adam_update": catalog.get("adam_update").mistakes[0].body}, {})
    assert wrong["status"] == "failed" and min(c["worst"] for c in wrong["checks"] if not c["passed"]) > 1e-3


def test_patching_reaches_every_module_and_default_argument_and_is_undone():
    """The student's function replaces the library's wherever a loaded module holds it (the
    derivation checks' default arguments too), and everything is restored afterwards."""
    from scratchvae import distributions, vae
    from scratchvae.derivations import note003

    original = distributions.kl_standard_normal_grad
    def mine(mu, logvar):
        return mu, mu
    with grader.patched({id(original): (original, mine)}):
        assert distributions.kl_standard_normal_grad is mine and vae.kl_standard_normal_grad is mine
        assert inspect.signature(note003.kl_gradient).parameters["grad"].default is mine
    assert distributions.kl_standard_normal_grad is original and vae.kl_standard_normal_grad is original
    assert inspect.signature(note003.kl_gradient).parameters["grad"].default is original


def _sleep_gradient_stand_in(z, mu, logvar):
    """d/dmu and d/dlogvar of -1/n sum_i log N(z_i; mu_i, diag(exp(logvar_i))): a stand-in for
    scratchvae.models.wake_sleep.sleep_gradient where this version of the library lacks it."""
    dmu = (z - mu) * np.exp(-logvar)
    return -dmu / z.shape[0], -0.5 * ((z - mu) * dmu - 1.0) / z.shape[0]


def test_the_sleep_gradient_exercise_is_graded_once_the_library_has_it(monkeypatch):
    """Skipped (not in the workbook, not graded) while the library lacks the function; with it,
    the right gradient passes every check and each known mistake is named."""
    from scratchvae.models import wake_sleep

    e = catalog.get("sleep_gradient")
    if e.library_function() is None:
        monkeypatch.setattr(wake_sleep, "sleep_gradient", _sleep_gradient_stand_in, raising=False)
    with np.errstate(all="ignore"):
        assert grader.grade(e, _sleep_gradient_stand_in, {})["status"] == "passed"
        expected = grader.run_trusted(e, e.library_function())
        for mistake in e.mistakes:
            received = grader.run_trusted(e, mistake.body)
            assert grader.diagnose(e, expected, received) == [f"known mistake: {mistake.says}"]
