"""What the course's site needs beyond Sphinx, MyST-NB and the theme (docs/conf.py loads it).

- :func:`read_lesson`: a percent-format lesson as a notebook for MyST-NB (jupytext), with the
  kernel named.
- The exercises, from the workbook's catalog (:mod:`scratchvae.exercises.catalog`) when the site
  builds, so the site never disagrees with the grader: the whole list on ``docs/exercises.md``
  (in place of its marker line), and each lesson's own, with the grading commands, at the end
  of the lesson.
- Links to repository files (``scratchvae/vae.py``, ``answers/``, ``results/figure3.json``): to the
  page when the file or folder is one (a folder's README), to the API reference when it is a
  documented module, otherwise a download of the file.
- A lesson that fails names the lesson and the cell (number, first lines, the error).
- MathJax 2.7 copied from the ``jupyter-server-mathjax`` package into ``_static/mathjax``: TeX input
  and HTML-CSS output with its STIX web fonts, nothing fetched from elsewhere.
"""
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import jupytext
from sphinx import addnodes
from sphinx.errors import ExtensionError, SphinxError
from sphinx.transforms import SphinxTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

LESSON_DOC = re.compile(r"^lessons/(\d\d)_[a-z0-9_]+$")
EXERCISES_MARKER = "<!-- the exercises, written from scratchvae/exercises/catalog.py when the site builds -->"
RESULTS_MARKER = "<!-- the files of docs/results/, listed when the site builds -->"
WORKBOOK = "my-workbook"
# Folders that a page links to and that are neither a page (a README) nor a documented package.
FOLDER_PAGES = {"lessons/answers": "docs/answers", "docs/results": "docs/results-data"}


# -- lessons as notebooks ----------------------------------------------------------------------
def read_lesson(text):
    """A percent-format lesson as a notebook, run by the python3 kernel, with the line where each
    cell starts in the file (``source_map``: MyST-NB's messages then give lines of the file)."""
    notebook = jupytext.reads(text, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith("# %%")]
    if len(starts) == len(notebook.cells):
        notebook.metadata["source_map"] = starts
    return notebook


# -- exercises from the catalog -----------------------------------------------------------------
def _lesson_titles(root):
    """{"06": "Lesson 6: the reparameterization trick", ...} from the lessons' title cells."""
    titles = {}
    for path in sorted((root / "lessons").glob("[0-9][0-9]_*.py")):
        match = re.search(r"^# # (Lesson .+)$", path.read_text(encoding="utf-8"), flags=re.M)
        titles[path.stem[:2]] = (path.stem, match.group(1) if match else path.stem)
    return titles


def _function_ref(target, api_modules):
    module = target.rpartition(".")[0]
    return f"{{py:func}}`~{target}`" if module in api_modules else f"`{target}`"


def _exercise_lines(exercise, api_modules):
    lines = [f"**`{exercise.name}`**: write {_function_ref(exercise.target, api_modules)} in "
             f"`{WORKBOOK}/{exercise.file}`; grade it with",
             "", "```bash", f"scratchvae exercises check {WORKBOOK} {exercise.name}", "```", "",
             f"The grader checks: {exercise.checks}."]
    if exercise.mistakes:
        lines += ["", "The mistakes it names:", ""]
        lines += [f"- {m.says}" for m in exercise.mistakes]
    return lines + [""]


def exercises_page(root, api_modules):
    """The Markdown of every exercise of the catalog, lesson by lesson."""
    from scratchvae.exercises import catalog

    lines = []
    for number, (stem, title) in _lesson_titles(root).items():
        mine = [e for e in catalog.EXERCISES if e.lesson == number]
        lines += [f"(exercises-{number})=", f"## {title}", "",
                  f"[The lesson](../lessons/{stem}.py) and its "
                  f"[worked answers](../lessons/answers/{stem}.md).", ""]
        if not mine:
            lines += ["This lesson's exercises are questions (and code built on earlier lessons' "
                      "functions), answered on the answers page; the workbook has no function of "
                      "its own for it.", ""]
        for exercise in mine:
            lines += _exercise_lines(exercise, api_modules)
    lines += ["(exercises-whole-model)=", "## Everything together", "",
              f"`{catalog.WHOLE_MODEL}`: every piece written, together: small VAEs trained on the "
              "digits must reach the library's held-out ELBO and L_10.", "",
              "```bash", f"scratchvae exercises check {WORKBOOK} {catalog.WHOLE_MODEL}", "```", ""]
    return "\n".join(lines)


