"""The student and the instructor paths in a real JupyterLab, driven in headless Chromium.

Student (``python -m utils.instructor.lab student``, a copy of each release notebook): the
instructor-only nbgrader panels are absent; in every release notebook, paste the instructor's
answers into answer cells, Run All and see each answered check's ✓, click Validate and read the
expected verdict, then paste a typical mistake and see its check name it.

Instructor (``python -m utils.instructor.lab instructor`` in the graded course root): the
nbgrader panels are there, and the formgrader lists every assignment and the demo's submissions
with their scores.

Screenshots: ``tests/browser/artifacts/``; with ``COURSE_UPDATE_SCREENSHOTS=1`` the README's few
are copied, as small PNGs, to ``tests/browser/screenshots/`` (committed).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest

from utils.instructor.course import REPO_ROOT, apply_mistake, solution_cells
from utils.instructor.samples import mistakes_for

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"          # the conftest's ``artifacts`` fixture creates it
RELEASE_NOTEBOOKS = sorted(p.relative_to(REPO_ROOT / "release")
                           for p in (REPO_ROOT / "release").glob("*/*.ipynb"))
INSTRUCTOR_ONLY = {  # command id -> Nbgrader-menu label
    "nbgrader:open-formgrader": "Formgrader",
    "nbgrader:open-course-list": "Course List",
    "nbgrader:open-create-assignment": "Create assignment",
}
RUN_TIMEOUT_MS = 300_000   # a notebook's checks on loop-based answers
# Solved completely (written answers too) and validated to "Success"; the others are solved up to
# one exercise (see test_student_solves_and_validates), which keeps the whole test within minutes.
FULL_SOLVE = {"deformable_conv/deformable_conv.ipynb"}


# ----------------------------------------------------------------------------- page helpers

def shot(target, name: str) -> Path:
    """Screenshot a page or a locator into the artefacts folder."""
    path = ARTIFACTS / name
    target.screenshot(path=str(path))
    return path


def open_lab(page, lab, path: str = "lab") -> None:
    page.goto(lab.url(f"{path}?reset"))    # ?reset: a fresh workspace, not the last test's tabs
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined")
    page.locator("#jp-main-dock-panel").wait_for()
    page.locator(".lm-MenuBar-item", has_text="Nbgrader").wait_for()


def nbgrader_menu(page) -> list[str]:
    """Labels of the Nbgrader menu's items (the menu is opened and closed again)."""
    page.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
    menu = page.locator(".lm-Menu:visible").last
    menu.wait_for()
    labels = [t.strip() for t in menu.locator(".lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel")
              .all_inner_texts()]
    return labels


def close_menu(page) -> None:
    page.keyboard.press("Escape")
    page.locator(".lm-Menu").first.wait_for(state="hidden")


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=top).click()
    page.locator(".lm-Menu:visible .lm-Menu-item", has_text=re.compile(rf"^\s*{re.escape(item)}")).first.click()


def commands(page, ids) -> dict[str, bool]:
    return page.evaluate("ids => Object.fromEntries(ids.map(i => [i, window.jupyterapp.commands.hasCommand(i)]))",
                         list(ids))


def right_sidebar_tabs(page) -> list[str]:
    return page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tab").evaluate_all(
        "tabs => tabs.map(t => (t.getAttribute('title') || '') + ' ' + t.textContent)")


_NB = "window.jupyterapp.shell.currentWidget"


def open_notebook(page, lab, rel: Path):
    """Open a notebook; its kernel may still be starting (run_all waits for it)."""
    open_lab(page, lab, f"lab/tree/{rel.as_posix()}")
    page.wait_for_function(f"() => {_NB} && {_NB}.content && {_NB}.content.widgets.length > 0 "
                           f"&& {_NB}.sessionContext.session && {_NB}.sessionContext.session.kernel",
                           timeout=RUN_TIMEOUT_MS)
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")


def _wait_kernel_idle(page) -> None:
    page.wait_for_function(f"() => {_NB}.sessionContext.session.kernel.status === 'idle'",
                           timeout=RUN_TIMEOUT_MS, polling=250)


