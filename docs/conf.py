"""The course as a website: Sphinx, MyST-NB and the PyData theme.

Build it from the repository root (``pip install -e ".[docs]"`` first)::

    python3 -m sphinx -b html -j auto -c docs -d docs/_build/doctrees . docs/_build/html

The source folder is the repository itself, so that the lessons (``lessons/NN_*.py``), their
answers, the results pages and the benchmark page are read where they are and their relative
links stay true; ``include_patterns`` picks the pages. Every lesson is executed while the site
builds, in fast mode, in a Jupyter kernel started in ``lessons/``; a lesson that fails stops
the build with the lesson and the cell named. The local extension ``docs/_ext/coursesite.py``
serves MathJax from the site itself, writes the exercises from the workbook's catalog, and
points links to repository files at their page, their API reference or a download.
"""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))              # autodoc imports this checkout's scratchvae
sys.path.insert(0, str(HERE / "_ext"))

# What the lessons' kernels inherit: this checkout's package first, fast mode, figures into a
# folder of the build's own (the lessons also show them inline), and matplotlib's inline
# backend even when the calling shell asks for Agg (which would only save the figures).
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["SCRATCHVAE_FAST"] = "1"
if not os.environ.get("SCRATCHVAE_LESSONS_OUT"):
    os.environ["SCRATCHVAE_LESSONS_OUT"] = tempfile.mkdtemp(prefix="scratchvae-site-figures-")
    atexit.register(shutil.rmtree, os.environ["SCRATCHVAE_LESSONS_OUT"], ignore_errors=True)
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

project = "scratchvae"
author = "the scratchvae authors"
copyright = "scratchvae authors, MIT license"
release = version = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "coursesite",
]

# -- which files are pages ------------------------------------------------------------------
root_doc = "docs/index"
include_patterns = [
    "docs/*.md",
    "docs/api/*.md",
    "lessons/README.md",
    "lessons/[0-9][0-9]_*.py",
    "lessons/answers/*.md",
    "benchmarks/README.md",
]
exclude_patterns = ["docs/_build/**", "**/.ipynb_checkpoints"]

# -- MyST and MyST-NB -----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True             # $$...$$ inside a sentence (a quoted note) renders too
myst_heading_anchors = 3
myst_update_mathjax = False                 # MathJax 2 is configured below
nb_custom_formats = {".py": ["coursesite.read_lesson", {}]}
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_execution_in_temp = False                # the kernel starts in lessons/, where _lesson.py is
nb_merge_streams = True

# -- math: MathJax 2.7 copied from the jupyter-server-mathjax package into _static/mathjax ----
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": False,
        "processEnvironments": True,
    },
    "MMLorHTML": {"prefer": "HTML"},
    "HTML-CSS": {
        "availableFonts": [],
        "preferredFont": None,
        "webFont": "STIX-Web",
        "imageFont": None,
        "linebreaks": {"automatic": True},
        # MathJax measures against an empty font loaded from about:blank, which Chromium
        # refuses with a console error; a local() source that matches nothing measures the same.
        "styles": {"@font-face": {"font-family": "MathJax_Blank", "src": "local('MathJax_Blank')"}},
    },
    # displays start at the left edge, so that one wider than the column scrolls rather than
    # losing its left end; site.css centres those that fit
    "displayAlign": "left",
    "displayIndent": "0",
    "menuSettings": {"assistiveMML": False},
    "messageStyle": "none",
}

# -- API reference ---------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "scratchvae"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_favicon = "_static/favicon.svg"
html_extra_path = ["_extra"]                # index.html at the site's root: the start page
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_context = {"default_mode": "light"}