def lesson_exercises_cell(number, stem, api_modules):
    """The percent-format cell appended to a lesson: its graded exercises and where the answers are."""
    from scratchvae.exercises import catalog

    mine = [e for e in catalog.EXERCISES if e.lesson == number]
    text = ["---", "", "**On this site.**"]
    if mine:
        names = " ".join(e.name for e in mine)
        text += [f"This lesson's code exercises, graded by `scratchvae exercises check {WORKBOOK} "
                 f"NAME` after `scratchvae exercises start {WORKBOOK}`:", ""]
        text += [f"- `{e.name}` ({_function_ref(e.target, api_modules)}): "
                 f"`scratchvae exercises check {WORKBOOK} {e.name}`" for e in mine]
        text += ["", f"All of them at once: `scratchvae exercises check {WORKBOOK} {names}`. "
                 f"What each one checks and the mistakes the grader names: {{ref}}`exercises-{number}`."]
    else:
        text += [f"This lesson's exercises are questions; the workbook's exercises are listed on "
                 f"{{ref}}`exercises-{number}`."]
    text += ["", f"Worked answers: [answers to lesson {int(number)}](answers/{stem}.md)."]
    return "\n\n# %% [markdown]\n" + "\n".join(f"# {line}".rstrip() for line in text) + "\n"


def results_files(folder):
    """A list of download links, one per file under ``folder``, grouped by sub-folder."""
    lines = []
    for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        files = sorted(p for p in sub.iterdir() if p.is_file())
        if not files:
            continue
        where = sub.relative_to(folder.parent).as_posix()
        lines += [f"## `{where}/`", ""]
        lines += [f"- [{p.name}]({p.relative_to(folder.parent).as_posix()})" for p in files]
        lines.append("")
    return "\n".join(lines)


