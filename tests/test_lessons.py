"""Every lesson runs top to bottom in fast mode, headless, and writes the figures it promises.

Each lesson runs as a notebook, as a student opens it in Jupyter: jupytext turns the
percent-format script into a notebook and nbclient executes it cell by cell in a fresh Jupyter
kernel started in ``lessons/``, with ``MPLBACKEND=Agg``, ``SCRATCHVAE_FAST=1`` and
``SCRATCHVAE_LESSONS_OUT`` naming a temporary folder for the figures. A notebook runs the same
code as the script, in the same order, so one run covers both ways of running a lesson except
for the script's command-line options; those are covered by running scripts: one lesson with
every option (``test_lesson_runs_as_a_script_with_its_options``) and the full-mode lessons
without their data (``--data-dir``). Running every lesson twice would double the suite's
longest part for no other gain. Without nbclient and ipykernel (``pip install -e ".[test]"``
brings them) the lessons run as scripts instead, so they are never left untested.

A lesson stops with an error when one of its own checks (an identity, a gradient check)
fails, so a passing run also means every printed check held.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

try:
    import ipykernel  # noqa: F401  (the kernel nbclient starts)
    import jupytext
    import nbclient
except ImportError:         # the lessons then run as scripts (see the module docstring)
    nbclient = None

ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))

# The figures each lesson writes, as <NN>_<stem>.png in its output folder.
FIGURES = {
    "00_backprop_and_gradient_checks": ["gradient_checks"],
    "01_latent_variable_models": ["ancestral_sampling"],
    "02_mixture_of_gaussians": ["em"],
    "03_deep_latent_variable_model": ["infinite_mixture"],
    "04_autoencoders_and_pca": ["autoencoder_vs_pca"],
    "05_variational_inference": ["elbo_decomposition"],
    "06_reparameterization": ["sampling_blocks_gradient", "estimators", "note002_spread"],
    "07_vae_mnist": ["elbo_curves", "manifold", "samples"],
    "08_vae_frey_face": ["manifold", "training", "variance_collapse"],
    "09_importance_sampling": ["lk_vs_k"],
    "10_gpu": ["timing"],
    "11_wake_sleep": ["aevb_vs_wake_sleep"],
    "12_posterior_sampling": ["hmc_vs_grid", "estimator", "mcem"],
}
# Lessons that need a data set in full mode.
NEEDS_DATA = ["07_vae_mnist", "08_vae_frey_face", "09_importance_sampling", "11_wake_sleep",
              "12_posterior_sampling"]


def _env(**extra):
    """The environment of a lesson run: headless, this checkout's package first, no stray fast flag."""
    env = dict(os.environ, MPLBACKEND="Agg", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _run_notebook(path, out, timeout=300):
    """Execute the lesson as a notebook in fast mode, figures into ``out``; returns its printed text."""
    notebook = jupytext.read(path)
    env = _env(SCRATCHVAE_FAST="1", SCRATCHVAE_LESSONS_OUT=str(out))
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(LESSONS_DIR)}})
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed as a notebook:\n{str(err)[-4000:]}")
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []))


