"""The course's website, built by the README's command and read in a real browser.

``test_site_in_a_browser`` builds the site (every lesson executed in fast mode), serves it on
127.0.0.1 and opens every page with headless Chromium through Playwright, as a student's browser
would, with every request that leaves the loopback interface refused. On every page: no console
error, no failed request, every link within the site leads to a file that exists (and to the
anchor it names), every image loaded, the math rendered by MathJax (its output present, no
formula in error, no raw ``$$`` or ``\\(`` left in the text); every lesson shows at least one
figure and a printed check; the search page finds "reparameterization". Screenshots of the start
page and of a lesson go into ``$SCRATCHVAE_SCREENSHOTS`` (else a temporary folder), and their
paths are printed.

It is marked ``browser``: the suite's command (``-m "not slow and not browser"``) leaves it out,
and CI runs it on its own. Without Sphinx and MyST-NB (``pip install -e ".[docs]"``), Playwright
(``".[browser]"``) or Debian's ``chromium`` it skips with the reason, unless
``SCRATCHVAE_REQUIRE_BROWSER=1`` (CI sets it), which makes a missing piece a failure.
``SCRATCHVAE_SITE_DIR`` names a site already built (``docs/_build/html``), to check it without
building it again.

The link checker is tested too, on pages made by hand with a broken link and a missing anchor
(without a browser), and on a tiny hand-made site in the browser.
"""
import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get("SCRATCHVAE_REQUIRE_BROWSER", "0") not in ("", "0")
SITE_COMMAND = re.compile(r"^python3 -m sphinx .*docs/_build/html$", flags=re.M)

# -- the link checker: pure functions of what the browser saw ------------------------------------


def site_file(root, path):
    """The file that a URL path of the site serves, or None (a folder serves its index.html)."""
    target = (Path(root) / unquote(path).lstrip("/")).resolve()
    if not target.is_relative_to(Path(root).resolve()):
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def broken_links(root, pages):
    """Every link of ``pages`` within the site that leads nowhere.

    ``pages``: {page path: {"links": [URL path with its #fragment, ...], "ids": [element ids]}},
    for every page opened. A link is broken when no file serves its path, or when it names an
    anchor that its page (an HTML page that was opened) does not have. Returns
    ["page: link (why)", ...]."""
    problems = []
    for page, seen in sorted(pages.items()):
        for link in seen["links"]:
            path, _, fragment = link.partition("#")
            target = site_file(root, path)
            if target is None:
                problems.append(f"{page}: {link} (no such file)")
                continue
            fragment = unquote(fragment)
            key = "/" + target.relative_to(Path(root).resolve()).as_posix()
            if fragment and key in pages and fragment not in pages[key]["ids"]:
                problems.append(f"{page}: {link} (no element with id {fragment!r})")
    return sorted(problems)


def test_the_link_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "index.html").write_text("<a href='docs/a.html'>a</a>")
    (tmp_path / "docs" / "a.html").write_text("<h1 id='top'>a</h1>")
    pages = {
        "/index.html": {"links": ["/docs/a.html#top", "/docs/", "/docs/a.html#gone", "/docs/b.html"],
                        "ids": []},
        "/docs/a.html": {"links": ["/index.html", "/docs/../index.html#", "/../etc/passwd"], "ids": ["top"]},
    }
    (tmp_path / "docs" / "index.html").write_text("folder index")
    assert broken_links(tmp_path, pages) == [
        "/docs/a.html: /../etc/passwd (no such file)",
        "/index.html: /docs/a.html#gone (no element with id 'gone')",
        "/index.html: /docs/b.html (no such file)",
    ]


# -- the site's extension, without building: failures named, exercises from the catalog -----------


@pytest.fixture(scope="module")
def coursesite():
    for name in ("sphinx", "jupytext", "nbclient"):
        pytest.importorskip(name, reason=f"{name} builds the site: pip install -e '.[docs]'")
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import coursesite
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    return coursesite


