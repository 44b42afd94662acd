"""Fixtures for the browser tests: JupyterLab servers (student, instructor) and headless Chromium.

The browser is the system's Chromium (Debian package ``chromium``), driven by Playwright's
Python package: ``playwright install`` is never needed. Set ``COURSE_CHROMIUM`` to use another
Chromium binary. Without one the browser tests are skipped, unless ``COURSE_REQUIRE_BROWSER=1``
(CI), where a missing browser is an error.

Browser, servers and their kernels live for one test module, and stop before the other tests run.
Screenshots and the servers' logs go to ``tests/browser/artifacts/`` (not committed).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from utils.instructor.course import REPO_ROOT
from utils.instructor.lab import Lab

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
SCREENSHOTS = HERE / "screenshots"
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}


def _require_browser() -> None:
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return
    message = (f"no Chromium at {CHROMIUM}: `apt-get install chromium` (Debian), or set COURSE_CHROMIUM")
    if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


# Artefacts shown in the README: artefact name -> committed name in tests/browser/screenshots/.
README_SHOTS = {
    "student-nbgrader-menu.png": "student-nbgrader-menu.png",
    "student-deformable_conv-check-failed.png": "student-check-failed.png",
    "student-deformable_conv-check-passed.png": "student-check-passed.png",
    "student-deformable_conv-validate.png": "student-validate.png",
    "instructor-formgrader-submissions-deformable_conv.png": "instructor-formgrader-submissions.png",
    "student-failure-block.png": "student-failure-block.png",
    "student-progress.png": "student-progress.png",
    "student-assignment-list.png": "student-assignment-list.png",
    "hub-instructor-released.png": "hub-released.png",
    "hub-student1-fetched.png": "hub-fetched.png",
    "hub-student2-validated.png": "hub-validate.png",
    "hub-student2-submitted.png": "hub-submitted.png",
    "hub-instructor-collected.png": "hub-collected.png",
    "hub-instructor-graded-written-answer.png": "hub-written-answer.png",
    "hub-instructor-roster.png": "hub-roster.png",
    "hub-instructor-released-feedback.png": "hub-feedback-released.png",
    "hub-student2-feedback.png": "hub-feedback.png",
}


def save_readme_screenshots(source: Path = ARTIFACTS, target: Path = SCREENSHOTS) -> list[Path]:
    """Copy the README's screenshots from a run's artefacts, as small palette PNGs."""
    from PIL import Image
    target.mkdir(exist_ok=True)
    written = []
    for name, committed in README_SHOTS.items():
        if (source / name).exists():
            with Image.open(source / name) as image:
                small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
                small.save(target / committed, optimize=True)
            written.append(target / committed)
    return written


@pytest.fixture(scope="session")
def artifacts():
    """The artefacts folder; with COURSE_UPDATE_SCREENSHOTS=1 the README's screenshots are refreshed at the end."""
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS
    if os.environ.get("COURSE_UPDATE_SCREENSHOTS") == "1":
        save_readme_screenshots()


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def browser_context(browser):
    """One context per test module, so that JupyterLab's static files are loaded once."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context, request, artifacts):
    """A fresh page; when the test fails its last state is saved as ``<test>-failed.png``."""
    pg = browser_context.new_page()
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        try:
            pg.screenshot(path=str(artifacts / f"{_safe(request.node.name)}-failed.png"))
        except Exception:   # best effort on a failing page
            pass
    pg.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _start(role: str, root: Path, home: Path, artifacts: Path) -> Lab:
    _require_browser()   # no server without a browser to look at it
    lab = Lab(role, root, home=home, log=artifacts / f"jupyter-lab-{role}.log", expose_app=True)
    started = time.monotonic()
    lab.start(timeout=180)
    print(f"\nJupyterLab ({role}) up in {time.monotonic() - started:.0f} s at {lab.base}")
    return lab


@pytest.fixture(scope="session")
def student_folder(tmp_path_factory) -> Path:
    """A student's folder: a copy of every release notebook, ``<assignment>/<notebook>.ipynb``."""
    folder = tmp_path_factory.mktemp("student")
    for notebook in sorted((REPO_ROOT / "release").glob("*/*.ipynb")):
        (folder / notebook.parent.name).mkdir(exist_ok=True)
        shutil.copy(notebook, folder / notebook.parent.name / notebook.name)
    return folder


@pytest.fixture(scope="module")
def student_lab(student_folder, tmp_path_factory, artifacts):
    lab = _start("student", student_folder, tmp_path_factory.mktemp("student-home"), artifacts)
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def instructor_lab(graded_course, tmp_path_factory, artifacts):
    lab = _start("instructor", graded_course.root, tmp_path_factory.mktemp("instructor-home"), artifacts)
    yield lab
    lab.stop()