def _api_modules(confdir):
    """The modules the API pages document (``.. automodule:: NAME`` in docs/api/*.md)."""
    found = set()
    for page in sorted((Path(confdir) / "api").glob("*.md")):
        found.update(re.findall(r"^\.\. automodule:: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M))
    return found


def on_source_read(app, docname, source):
    root = Path(app.srcdir)
    api_modules = app.env.coursesite_api_modules
    if docname == "docs/exercises":
        if EXERCISES_MARKER not in source[0]:
            raise ExtensionError(f"docs/exercises.md lacks the line {EXERCISES_MARKER}")
        source[0] = source[0].replace(EXERCISES_MARKER, exercises_page(root, api_modules))
        return
    if docname == "docs/results-data":
        if RESULTS_MARKER not in source[0]:
            raise ExtensionError(f"docs/results-data.md lacks the line {RESULTS_MARKER}")
        source[0] = source[0].replace(RESULTS_MARKER, results_files(root / "docs" / "results"))
        return
    match = LESSON_DOC.match(docname)
    if match:
        source[0] = source[0].rstrip("\n") + lesson_exercises_cell(match.group(1), docname.split("/")[1],
                                                                   api_modules)


# -- links to repository files ---------------------------------------------------------------
class RepositoryLinks(SphinxTransform):
    """Links to repository files that are not pages: to their page, API reference or a download."""
    default_priority = 5

    def apply(self):
        env = self.env
        root = Path(env.srcdir)
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") not in ("doc", None):
                continue
            if node.get("refdomain") == "doc":
                if node["reftarget"] in env.found_docs:
                    continue
                path = self._document_file(root, node["reftarget"])
                anchor = node.get("reftargetid")
            else:
                target, _, anchor = node["reftarget"].partition("#")
                if not target:
                    continue
                path = Path(env.relfn2path(target, env.docname)[1])
            if path is None or not path.exists():
                continue
            replacement = self._replacement(node, root, path.resolve(), anchor)
            if replacement is not None:
                replacement += node.children
                node.replace_self(replacement)

    @staticmethod
    def _document_file(root, docname):
        for suffix in (".py", ".md"):
            if (root / (docname + suffix)).exists():
                return root / (docname + suffix)
        return None

    def _replacement(self, node, root, path, anchor):
        env = self.env
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            return None
        common = {"refdoc": env.docname, "refexplicit": True}
        if path.is_dir():
            readme = f"{relative}/README"
            if readme in env.found_docs:
                return addnodes.pending_xref(refdomain="doc", reftype="myst", reftarget=readme,
                                             reftargetid=anchor, **common)
            if relative in FOLDER_PAGES:
                return addnodes.pending_xref(refdomain="doc", reftype="myst", reftarget=FOLDER_PAGES[relative],
                                             reftargetid=anchor, **common)
            module = relative.replace("/", ".")
        elif path.suffix == ".py":
            module = relative[:-3].replace("/", ".").removesuffix(".__init__")
        else:
            return addnodes.download_reference(refdomain=None, reftype="myst", reftarget="/" + relative, **common)
        if module in env.coursesite_api_modules:
            return addnodes.pending_xref(refdomain="py", reftype="mod", reftarget=module, **common)
        if path.is_file():
            return addnodes.download_reference(refdomain=None, reftype="myst", reftarget="/" + relative, **common)
        return None


# -- a failing lesson names itself and its cell ---------------------------------------------------
class LessonFailed(SphinxError):
    category = "Lesson failed"


def describe_failure(notebook, path, cause, root):
    """What failed, for a person: the lesson's file, the cell (its number among the code cells and
    the line where it starts in the file), its first lines, the error and the end of its traceback."""
    try:
        where = Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        where = str(path)
    cells = notebook.cells
    failed = next((i for i, c in enumerate(cells) if c.cell_type == "code"
                   and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    if failed is None:                   # a time-out: the first code cell that did not finish
        failed = next((i for i, c in enumerate(cells) if c.cell_type == "code"
                       and c.get("execution_count") is None), None)
    lines = [f"{where} failed while the site was built"]
    if failed is not None:
        code_number = sum(1 for c in cells[:failed + 1] if c.cell_type == "code")
        starts = notebook.metadata.get("source_map")
        at = f", which starts at line {starts[failed] + 1} of the file" if starts else ""
        lines[0] += f", in code cell {code_number} (cell {failed + 1} of the notebook{at}):"
        source = cells[failed].source.splitlines()
        lines += [f"    {line}" for line in source[:4]] + (["    ..."] if len(source) > 4 else [])
    ename = getattr(cause, "ename", None)
    lines.append(f"{ename}: {getattr(cause, 'evalue', '')}" if ename else
                 f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}")
    if ename:
        # nbclient's message: the cell's source between lines of dashes, then the traceback
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause))
        traceback = re.split(r"^-{18}$", text, flags=re.M)[-1].strip("\n").splitlines()
        lines += ["The end of its traceback:"] + [f"    {line}" for line in traceback[-14:]]
    return "\n".join(lines)


def _name_the_figures_folder(notebook):
    """The build's temporary figures folder, printed by the lessons, as the variable that names it."""
    folder = os.environ.get("SCRATCHVAE_LESSONS_OUT")
    if not folder:
        return
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = output["text"].replace(folder, "$SCRATCHVAE_LESSONS_OUT")


def _name_failed_lessons(srcdir):
    """Make MyST-NB's ExecutionError (which names only the file) name the cell too."""
    from myst_nb.core.execute import base

    enter = base.NotebookClientBase.__enter__
    if getattr(enter, "coursesite", False):
        return

    def __enter__(self):
        try:
            entered = enter(self)
        except base.ExecutionError as error:
            message = describe_failure(self.notebook, self.path, error.__cause__, Path(srcdir).resolve())
            # printed at once too: a parallel build shows a worker's error only at its very end
            print(f"\n{message}\n", file=sys.stderr, flush=True)
            raise LessonFailed(message) from error
        _name_the_figures_folder(self.notebook)
        return entered

    __enter__.coursesite = True
    base.NotebookClientBase.__enter__ = __enter__


# -- the lessons spread over the build's processes ------------------------------------------------
def _lessons_first(make_chunks, srcdir):
    """Sphinx's ``make_chunks`` with each lesson in a chunk of its own, the longest first, ahead of
    the other pages: executing the lessons is nearly all of the build, and Sphinx's chunks of ~15
    pages in name order would give one process most of them."""
    def chunks(arguments, nproc, maxbatch=10):
        lessons = [d for d in arguments if LESSON_DOC.match(d)]
        if nproc < 2 or not lessons:
            return make_chunks(arguments, nproc, maxbatch)
        lessons.sort(key=lambda d: -(Path(srcdir) / f"{d}.py").stat().st_size)
        others = [d for d in arguments if d not in lessons]
        return [[d] for d in lessons] + (make_chunks(others, nproc, maxbatch) if others else [])

    chunks.coursesite = True
    return chunks


# -- MathJax from the site itself ----------------------------------------------------------------
MATHJAX_FILES = [
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",
    "extensions/*.js",
    "extensions/TeX/*.js",
    "extensions/HTML-CSS/*.js",
    "jax/element/**/*.js",
    "jax/input/TeX/*.js",
    "jax/output/HTML-CSS/**/*.js",
    "fonts/HTML-CSS/STIX-Web/woff/*.woff",
    "localization/en/*.js",
]


def mathjax_source():
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or spec.origin is None:
        raise ExtensionError("MathJax 2.7 comes from the package jupyter-server-mathjax: "
                             "pip install -e \".[docs]\"")
    static = Path(spec.origin).parent / "static"
    if not (static / "MathJax.js").is_file():
        raise ExtensionError(f"no MathJax.js in {static}")
    return static


def copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    static = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    count = 0
    for pattern in MATHJAX_FILES:
        for src in static.glob(pattern):
            dest = target / src.relative_to(static)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            count += 1
    logger.info(f"MathJax: {count} files copied from {static} into {target}")


def on_builder_inited(app):
    app.env.coursesite_api_modules = _api_modules(app.confdir)
    mathjax_source()                     # fail early, before the lessons run, when it is missing
    _name_failed_lessons(app.srcdir)
    import sphinx.builders
    if not getattr(sphinx.builders.make_chunks, "coursesite", False):
        sphinx.builders.make_chunks = _lessons_first(sphinx.builders.make_chunks, app.srcdir)


def setup(app):
    app.connect("builder-inited", on_builder_inited)
    app.connect("source-read", on_source_read)
    app.connect("build-finished", copy_mathjax)
    app.add_transform(RepositoryLinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