def test_a_lesson_that_fails_is_named_with_its_cell(coursesite):
    import nbformat
    from nbclient.exceptions import CellExecutionError

    text = ("# %% [markdown]\n# # Lesson 99: failing\n\n# %%\nx = 1\n\n# %% [markdown]\n# text\n\n"
            "# %%\ny = x + 1\nraise ValueError('on purpose')\n")
    notebook = coursesite.read_lesson(text)
    assert [c.cell_type for c in notebook.cells] == ["markdown", "code", "markdown", "code"]
    assert notebook.metadata["source_map"] == [0, 3, 6, 9]
    notebook.cells[1].execution_count = 1
    notebook.cells[3].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="on purpose",
                                                        traceback=[])]
    cause = CellExecutionError("An error occurred while executing the following cell:\n------------------\n"
                               "y = x + 1\nraise ValueError('on purpose')\n------------------\n\n"
                               "Traceback (most recent call last)\nValueError: on purpose\n",
                               "ValueError", "on purpose")
    message = coursesite.describe_failure(notebook, ROOT / "lessons" / "99_failing.py", cause, ROOT)
    first = message.splitlines()[0]
    assert first == ("lessons/99_failing.py failed while the site was built, in code cell 2 "
                     "(cell 4 of the notebook, which starts at line 10 of the file):"), message
    assert "    raise ValueError('on purpose')" in message and "\nValueError: on purpose" in message


def test_the_exercises_pages_are_written_from_the_grader_s_catalog(coursesite):
    from scratchvae.exercises import catalog

    page = coursesite.exercises_page(ROOT, api_modules={"scratchvae.distributions"})
    for exercise in catalog.EXERCISES:
        assert f"scratchvae exercises check my-workbook {exercise.name}\n" in page, exercise.name
        for mistake in exercise.mistakes:
            assert mistake.says in page
    assert "{py:func}`~scratchvae.distributions.reparameterize`" in page          # linked to the API
    assert "`scratchvae.models.mixture.m_step`" in page                              # not documented: code
    cell = coursesite.lesson_exercises_cell("06", "06_reparameterization", set())
    assert cell.startswith("\n\n# %% [markdown]\n") and "reparameterize_backward" in cell
    assert "(answers/06_reparameterization.md)" in cell


# -- what the browser test needs ------------------------------------------------------------------


def _missing_pieces(build):
    missing = []
    modules = [("playwright", "playwright: pip install -e '.[browser]'")]
    if build:
        modules += [(name, f"{name}: pip install -e '.[docs]'")
                    for name in ("sphinx", "myst_nb", "pydata_sphinx_theme", "jupytext", "jupyter_server_mathjax")]
    for name, why in modules:
        if importlib.util.find_spec(name) is None:
            missing.append(f"no {why}")
    if shutil.which("chromium") is None:
        missing.append("no chromium on the PATH: apt-get install -y chromium")
    return missing


