"""No HTML or script of a submission runs in the formgrader, the feedback or the instructor's JupyterLab.

A small course in a temporary folder, graded with the course's nbgrader_config.py: one assignment
with a written answer and a code answer. Mallory's written answer carries raw HTML and a
``javascript:`` link, and her code displays HTML, JavaScript, Markdown, SVG and widget outputs.
Each payload, if it ran, would set ``window.__pwned``, set ``document.title``, log to the console,
open a dialog and write ``pwned.txt`` into the course root through the Jupyter contents API with
the instructor's session, as the issue's attack did. After ``nbgrader autograde`` and
``generate_feedback``, headless Chromium opens the formgrader's page of the submission, the
feedback HTML and the autograded notebook in JupyterLab: none of those signs appears, and the
honest answer is on the page. The same holds for an autograded notebook that was never sanitised
(graded before this protection), through the HTML exporter's own sanitising. The last test is the
control: rendered without any sanitising, the same notebook does run every sign, so the checks
above can fail.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import bs4
import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from utils.instructor.course import REPO_ROOT, nbgrader, nbgrader_metadata
from utils.instructor.lab import Lab

ASSIGNMENT = STEM = "untrusted_html"
STUDENT = "mallory"
HONEST_ANSWER = "Residual connections keep the gradient flowing through deep stacks."
HONEST_OUTPUT = "honest printed output"
PWNED_FILE = "pwned.txt"
# What every payload runs; each statement leaves one sign the checks look for. The write is the issue's
# attack: load a Jupyter page for its _xsrf cookie, then PUT a file with the instructor's session.
JS = ("window.__pwned=(window.__pwned||0)+1;document.title='pwned';console.log('PWNED-MARKER');"
      "fetch('/lab',{credentials:'same-origin'}).then(function(){var x=(document.cookie.match(/_xsrf=([^;]+)/)||[])[1]"
      "||'';return fetch('/api/contents/" + PWNED_FILE + "',{method:'PUT',credentials:'same-origin',"
      "headers:{'Content-Type':'application/json','X-XSRFToken':x},"
      "body:JSON.stringify({type:'file',format:'text',content:'pwned'})})});alert('pwned')")
WRITTEN_ANSWER = f"""{HONEST_ANSWER}

<img src="x" onerror="{JS}">

<svg onload="{JS}"><circle r="4"/></svg>

<details open ontoggle="{JS}"><summary>more</summary>details</details>

