"""With no network, the feedback page and the formgrader draw every formula and wrap long output lines.

A small course graded with the course's nbgrader_config.py: formulas in a heading, an aligned
display and a student's written answer; the student's code fails with an error line of some 400
characters. Headless Chromium opens the generated feedback HTML and the formgrader's page of the
submission with every request that would leave this machine aborted: nothing is requested, each
formula is laid out as MathML (a fraction's numerator above its denominator), no LaTeX is left on
the page, and the error's ``pre`` wraps at spaces (no horizontal overflow, no token split across
lines) where, unwrapped, it would overflow. The feedback page is saved as
``screenshots/feedback_math.png`` when that file is missing or COURSE_UPDATE_SCREENSHOTS=1.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils.instructor.course import REPO_ROOT, nbgrader, nbgrader_metadata
from utils.instructor.lab import Lab

HERE = Path(__file__).resolve().parent
SCREENSHOT = HERE / "screenshots" / "feedback_math.png"
ASSIGNMENT = STEM = "offline_math"
STUDENT = "ada"
LONG_ERROR = " ".join(f"case_{i}_differs" for i in range(24))
FORMULAS = 4    # the heading's, the aligned display, the two of the written answer
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """Source, release, the student's submission, the autograded notebook and its feedback."""
    root = tmp_path_factory.mktemp("offline-math-browser")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                "language_info": {"name": "python"}})
    nb.cells = [
        new_markdown_cell("# The logistic gate $\\sigma(z) = \\frac{1}{1 + e^{-z}}$\n\nAn LSTM step:\n\n"
                          "$$\\begin{aligned} c_t &= f_t \\odot c_{t-1} + i_t \\odot \\tilde{c}_t \\\\ "
                          "h_t &= o_t \\odot \\tanh(c_t) \\end{aligned}$$",
                              metadata=nbgrader_metadata("intro", locked=True)),
        new_code_cell("### BEGIN SOLUTION\nprint('ok')\n### END SOLUTION",
                      metadata=nbgrader_metadata("code", solution=True)),
        new_markdown_cell("Why does the forget gate help?", metadata=nbgrader_metadata("question", locked=True)),
        new_markdown_cell("It keeps $c_t$.", metadata=nbgrader_metadata("written", solution=True, points=1.0)),
    ]
    nbformat.write(nb, root / "source" / ASSIGNMENT / f"{STEM}.ipynb")
    nbgrader("generate_assignment", ASSIGNMENT, "--force", root=root, timeout=300)
    submitted = nbformat.read(root / "release" / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    submitted.cells[1].source = f"raise ValueError({LONG_ERROR!r})"
    submitted.cells[3].source = ("With $f_t \\approx 1$ the cell state passes on: "
                                 "$\\frac{\\partial c_t}{\\partial c_{t-1}} = f_t$.")
    (root / "submitted" / STUDENT / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(submitted, root / "submitted" / STUDENT / ASSIGNMENT / f"{STEM}.ipynb")
    nbgrader("autograde", ASSIGNMENT, "--force", root=root, timeout=300)
    nbgrader("generate_feedback", ASSIGNMENT, "--force", root=root, timeout=300)
    return root


def offline(page) -> list[str]:
    """Abort every request that would leave this machine; returns the list of those requested."""
    requested: list[str] = []

    def handle(route):
        url = urlparse(route.request.url)
        if url.scheme in ("file", "data", "blob", "about") or url.hostname in LOOPBACK:
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return requested


def assert_formulas_drawn(page) -> None:
    boxes = page.eval_on_selector_all(
        "math", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })")
    assert len(boxes) == FORMULAS, boxes
    assert all(width > 0 and height > 0 for width, height in boxes), boxes
    # Laid out as MathML (not as unknown inline tags): every numerator sits above its denominator.
    fractions = page.eval_on_selector_all("mfrac", """els => els.map(f => [
        f.children[0].getBoundingClientRect().bottom, f.children[1].getBoundingClientRect().top])""")
    assert len(fractions) == 2 and all(bottom <= top + 1 for bottom, top in fractions), fractions
    text = page.evaluate("() => document.body.innerText")
    assert "$\\" not in text and "\\frac" not in text and "\\begin" not in text, "raw LaTeX on the page"


def assert_error_wraps(page) -> None:
    pre = page.locator("div.output_error pre").first
    measure = """p => { const s = getComputedStyle(p); return {scroll: p.scrollWidth, client: p.clientWidth,
                        whiteSpace: s.whiteSpace, wordBreak: s.wordBreak}; }"""
    wrapped = pre.evaluate(measure)
    assert wrapped["whiteSpace"] == "pre-wrap" and wrapped["wordBreak"] == "normal", wrapped
    assert wrapped["scroll"] <= wrapped["client"], f"the error line overflows sideways: {wrapped}"
    # Every token stays on one line: its text has one line box.
    split = pre.evaluate(r"""p => {
        const split = [], walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const m of node.data.matchAll(/case_\d+_differs/g)) {
                const range = document.createRange();
                range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
                if (range.getClientRects().length !== 1) split.push(m[0]);
            }
        }
        return split; }""")
    assert split == [], f"tokens broken across lines: {split}"
    assert LONG_ERROR in pre.inner_text().replace("\n", " ") or LONG_ERROR in pre.inner_text()
    # The control: the same line without wrapping is wider than the page.
    pre.evaluate("p => { p.style.whiteSpace = 'pre'; }")
    unwrapped = pre.evaluate(measure)
    pre.evaluate("p => { p.style.whiteSpace = ''; }")
    assert unwrapped["scroll"] > unwrapped["client"], unwrapped


def test_the_feedback_draws_formulas_and_wraps_errors_offline(course, page, artifacts):
    requested = offline(page)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((course / "feedback" / STUDENT / ASSIGNMENT / f"{STEM}.html").as_uri(), wait_until="load")
    assert_formulas_drawn(page)
    assert_error_wraps(page)
    assert requested == [] and errors == [], (requested, errors)
    page.screenshot(path=str(artifacts / "feedback-math.png"), full_page=True)
    if os.environ.get("COURSE_UPDATE_SCREENSHOTS") == "1" or not SCREENSHOT.exists():
        _save_small(page.screenshot(full_page=True), SCREENSHOT)


def _save_small(png: bytes, target: Path) -> None:
    """A committed screenshot as a small palette PNG (as conftest's README screenshots are)."""
    import io

    from PIL import Image
    target.parent.mkdir(exist_ok=True)
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


# ----------------------------------------------------------------------------- the formgrader

@pytest.fixture(scope="module")
def lab(course, browser, tmp_path_factory, artifacts):
    """The instructor's JupyterLab in the course root (formgrader on); ``browser`` first: no browser, no server."""
    server = Lab("instructor", course, home=tmp_path_factory.mktemp("offline-math-home"),
                 log=artifacts / "jupyter-lab-offline-math.log", expose_app=True)
    server.start(timeout=180)
    yield server
    server.stop()


def submission_url(lab, root: Path) -> str:
    from nbgrader.api import Gradebook

    from utils.grading.gradebook import sqlite_gradebook_url
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        submission = gb.find_submission_notebook(STEM, ASSIGNMENT, STUDENT).id
    return lab.url(f"formgrader/submissions/{submission}")


def test_the_formgrader_draws_formulas_and_wraps_errors_offline(lab, course, page, artifacts):
    requested = offline(page)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(submission_url(lab, course), wait_until="load")
    page.locator("#notebook-container").first.wait_for()
    assert_formulas_drawn(page)
    assert_error_wraps(page)
    # formgrade.js waits for MathJax before it sets up its keyboard shortcuts; the template's stand-in lets it.
    page.wait_for_function("() => window.formgrader && window.formgrader.keyboard_manager !== undefined")
    page.screenshot(path=str(artifacts / "formgrader-math.png"), full_page=True)
    assert requested == [] and errors == [], (requested, errors)
