"""The student's notebook from the first cell to the last, in a plain ``jupyter lab`` of the course's
environment (the README's student path), driven in headless Chromium.

* Run All on an untouched release notebook runs every code cell: each check shows its "not
  implemented yet" block, each demo that needs an answer says in one line which to finish, and the
  progress overview at the end lists every exercise. The time from opening the notebook to its
  first check's feedback is printed.
* A failed check is an HTML block (case, where, likely cause, hint) whose lines wrap at spaces,
  followed by a one-line error; the progress overview then shows that exercise as failing.
* The Assignment List says plainly that notebooks come another way when there is no exchange.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest
from test_jupyterlab import (  # the browser tests' folder is on sys.path (pytest's rootdir-relative import)
    _NB,
    ARTIFACTS,
    INSTRUCTOR_ONLY,
    RUN_TIMEOUT_MS,
    _wait_kernel_idle,
    _watch_kernel,
    close_menu,
    menu,
    nbgrader_menu,
    open_lab,
    open_notebook,
    run_cells,
    shot,
    type_into_cell,
    wait_run_all_done,
)

from utils.instructor.course import REPO_ROOT
from utils.instructor.lab import Lab

RELEASE_NOTEBOOKS = sorted(p.relative_to(REPO_ROOT / "release") for p in (REPO_ROOT / "release").glob("*/*.ipynb"))
WRONG_PATCHIFY = '''def patchify(x, patch_size):
    N, C, H, W = x.shape
    P = patch_size
    patches = x.reshape(N, C, H // P, P, W // P, P).permute(0, 4, 2, 1, 3, 5)
    return patches.reshape(N, (H // P) * (W // P), C * P * P)'''


@pytest.fixture(scope="module")
def fresh_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("untouched")
    for notebook in RELEASE_NOTEBOOKS:
        (folder / notebook.parent).mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / "release" / notebook, folder / notebook)
    return folder


@pytest.fixture(scope="module")
def plain_lab(fresh_folder, tmp_path_factory, artifacts):
    """``jupyter lab`` with the environment's configuration only (what `make setup` configured)."""
    lab = Lab("plain", fresh_folder, home=tmp_path_factory.mktemp("plain-home"),
              log=artifacts / "jupyter-lab-plain.log", expose_app=True)
    lab.start(timeout=180)
    yield lab
    lab.stop()


def cell_states(page) -> list[dict]:
    """Per cell: its type, execution count, errors (name, traceback length) and HTML classes shown."""
    return page.evaluate(f"""() => {_NB}.content.widgets.map((w, i) => {{
        if (w.model.type !== 'code') return {{type: w.model.type}};
        const outputs = w.model.outputs.toJSON();
        return {{type: 'code', count: w.model.executionCount,
                 errors: outputs.filter(o => o.output_type === 'error')
                                .map(o => [o.ename, o.traceback.length, o.traceback.join('\\n')]),
                 text: outputs.map(o => o.text ? [].concat(o.text).join('') : '').join(''),
                 blocks: Array.from(w.node.querySelectorAll('.course-check, .course-progress'))
                              .map(b => b.className)}};
    }})""")


def test_plain_jupyter_lab_is_the_students_view(plain_lab, page):
    open_lab(page, plain_lab)
    labels = nbgrader_menu(page)
    close_menu(page)
    assert "Assignment List" in labels and not set(labels) & set(INSTRUCTOR_ONLY.values()), labels
    assert plain_lab.get("formgrader") == 404

    menu(page, "Nbgrader", "Assignment List")
    panel = page.locator("#nbgrader-assignment-list, .nbgrader-AssignmentList, #assignments").first
    page.get_by_text("another way", exact=False).first.wait_for(timeout=60_000)
    text = page.locator("#jp-main-dock-panel").inner_text()
    assert "Error fetching courses" not in text and "exchange directory does not exist" not in text, text[:2000]
    assert panel.count() >= 0
    shot(page, "student-assignment-list.png")


