"""Every lesson runs top to bottom in fast mode, headless, and writes the figures it promises.

Each lesson is run as a student would run it (``python lessons/NN_name.py``), in a fresh
process with ``MPLBACKEND=Agg`` and ``SCRATCHVAE_FAST=1``, writing into a temporary folder.
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


def _run(path, out, *args, fast=True, timeout=120):
    # BLAS threads: the lesson applies the library's rule itself (lessons/_lesson.py)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    env.pop("SCRATCHVAE_FAST", None)
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


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_in_fast_mode_and_writes_its_figures(path, tmp_path):
    result = _run(path, tmp_path)
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "relative error" in result.stdout, "a lesson prints at least one check with its relative error"
    expected = sorted(f"{path.stem[:2]}_{stem}.png" for stem in FIGURES[path.stem])
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    for name in expected:
        image = imread(tmp_path / name)[..., :3]
        assert min(image.shape[:2]) > 150, f"{name} is suspiciously small: {image.shape}"
        assert image.std() > 0.05, f"{name} is nearly blank"


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