def cell_source(page, index: int) -> str:
    return page.evaluate(f"i => {_NB}.content.widgets[i].model.sharedModel.getSource()", index)


def type_into_cell(page, cells, index: int, text: str) -> None:
    """Replace a cell's text the way a student does: click into its editor, select all, paste."""
    cell = cells.nth(index)
    cell.scroll_into_view_if_needed()
    editor = cell.locator(".cm-content")
    if not editor.is_visible():          # a rendered Markdown cell: select it, Enter edits it
        cell.click()
        page.keyboard.press("Enter")
    editor.click()
    page.keyboard.press("Control+a")
    editor.evaluate("""(el, text) => {
        const data = new DataTransfer();
        data.setData('text/plain', text);
        el.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }""", text)
    page.keyboard.press("Escape")
    assert cell_source(page, index).strip() == text.strip(), f"cell {index}: the pasted answer did not arrive"


def run_all(page) -> float:
    """Run ▸ Run All Cells, and wait until the kernel has run every queued cell (or stopped at an error)."""
    _wait_kernel_idle(page)
    started = time.monotonic()
    _watch_kernel(page)
    menu(page, "Run", "Run All Cells")
    wait_run_all_done(page)
    return time.monotonic() - started


def wait_run_all_done(page) -> None:
    """Run All has reached the last code cell and the kernel is idle.

    The kernel's idle moments between cells are not enough: after a cell fails, JupyterLab clears
    the "[*]" of the cells still queued, though the kernel (told not to stop on that error) runs them.
    """
    page.wait_for_function(
        f"""() => {{ const code = {_NB}.content.widgets.filter(w => w.model.type === 'code');
                    return code.length && code[code.length - 1].model.executionCount !== null; }}""",
        timeout=RUN_TIMEOUT_MS, polling=250)
    _wait_kernel_done(page)


def _watch_kernel(page) -> None:
    page.evaluate(f"""() => {{
        window.__courseBusy = false;
        const kernel = {_NB}.sessionContext.session.kernel;
        kernel.statusChanged.connect((_, status) => {{ if (status === 'busy') window.__courseBusy = true; }});
    }}""")


def _wait_kernel_done(page) -> None:
    """After _watch_kernel: the kernel has been busy, is idle again, and no cell waits to run."""
    page.wait_for_function(
        f"""() => window.__courseBusy
            && {_NB}.sessionContext.session.kernel.status === 'idle'
            && !Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt'))
                   .some(p => p.textContent.includes('*'))""",
        timeout=RUN_TIMEOUT_MS, polling=250)


def notebook_errors(page) -> list[str]:
    return page.evaluate(f"""() => {_NB}.content.widgets.flatMap((w, i) => w.model.type !== 'code' ? [] :
        w.model.outputs.toJSON().filter(o => o.output_type === 'error')
         .map(o => `cell ${{i}}: ${{o.ename}}: ${{String(o.evalue).slice(0, 300)}}`))""")


# ----------------------------------------------------------------------------- student

def test_student_sees_no_instructor_panels(student_lab, page):
    open_lab(page, student_lab)
    page.locator(".jp-DirListing-item").first.wait_for()   # the file browser has listed the folder
    labels = nbgrader_menu(page)
    shot(page, "student-nbgrader-menu.png")
    close_menu(page)
    assert "Assignment List" in labels
    assert not set(labels) & set(INSTRUCTOR_ONLY.values()), labels
    assert not any(commands(page, INSTRUCTOR_ONLY).values()), "an instructor command is registered"
    assert commands(page, ["nbgrader:open-assignment-list"]) == {"nbgrader:open-assignment-list": True}
    assert not any("Create Assignment" in t for t in right_sidebar_tabs(page))
    assert page.locator("#nbgrader-create_assignemnt").count() == 0
    # The server side is off too: no formgrader, no course list.
    assert student_lab.get("formgrader") == 404
    assert student_lab.get("formgrader/api/courses") == 404