[a link](javascript:window.__pwned=1) and [another](java&#x09;script:window.__pwned=1)

<script>{JS}</script>
"""
# Run by the grading kernel: every output type a browser could run.
SHOW_CODE = f"""from IPython.display import HTML, SVG, Javascript, Markdown, display
JS = {JS!r}
print({HONEST_OUTPUT!r})
display(HTML('<b>honest html output</b><img src="x" onerror="' + JS + '"><script>' + JS + '</script>'))
display(Javascript(JS))
display(Markdown('honest markdown output <img src="x" onerror="' + JS + '">'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="' + JS + '"><circle r="4"/></svg>'))
display({{'text/html': '<script>' + JS + '</script>', 'text/plain': 'honest plain output'}}, raw=True)
display({{'application/vnd.jupyter.widget-view+json': {{'model_id': 'x', 'version_major': 2, 'version_minor': 0}},
          'text/plain': 'a widget'}}, raw=True)
"""
SETTLE_S = 2.0   # after a page has loaded, time for an onerror, a fetch and a write to happen


def source_notebook():
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                "language_info": {"name": "python"}})
    nb.cells = [
        new_markdown_cell("# Safe rendering\n\nShow something, then answer in words.",
                          metadata=nbgrader_metadata("intro", locked=True)),
        new_code_cell("### BEGIN SOLUTION\nprint('shown')\n### END SOLUTION",
                      metadata=nbgrader_metadata("show", solution=True)),
        new_markdown_cell("Why do residual connections help?", metadata=nbgrader_metadata("question", locked=True)),
        new_markdown_cell("They keep gradients flowing.",
                          metadata=nbgrader_metadata("written", solution=True, points=1.0)),
    ]
    return nb


def _output(data: dict):
    return new_output("display_data", data=data)


def submitted_notebook(release):
    """Mallory's notebook as she saves it: payloads in the written answer, and her own run's outputs."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    show = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "show")
    show.source = SHOW_CODE
    show.execution_count = 1
    show.outputs = [
        new_output("stream", name="stdout", text=HONEST_OUTPUT + "\n"),
        _output({"text/html": f'<b>honest html output</b><img src="x" onerror="{JS}"><script>{JS}</script>',
                 "text/plain": "<IPython.core.display.HTML object>"}),
        _output({"application/javascript": JS, "text/plain": "<IPython.core.display.Javascript object>"}),
        _output({"text/markdown": f'honest markdown output <img src="x" onerror="{JS}">',
                 "text/plain": "<IPython.core.display.Markdown object>"}),
        _output({"image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{JS}"><circle r="4"/></svg>',
                 "text/plain": "<IPython.core.display.SVG object>"}),
    ]
    show.metadata["trusted"] = True
    written = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "written")
    written.source = WRITTEN_ANSWER
    return nb


def _nbgrader(root: Path, *args: str) -> float:
    started = time.monotonic()
    nbgrader(*args, root=root, timeout=300)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A graded course: source, release, Mallory's submission, autograded notebook and feedback."""
    root = tmp_path_factory.mktemp("untrusted-html-course")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(source_notebook(), root / "source" / ASSIGNMENT / f"{STEM}.ipynb")
    took = {"generate_assignment": _nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")}
    release = nbformat.read(root / "release" / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    (root / "submitted" / STUDENT / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(submitted_notebook(release), root / "submitted" / STUDENT / ASSIGNMENT / f"{STEM}.ipynb")
    took["autograde"] = _nbgrader(root, "autograde", ASSIGNMENT, "--force")
    took["generate_feedback"] = _nbgrader(root, "generate_feedback", ASSIGNMENT, "--force")
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
    return root


def autograded_path(root: Path) -> Path:
    return root / "autograded" / STUDENT / ASSIGNMENT / f"{STEM}.ipynb"


def feedback_path(root: Path) -> Path:
    return root / "feedback" / STUDENT / ASSIGNMENT / f"{STEM}.html"


@pytest.fixture(scope="module")
def lab(course, browser, tmp_path_factory, artifacts):
    """The instructor's JupyterLab in the course root (formgrader on); ``browser`` first: no browser, no server."""
    server = Lab("instructor", course, home=tmp_path_factory.mktemp("untrusted-html-home"),
                 log=artifacts / "jupyter-lab-untrusted-html.log", expose_app=True)
    server.start(timeout=180)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def session(lab, browser_context):
    """The instructor logged in, as when she opens the formgrader from JupyterLab: a login and an _xsrf cookie."""
    page = browser_context.new_page()
    try:
        page.goto(lab.url("lab"), wait_until="domcontentloaded")
        names = {cookie["name"] for cookie in browser_context.cookies(lab.base)}
        assert "_xsrf" in names and any(name.startswith("username-") for name in names), names
    finally:
        page.close()
    return lab


class Signs:
    """Everything on a page that would show a payload ran: dialogs, console lines, the globals it sets."""

    def __init__(self, page):
        self.page, self.dialogs, self.console = page, [], []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: self.console.append(message.text))

    def seen(self, root: Path) -> list[str]:
        time.sleep(SETTLE_S)
        signs = [f"dialog {m!r}" for m in self.dialogs]
        signs += [f"console {m!r}" for m in self.console if "PWNED" in m]
        if self.page.evaluate("() => typeof window.__pwned") != "undefined":
            signs.append(f"window.__pwned = {self.page.evaluate('() => window.__pwned')}")
        if self.page.title() == "pwned":
            signs.append("document.title = 'pwned'")
        if (root / PWNED_FILE).exists():
            signs.append(f"{PWNED_FILE} written into the course root")
        return signs


def submission_url(lab, root: Path) -> str:
    from nbgrader.api import Gradebook

    from utils.grading.gradebook import sqlite_gradebook_url
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        submission = gb.find_submission_notebook(STEM, ASSIGNMENT, STUDENT).id
    return lab.url(f"formgrader/submissions/{submission}")


def _open_formgrader(page, lab, course) -> Signs:
    signs = Signs(page)
    page.goto(submission_url(lab, course), wait_until="domcontentloaded")
    page.locator("#notebook-container").first.wait_for()
    return signs


# ----------------------------------------------------------------------------- the graded submission

def test_the_autograded_notebook_holds_no_payload(course):
    nb = nbformat.read(autograded_path(course), as_version=4)
    written = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written")
    assert HONEST_ANSWER in written.source
    assert "<img" not in written.source and "javascript:" not in written.source, written.source
    show = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "show")
    types = [sorted(o.get("data", {})) or o.output_type for o in show.outputs]
    assert any(HONEST_OUTPUT in o.get("text", "") for o in show.outputs), types   # executed while grading
    for output in show.outputs:
        for mime, value in output.get("data", {}).items():
            assert mime in ("text/plain", "text/html", "text/markdown"), types
            page = markdown2html_mistune(value) if mime == "text/markdown" else value
            live = bs4.BeautifulSoup(page, "html.parser").find_all(
                lambda tag: tag.name in ("script", "svg", "iframe") or any(a.startswith("on") for a in tag.attrs))
            assert live == [], (mime, value)
    assert "trusted" not in show.metadata


def test_the_formgrader_runs_no_student_script(session, lab, course, page, artifacts):
    signs = _open_formgrader(page, lab, course)
    answer = page.get_by_text(HONEST_ANSWER)
    answer.wait_for()
    assert answer.is_visible()
    for honest in (HONEST_OUTPUT, "honest html output", "honest markdown output", "honest plain output"):
        assert page.get_by_text(honest).count() >= 1, f"{honest!r} is not on the formgrader's page"
    page.screenshot(path=str(artifacts / "untrusted-html-formgrader.png"), full_page=True)
    assert signs.seen(course) == []


def test_the_feedback_runs_no_student_script(course, page, artifacts):
    signs = Signs(page)
    page.goto(feedback_path(course).as_uri())
    assert page.get_by_text(HONEST_ANSWER).is_visible()
    assert page.get_by_text(HONEST_OUTPUT).count() >= 1
    page.screenshot(path=str(artifacts / "untrusted-html-feedback.png"), full_page=True)
    assert signs.seen(course) == []


def test_jupyterlab_runs_no_student_script(session, lab, course, page):
    signs = Signs(page)
    rel = autograded_path(course).relative_to(course).as_posix()
    page.goto(lab.url(f"lab/tree/{rel}?reset"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined")
    page.locator(".jp-NotebookPanel .jp-MarkdownOutput", has_text=HONEST_ANSWER).wait_for()
    page.locator(".jp-OutputArea-output", has_text=HONEST_OUTPUT).first.wait_for()
    assert signs.seen(course) == []


# ----------------------------------------------------------------------------- defence in depth, and the control

def test_a_notebook_graded_before_sanitising_is_still_shown_safely(session, lab, course, page):
    """An autograded notebook that still holds every payload: the formgrader and feedback exporters clean it."""
    nb = nbformat.read(course / "submitted" / STUDENT / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    nbformat.write(nb, autograded_path(course))
    signs = _open_formgrader(page, lab, course)
    page.get_by_text(HONEST_ANSWER).wait_for()
    assert page.get_by_text("honest html output").count() >= 1
    assert signs.seen(course) == []

    _nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    handlers = bs4.BeautifulSoup(feedback_path(course).read_text(encoding="utf-8"), "html.parser").find_all(
        lambda tag: any(name.lower().startswith("on") for name in tag.attrs))
    assert handlers == [], "event handlers in the feedback HTML"
    feedback = page.context.new_page()
    try:
        signs = Signs(feedback)
        feedback.goto(feedback_path(course).as_uri())
        assert feedback.get_by_text(HONEST_ANSWER).is_visible()
        assert signs.seen(course) == []
    finally:
        feedback.close()


def test_the_control_without_sanitising_every_payload_runs(session, lab, course, page):
    """The same submission rendered by a plain nbconvert HTMLExporter, in the formgrader's origin: all signs appear."""
    from nbconvert.exporters import HTMLExporter
    nb = nbformat.read(course / "submitted" / STUDENT / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    unsafe, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    signs = _open_formgrader(page, lab, course)   # the instructor's session and cookies in this origin
    page.set_content(unsafe, wait_until="domcontentloaded")
    deadline = time.monotonic() + 20
    while not (course / PWNED_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    seen = signs.seen(course)
    try:
        assert any(s.startswith("window.__pwned") for s in seen), seen
        assert "document.title = 'pwned'" in seen and any(s.startswith("dialog") for s in seen), seen
        assert any(s.startswith("console") for s in seen), seen
        assert f"{PWNED_FILE} written into the course root" in seen, seen
    finally:
        (course / PWNED_FILE).unlink(missing_ok=True)