def _require(missing):
    if missing:
        message = "; ".join(missing)
        if REQUIRE:
            pytest.fail(f"SCRATCHVAE_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)


def _site_command():
    """The README's command that builds the site."""
    found = SITE_COMMAND.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "the README gives one command that builds the site into docs/_build/html"
    return found[0]


def _build(out):
    """The README's command with ``out`` in place of docs/_build (the pages go to ``out/html``), and
    every warning an error (a broken reference, a docstring that does not parse), all reported."""
    command = _site_command().replace("docs/_build", str(out)).split() + ["-W", "--keep-going"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    start = time.perf_counter()
    result = subprocess.run([sys.executable if c == "python3" else c for c in command], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=1200)
    took = time.perf_counter() - start
    assert result.returncode == 0, f"the site's build failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    print(f"\nsite built in {took:.0f} s by: {' '.join(command)}")
    return out


@pytest.fixture(scope="module")
def site():
    """The site: ``$SCRATCHVAE_SITE_DIR`` when it holds one already built, else built now into a
    temporary folder."""
    given = os.environ.get("SCRATCHVAE_SITE_DIR")
    if given and (Path(given) / "docs" / "index.html").is_file():
        _require(_missing_pieces(build=False))
        yield Path(given).resolve()
        return
    _require(_missing_pieces(build=True))
    import tempfile
    with tempfile.TemporaryDirectory(prefix="scratchvae-site-") as tmp:
        yield _build(Path(tmp)) / "html"


class _Server:
    """The folder served on 127.0.0.1 by the standard library, in a thread."""

    def __init__(self, root):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):   # a browser that stopped reading
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# What a page reports once it has loaded and MathJax has finished: its links, ids, images, math.
REPORT = """async () => {
  if (window.MathJax && MathJax.Hub) { await new Promise(done => MathJax.Hub.Queue(done)); }
  for (const img of document.images) {
    img.loading = 'eager';
    if (!img.complete) { await new Promise(done => { img.onload = img.onerror = done; }); }
  }
  const text = document.body.cloneNode(true);
  text.querySelectorAll('pre, code, script, style, textarea, .MathJax, .MathJax_Display, .MathJax_Preview')
      .forEach(e => e.remove());
  return {
    url: location.href,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    images: [...document.images].map(img => [img.currentSrc || img.src, img.naturalWidth]),
    figures: document.querySelectorAll('.cell_output img').length,
    math_sources: document.querySelectorAll('.math.nohighlight').length,
    math_unrendered: [...document.querySelectorAll('.math.nohighlight')].filter(e => !e.querySelector('.MathJax'))
        .map(e => e.textContent.slice(0, 80)),
    math_errors: [...document.querySelectorAll('.noError, .MathJax_Error, merror')].map(e => e.textContent),
    text: text.textContent,
    shown: document.body.innerText,
  };
}"""
UNRENDERED = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$")


def _open_every_page(root, paths, screenshots=None):
    """Open each page in headless Chromium; returns ({page: report}, [problems]). ``screenshots``:
    {file: (page, whether to scroll to its first figure)}."""
    from playwright.sync_api import sync_playwright

    server = _Server(root)
    reports, problems = {}, []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            current = {"path": None}

            def note(what):
                problems.append(f"{current['path']}: {what}")

            def outside(route):
                note(f"request outside the site refused: {route.request.url}")
                route.abort()

            page.route(re.compile(r"^(?!" + re.escape(server.origin) + r"/|data:|blob:|about:)"), outside)
            page.on("console", lambda msg: msg.type == "error" and note(f"console error: {msg.text}"))
            page.on("pageerror", lambda err: note(f"script error: {err}"))
            # net::ERR_ABORTED: a request cut short by going on to the next page (a refused one is noted above)
            page.on("requestfailed", lambda req: "ERR_ABORTED" not in (req.failure or "")
                    and note(f"request failed: {req.url} ({req.failure})"))
            page.on("response", lambda res: res.status >= 400 and note(f"HTTP {res.status}: {res.url}"))
            for path in paths:
                current["path"] = path
                page.goto(server.origin + path, wait_until="load")
                report = page.evaluate(REPORT)
                landed = urlsplit(report["url"]).path
                reports[landed] = report
                for shot, (where, figure) in (screenshots or {}).items():
                    if where == path:          # the top of the page, or its first figure
                        if figure:
                            page.locator(".cell_output img").first.scroll_into_view_if_needed()
                        page.screenshot(path=str(shot), full_page=False)
            browser.close()
    finally:
        server.close()
    for path, report in reports.items():
        report["links"] = [urlsplit(link).path + (f"#{urlsplit(link).fragment}" if urlsplit(link).fragment else "")
                           for link in report["links"] if link.startswith(server.origin + "/")]
    return reports, problems


def _pages(root):
    """Every page of the site but its root, which only sends the browser to docs/index.html."""
    return sorted("/" + p.relative_to(root).as_posix() for p in Path(root).rglob("*.html")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts[:-1])
                  and p.relative_to(root).as_posix() != "index.html")