def _test_cells(nb) -> list[int]:
    """Indices of the autograded test cells that call a check."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution") and "check_" in c.source]


def run_cells(page, cells, first: int, last: int) -> None:
    """Select cell ``first`` and press Shift+Enter until cell ``last`` has run."""
    cells.nth(first).locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Escape")
    _watch_kernel(page)
    for _ in range(first, last + 1):
        page.keyboard.press("Shift+Enter")
    _wait_kernel_done(page)


def validation_dialog(page) -> tuple[str, list[str]]:
    """Click Validate (it saves first); the dialog's text and the ``<pre>`` blocks it lists."""
    page.locator(".jp-NotebookPanel:visible .jp-NotebookPanel-toolbar").get_by_text("Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=RUN_TIMEOUT_MS)
    return dialog.inner_text(), [t.strip() for t in dialog.locator("pre").all_inner_texts()]


@pytest.mark.parametrize("rel", RELEASE_NOTEBOOKS, ids=[p.as_posix() for p in RELEASE_NOTEBOOKS])
def test_student_solves_and_validates(student_lab, student_folder, page, rel):
    """Paste answers, run all cells, see the ✓; Validate; then a typical mistake and its diagnosis.

    Notebooks in FULL_SOLVE get every answer (written ones too) and must validate with "Success".
    In the others the student answers the exercises up to the one with a sample mistake (else
    the first): Run All runs on past the unanswered exercises (their checks say "not implemented
    yet"), and Validate lists the checks still to do and none of the answered ones. That keeps the
    test within its time however long the later exercises run.
    """
    assignment, stem = rel.parent.name, rel.stem
    tag = stem if stem == assignment else f"{assignment}-{stem}"
    path = student_folder / rel
    nb = nbformat.read(path, as_version=4)
    answers = solution_cells(REPO_ROOT / "source" / rel)
    answer_cells = {i: c.metadata["nbgrader"]["grade_id"] for i, c in enumerate(nb.cells)
                    if c.metadata.get("nbgrader", {}).get("solution")}
    code_answers = [i for i in answer_cells if nb.cells[i].cell_type == "code"]
    tests = _test_cells(nb)
    assert code_answers and tests, f"{rel}: no answer or no check cell"
    mistake = next((m for m in mistakes_for(assignment) if m.notebook == stem), None)
    if rel.as_posix() in FULL_SOLVE:
        filled = list(answer_cells)
    else:
        target = next((i for i in code_answers if answer_cells[i] == mistake.cell), None) if mistake else None
        target = target if target is not None else code_answers[0]
        filled = [i for i in code_answers if i <= target]
    unanswered = [i for i in code_answers if i not in filled]
    stop = unanswered[0] if unanswered else len(nb.cells)
    passing, failing = [i for i in tests if i < stop], [i for i in tests if i > stop]
    assert passing, f"{rel}: no check between the answered exercises and the next unanswered one"

    cells = open_notebook(page, student_lab, rel)
    assert cells.count() == len(nb.cells)

    # 1. The instructor's answers, Run All: every check up to the next unanswered exercise shows ✓.
    for i in filled:
        type_into_cell(page, cells, i, answers[answer_cells[i]])
    took = run_all(page)
    errors = notebook_errors(page)
    # Run All goes on past the unanswered exercises: every code cell ran, and only theirs failed.
    assert not page.evaluate(f"() => {_NB}.content.widgets.some(w => w.model.type === 'code' "
                             "&& w.model.executionCount === null)"), "Run All stopped early"
    for error in errors:   # the first unanswered cell itself raises where its stub runs at the top level (a dict)
        assert int(error.split(":")[0].split()[1]) >= stop, errors
        assert error.split(": ")[1] in ("NotImplementedError", "NotImplementedYet"), errors
    assert bool(errors) == bool(unanswered), errors
    for i in passing:
        out = cells.nth(i).locator(".jp-OutputArea")
        assert out.locator(".course-check-pass").count() >= 1, f"cell {i}: {out.inner_text()[:500]}"
        assert "✓ Passed" in out.inner_text()
    shot(cells.nth(passing[-1]), f"student-{tag}-check-passed.png")
    print(f"\n{rel}: {len(filled)} answers pasted, Run All took {took:.0f} s")

    # 2. Validate (it saves first): success, or exactly the checks still to do.
    started = time.monotonic()
    text, listed = validation_dialog(page)
    shot(page, f"student-{tag}-validate.png")
    print(f"{rel}: Validate took {time.monotonic() - started:.0f} s")
    if set(filled) == set(answer_cells):
        assert "Success! Your notebook passes all the tests." in text, text
    else:
        assert "failed" in text, text
        for i in failing:
            assert nb.cells[i].source.strip() in listed, f"cell {i} not listed as failing:\n{text[:2000]}"
        for i in passing:
            assert nb.cells[i].source.strip() not in listed, f"cell {i} listed as failing:\n{text[:2000]}"
    page.locator(".jp-Dialog").get_by_role("button", name="Ok").click()
    saved = nbformat.read(path, as_version=4)
    for i in filled:
        assert saved.cells[i].source.strip() == answers[answer_cells[i]].strip(), f"{answer_cells[i]} not saved"

    # 3. A typical mistake in one answer: run it and its check; the check names the mistake, as text.
    if mistake is None:
        return
    index = next(i for i in code_answers if answer_cells[i] == mistake.cell)
    check = next(i for i in tests if i > index)
    type_into_cell(page, cells, index, apply_mistake(answers, mistake)[mistake.cell])
    run_cells(page, cells, index, check)
    report = cells.nth(check).locator(".jp-OutputArea").inner_text()
    assert "✗ " in report and mistake.diagnosis in report, report
    assert "Traceback" not in report and "utils/" not in report, report   # the report, not our frames
    assert cells.nth(check).locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() >= 1
    shot(cells.nth(check), f"student-{tag}-check-failed.png")


# ----------------------------------------------------------------------------- instructor

def test_instructor_sees_the_formgrader(instructor_lab, graded_course, page):
    open_lab(page, instructor_lab)
    labels = nbgrader_menu(page)
    shot(page, "instructor-nbgrader-menu.png")
    close_menu(page)
    assert {"Assignment List", "Course List", "Formgrader"} <= set(labels), labels
    assert all(commands(page, INSTRUCTOR_ONLY).values())
    assert any("Create Assignment" in t for t in right_sidebar_tabs(page))

    # Nbgrader ▸ Formgrader: the formgrader's pages in a JupyterLab tab, the file browser folded away.
    page.set_viewport_size({"width": 1440, "height": 900})
    menu(page, "View", "File Browser")
    menu(page, "Nbgrader", "Formgrader")
    frame = page.frame_locator("#formgrader iframe")
    table = frame.locator("#main-table")
    def row_of(name):
        return table.locator("tr", has=frame.locator("td", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")))

    for name in graded_course.names:
        row_of(name).wait_for()
    listed = _rows(table)
    table.scroll_into_view_if_needed()
    shot(page, "instructor-formgrader-assignments.png")
    demo_students = {name: [o for o in graded_course.outcomes if o.assignment == name]
                     for name in graded_course.names}
    for name in graded_course.names:
        row = next((r for r in listed if r[0] == name), None)
        assert row is not None, f"{name} not in the formgrader's assignments: {listed}"
        assert int(row[8]) >= len(demo_students[name]), f"{name}: {row}"

    # Each assignment's submissions: every demo student with the gradebook's score.
    for name in graded_course.names:
        row_of(name).locator("td.num-submissions a").click()
        frame.locator("#main-table td.student-id", has_text="solution").wait_for()
        rows = {r[1]: r for r in _rows(frame.locator("#main-table"))}
        frame.locator("#main-table").scroll_into_view_if_needed()
        shot(page, f"instructor-formgrader-submissions-{name}.png")
        for o in demo_students[name]:
            assert o.student in rows, f"{name}: {o.student} not listed: {sorted(rows)}"
            score, max_score = (float(x) for x in rows[o.student][4].split("/"))
            written = float(o.written_score) if o.written_score != "pending" else 0.0
            assert score == pytest.approx(o.code_score + written, abs=0.01), (name, rows[o.student])
            assert max_score == pytest.approx(o.max_code_score + o.max_written_score, abs=0.01)
        frame.get_by_role("link", name="Manage Assignments").click()
        table.locator("td.num-submissions a").first.wait_for()


def _rows(table) -> list[list[str]]:
    """The cells' texts of a formgrader table's body rows."""
    return table.locator("tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(td => td.textContent.trim()))")