def _run(path, out, *args, fast=True, timeout=120):
    # BLAS threads: the lesson applies the library's rule itself (lessons/_lesson.py)
    env = _env()
    env.pop("SCRATCHVAE_FAST", None)
    env.pop("SCRATCHVAE_LESSONS_OUT", None)
    if fast:
        env["SCRATCHVAE_FAST"] = "1"
    return subprocess.run([sys.executable, str(path), "--out", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_lesson_is_known_and_in_the_readme():
    readme = (LESSONS_DIR / "README.md").read_text()
    for path in LESSONS:
        assert path.stem in FIGURES, f"{path.name}: add its figures to FIGURES"
        assert path.name in readme, f"{path.name} is missing from lessons/README.md"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_is_a_percent_format_notebook(path):
    """Opens as a notebook: a title cell first, then code and text cells (jupytext's percent format)."""
    text = path.read_text()
    assert text.startswith("# %% [markdown]\n# # Lesson "), "the first cell must be the title"
    cells = re.findall(r"^# %%( \[markdown\])?$", text, flags=re.M)
    assert cells.count(" [markdown]") >= 2 and cells.count("") >= 2
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}


def _check_figures(path, out):
    expected = sorted(f"{path.stem[:2]}_{stem}.png" for stem in FIGURES[path.stem])
    assert sorted(p.name for p in out.iterdir()) == expected
    for name in expected:
        image = imread(out / name)[..., :3]
        assert min(image.shape[:2]) > 150, f"{name} is suspiciously small: {image.shape}"
        assert image.std() > 0.05, f"{name} is nearly blank"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_as_a_notebook_in_fast_mode_and_writes_its_figures(path, tmp_path):
    if nbclient is not None:
        printed = _run_notebook(path, tmp_path)
    else:                                    # no Jupyter here: the same lesson as a script
        result = _run(path, tmp_path)
        assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        printed = result.stdout
    assert "fast mode" in printed
    assert "relative error" in printed, "a lesson prints at least one check with its relative error"
    _check_figures(path, tmp_path)


def test_lesson_runs_as_a_script_with_its_options(tmp_path):
    """The command line a student types: every option of lessons/_lesson.py, fast mode by flag."""
    path = LESSONS_DIR / "01_latent_variable_models.py"
    result = _run(path, tmp_path, "--fast", "--seed", "1", "--threads", "1", "--no-show", fast=False)
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert f"fast mode, figures in {tmp_path}" in result.stdout
    assert "relative error" in result.stdout
    _check_figures(path, tmp_path)


# Every lesson ends with exercises and a file of worked answers.
WITH_EXERCISES = [path.stem for path in LESSONS]


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_lesson_ends_with_exercises_and_their_answers(stem):
    text = (LESSONS_DIR / f"{stem}.py").read_text()
    headings = re.findall(r"^# ## (.+)$", text, flags=re.M)
    assert headings[-2:] == ["What to remember", "Exercises"], f"{stem}: ends with {headings[-2:]}"
    exercises = text[text.index("# ## Exercises"):]
    assert "scratchvae exercises start" in exercises and "scratchvae exercises check" in exercises
    items = re.findall(r"^# (\d)\. \*\*", exercises, flags=re.M)
    assert 2 <= len(items) <= 4 and items == [str(i + 1) for i in range(len(items))], items
    answers = LESSONS_DIR / "answers" / f"{stem}.md"
    assert f"lessons/answers/{stem}.md" in exercises, "the lesson says where its answers are"
    assert answers.is_file(), f"{answers} is missing"
    for i in items:
        assert re.search(rf"^## {i}\.", answers.read_text(), flags=re.M), f"{answers.name}: no answer {i}"


@pytest.mark.parametrize("stem", NEEDS_DATA)
def test_lesson_without_its_data_says_what_to_get(stem, tmp_path):
    """Full mode with an empty data folder: a message naming the data and how to get it, no traceback."""
    path = LESSONS_DIR / f"{stem}.py"
    if not path.exists():
        pytest.skip(f"{path.name} is not written yet")
    empty = tmp_path / "no-data"
    empty.mkdir()
    result = _run(path, tmp_path / "out", "--data-dir", str(empty), fast=False, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(empty) in result.stderr and "--fast" in result.stderr


# The errors of the lecture notes that the lessons point out, each quoted from the note exactly:
# (note, lesson, the note's text as the lesson quotes it).
NOTE_QUOTES = [
    ("000", "01_latent_variable_models", r"$$\mathbf{z} \sim \mathcal{N}(0, l)$$"),
    ("002", "03_deep_latent_variable_model",
     r"Problem: impossible to compute $p(x|z)$ for every $z$ ([computationally"),
    ("002", "05_variational_inference",
     r"$p_\theta (x^{(i)}) \geq \mathcal{L}(x^{(i)}, \theta, \phi)$"),
    ("003", "08_vae_frey_face",
     r"$$-\log(p(x^{(i)}|z^{(i)})) = \sum_{j=1}^D \frac{1}{2} \log(\sigma_{x_j}^2) + "
     r"\frac{(x_j^{(i)} - \mu_{x_j})^2}{2\sigma_{x_j}^2}$$"),
]
NOTES_DIR = Path(os.environ.get("SCRATCHVAE_NOTES_DIR") or ROOT.parents[1] / "shared" / "notes")


@pytest.mark.parametrize("note, stem, quote", NOTE_QUOTES, ids=[q[1] for q in NOTE_QUOTES])
def test_a_lesson_quotes_the_notes_exactly(note, stem, quote):
    lesson = (LESSONS_DIR / f"{stem}.py").read_text()
    assert quote in lesson and f"ote {note}" in lesson
    notes = sorted(NOTES_DIR.glob(f"{note}_*"))
    if not notes:
        pytest.skip(f"the lecture notes are not in {NOTES_DIR} (set SCRATCHVAE_NOTES_DIR)")
    assert quote in notes[0].read_text()