@pytest.mark.browser
def test_the_browser_check_finds_a_broken_link_on_a_hand_made_site(tmp_path):
    _require(_missing_pieces(build=False))
    (tmp_path / "index.html").write_text(
        "<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
        "<a href='a.html#here'>fine</a> <a href='gone.html'>broken</a> <a href='a.html#nowhere'>no anchor</a>"
        "<img src='missing.png' alt='missing'></body></html>")
    (tmp_path / "a.html").write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head>"
                                     "<body><h1 id='here'>a</h1></body></html>")
    reports, problems = _open_every_page(tmp_path, ["/index.html", "/a.html"])
    assert broken_links(tmp_path, reports) == ["/index.html: /a.html#nowhere (no element with id 'nowhere')",
                                               "/index.html: /gone.html (no such file)"]
    assert any("HTTP 404" in p and "missing.png" in p for p in problems), problems
    assert [src for src, width in reports["/index.html"]["images"] if width == 0]


@pytest.mark.browser
def test_site_in_a_browser(site):
    shots = Path(os.environ.get("SCRATCHVAE_SCREENSHOTS") or site.parent / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    lesson = "/lessons/07_vae_mnist.html"
    screenshots = {shots / "start-page.png": ("/docs/index.html", False), shots / "lesson-07.png": (lesson, False),
                   shots / "lesson-07-figure.png": (lesson, True)}
    paths = _pages(site)
    assert "/docs/index.html" in paths and lesson in paths, paths[:20]
    start = time.perf_counter()
    reports, problems = _open_every_page(site, paths + ["/search.html?q=reparameterization"], screenshots)
    took = time.perf_counter() - start
    print(f"\n{len(paths)} pages opened in Chromium in {took:.0f} s; screenshots:")
    for path in screenshots:
        print(f"  {path}")

    problems += broken_links(site, reports)
    for path, report in sorted(reports.items()):
        broken_images = [src for src, width in report["images"] if not width]
        if broken_images:
            problems.append(f"{path}: images that did not load: {broken_images}")
        if report["math_unrendered"]:
            problems.append(f"{path}: formulas MathJax did not render: {report['math_unrendered'][:5]}")
        if report["math_errors"]:
            problems.append(f"{path}: formulas MathJax could not read: {report['math_errors'][:5]}")
        raw = sorted(set(UNRENDERED.findall(report["text"])))
        if raw and not path.startswith("/search.html"):
            problems.append(f"{path}: math left as text: {raw[:5]}")
        if re.match(r"^/lessons/\d\d_", path):
            if report["figures"] < 1:
                problems.append(f"{path}: a lesson page without a figure")
            if "relative error" not in report["shown"]:
                problems.append(f"{path}: a lesson page without its printed checks")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])

    lessons = [p for p in reports if re.match(r"^/lessons/\d\d_", p)]
    assert len(lessons) == len(list((ROOT / "lessons").glob("[0-9][0-9]_*.py")))
    assert sum(1 for r in reports.values() if r["math_sources"]) >= 2, "hardly a page shows math"
    assert all(path.is_file() and path.stat().st_size > 10_000 for path in screenshots)


@pytest.mark.browser
def test_the_root_leads_to_the_start_page_and_search_finds_reparameterization(site):
    _require(_missing_pieces(build=False))
    from playwright.sync_api import sync_playwright

    server = _Server(site)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page()
            page.goto(server.origin + "/")
            page.wait_for_url(re.compile(r"/docs/index\.html$"), timeout=10_000)
            assert "a VAE from scratch" in page.title()
            page.goto(server.origin + "/search.html?q=reparameterization")
            page.wait_for_selector("#search-results ul.search li", timeout=30_000)
            found = page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
            browser.close()
    finally:
        server.close()
    assert any("06_reparameterization" in link for link in found), found
