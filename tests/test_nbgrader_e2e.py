"""The instructor's nbgrader cycle, end to end, on a copy of the course.

Solution → full marks; untouched release → 0 without crashing; each sample mistake →
a partial score whose feedback HTML names the mistake; grades export to CSV.
"""
import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor.course import nbgrader


@pytest.fixture(scope="module")
def course(graded_course) -> Path:
    return graded_course.root


@pytest.fixture(scope="module")
def outcomes(graded_course):
    return graded_course.outcomes


def test_every_sample_submission_gets_the_expected_grade(outcomes):
    wrong = [f"{o.student}/{o.assignment}: {o.code_score:g}/{o.max_code_score:g}, expected {o.expectation}"
             for o in outcomes if not o.met]
    assert not wrong, "\n".join(wrong)
    for name in graded_course_names(outcomes):
        students = {o.student for o in outcomes if o.assignment == name}
        assert students >= {"solution", "untouched"} and len(students) >= 3, (name, students)


def graded_course_names(outcomes):
    return sorted({o.assignment for o in outcomes})


def test_export_writes_every_submission(course, outcomes):
    with open(course / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    graded = {(r["student_id"], r["assignment"]) for r in rows if r["timestamp"] or float(r["score"]) >= 0}
    for o in outcomes:
        assert (o.student, o.assignment) in graded
    solution = [r for r in rows if r["student_id"] == "solution"]
    assert solution and all(float(r["raw_score"]) > 0 for r in solution)


def test_a_submitted_utils_module_cannot_shadow_the_checks(course, outcomes):
    """A student ships utils.py whose checks always pass, with an untouched notebook: still 0."""
    student, assignment = "shadow_utils", "deformable_conv"
    folder = course / "submitted" / student / assignment
    shutil.copytree(course / "release" / assignment, folder)
    (folder / "utils.py").write_text(
        "def _ok(*args, **kwargs):\n    return None\n"
        "check_bilinear_interpolate = check_conv_output_size = check_deform_conv2d = check_sampling_positions = _ok\n")
    (folder / "utils").mkdir()
    (folder / "utils" / "__init__.py").write_text((folder / "utils.py").read_text())
    nbgrader("autograde", assignment, "--force", f"--student={student}", root=course, check=False)
    assert not (course / "autograded" / student / assignment / "utils.py").exists()
    from nbgrader.api import Gradebook
    with Gradebook(sqlite_gradebook_url(course)) as gb:
        assert gb.find_submission(assignment, student).code_score == 0


def test_harmless_stderr_is_filtered_but_real_errors_are_kept():
    from utils.grading.preprocessors import FilterHarmlessStderr
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=(
            "/x/torch/nn/functional.py:12: UserWarning: something harmless\n"
            "  warnings.warn(\n"
            "100%|██████████| 10/10 [00:01<00:00,  9.5it/s]\n")),
        nbformat.v4.new_output("stream", name="stderr", text="Traceback: real problem\n"),
    ]
    nb, _ = FilterHarmlessStderr().preprocess(nb, {})
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1 and outputs[0].text == "Traceback: real problem\n"


def test_demo_cells_are_not_run_while_grading(course, outcomes):
    """Locked demo cells (training runs, figures) marked for it are kept but not executed by the autograder."""
    from utils.grading.trusted import NOT_GRADED_MARKER
    marked = 0
    for notebook in sorted((course / "autograded" / "solution").glob("*/*.ipynb")):
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "code" and cell.source.startswith(NOT_GRADED_MARKER):
                marked += 1
                assert cell.outputs == [], f"{notebook.name}: a demo cell was executed while grading"
            elif cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
                assert not any(o.get("output_type") == "error" for o in cell.outputs), notebook.name
    in_source = sum(NOT_GRADED_MARKER in path.read_text() for path in (course / "source").glob("*/*.ipynb")
                    if path.parent.name in {o.assignment for o in outcomes})
    if not in_source:
        pytest.skip("none of the graded assignments has demo cells")
    assert marked > 0