@pytest.mark.parametrize("rel", RELEASE_NOTEBOOKS, ids=[p.stem for p in RELEASE_NOTEBOOKS])
def test_run_all_on_an_untouched_notebook_runs_every_cell(plain_lab, fresh_folder, page, rel):
    nb = nbformat.read(fresh_folder / rel, as_version=4)
    first_test = next(i for i, c in enumerate(nb.cells)
                      if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
                      and not c.metadata["nbgrader"].get("solution"))
    opened = time.monotonic()
    open_notebook(page, plain_lab, rel)
    _wait_kernel_idle(page)
    _watch_kernel(page)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(f"() => {_NB}.content.widgets[{first_test}].node.querySelector('.course-check')",
                           timeout=RUN_TIMEOUT_MS, polling=100)
    first_feedback = time.monotonic() - opened
    wait_run_all_done(page)
    took = time.monotonic() - opened
    line = f"{rel}: opening to the first check's feedback {first_feedback:.1f} s; Run All done at {took:.0f} s"
    print("\n" + line)
    with open(ARTIFACTS / "first-feedback.txt", "a") as log:
        log.write(line + "\n")

    states = cell_states(page)
    code = [i for i, s in enumerate(states) if s["type"] == "code"]
    assert [i for i in code if states[i]["count"] is None] == [], "Run All stopped before these cells"
    tests = {i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")
             and not c.metadata["nbgrader"].get("solution") and c.cell_type == "code"}
    answers = {i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")}
    for i in code:
        errors = states[i]["errors"]
        if i in tests:
            assert any("course-check-todo" in b for b in states[i]["blocks"]), (i, states[i])
            assert [e[:2] for e in errors] == [["NotImplementedYet", 1]], (i, errors)
        elif i in answers:       # a stub at the top level of an answer cell raises by itself
            assert all(e[0] == "NotImplementedError" for e in errors), (i, errors)
        else:
            assert errors == [], f"demo cell {i} raised: {errors}"
    demos_waiting = [i for i in code if states[i]["text"].startswith("⏸")]
    for i in demos_waiting:
        assert states[i]["text"].count("\n") == 1 and "`" in states[i]["text"], states[i]["text"]
    overview = page.locator(".jp-NotebookPanel:visible .course-progress").last
    overview.wait_for()
    rows = overview.locator("tbody tr")
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert rows.count() == len(graded)
    assert "not implemented yet" in overview.inner_text() and "✓" not in overview.inner_text()
    if rel.stem == "vit":
        overview.scroll_into_view_if_needed()
        shot(overview, "student-progress-untouched.png")


def test_a_failed_check_is_a_readable_block_and_progress_shows_it(plain_lab, fresh_folder, page):
    rel = Path("vit/vit.ipynb")
    nb = nbformat.read(fresh_folder / rel, as_version=4)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    cells = open_notebook(page, plain_lab, rel)
    answer, check = ids.index("patchify"), ids.index("test_patchify")
    type_into_cell(page, cells, answer, WRONG_PATCHIFY)
    run_cells(page, cells, 0, check)
    block = cells.nth(check).locator(".course-check-fail")
    block.wait_for()
    text = block.inner_text()
    for label in ("Case", "Where", "Hint"):
        assert label in text, text
    assert "patchify" in text
    # Whole lines: nothing scrolls sideways, no word is broken inside.
    overflow = block.evaluate("b => Array.from(b.querySelectorAll('*')).filter(e => e.scrollWidth > e.clientWidth + 1)"
                              ".map(e => e.outerHTML.slice(0, 120))")
    assert overflow == [], overflow
    assert block.evaluate("b => getComputedStyle(b.querySelector('td')).wordBreak") == "normal"
    stderr = cells.nth(check).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 1 and stderr.inner_text().count("\n") <= 1, stderr.inner_text()
    assert "Traceback" not in cells.nth(check).inner_text() and "utils/" not in cells.nth(check).inner_text()
    page.set_viewport_size({"width": 900, "height": 800})     # a narrow window: the block wraps at spaces
    block.scroll_into_view_if_needed()
    shot(cells.nth(check).locator(".jp-OutputArea"), "student-failure-block.png")

    last = len(nb.cells) - 1
    run_cells(page, cells, last, last)
    overview = cells.nth(last).locator(".course-progress")
    overview.wait_for()
    rows = overview.locator("tbody tr").all_inner_texts()
    patchify_row = next(r for r in rows if "patchify" in r and "embed" not in r)
    assert "✗" in patchify_row and "fails" in patchify_row, rows
    overview.scroll_into_view_if_needed()
    shot(overview, "student-progress.png")
