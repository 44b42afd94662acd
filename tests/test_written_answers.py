"""Written answers, end to end on a small course: rubric for graders only, manual grades kept, feedback refreshed.

One assignment with a code exercise and a written question (model answer and mark scheme in the
source notebook), two students. Checked in order, with the course's nbgrader_config.py:
the release holds neither the model answer nor the rubric; feedback before any grader reads
"pending", not 0; a grader's score and comment survive ``autograde --force`` while the answer is
unchanged (utils/grading/preprocessors/keep_manual_grades.py), and ``refresh_feedback`` then
regenerates only that student's page; the formgrader's page shows the rubric and model answer,
the feedback page does not; a changed answer needs grading again.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import bs4
import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.rubric import rubric_and_model_answer
from utils.instructor.course import REPO_ROOT, nbgrader, nbgrader_metadata
from utils.instructor.feedback import page_fingerprint, refresh_feedback

ASSIGNMENT = "w"
MODEL_ANSWER = "The model answer: a sigmoid of zero is one half."
RUBRIC = "1 point for sigmoid(0) = 0.5; 1 point for the factor one half."
WRITTEN = ("### BEGIN SOLUTION\n" + MODEL_ANSWER + "\n### BEGIN MARK SCHEME\n" + RUBRIC
           + "\n### END MARK SCHEME\n### END SOLUTION")
ANSWERS = {"ana": "Ana's answer: it halves the output.", "ben": "Ben's answer: nothing happens."}


def autograde(root: Path, *only: str) -> None:
    """``nbgrader autograde --force``, as the parallel grader runs it: everyone, or the students ``only``."""
    students = [f"--student={s}" for s in only]
    nbgrader("autograde", ASSIGNMENT, "--force", *students, root=root, timeout=300)


def submit(root: Path, student: str, answer: str) -> None:
    nb = nbformat.read(root / "release" / ASSIGNMENT / "w.ipynb", as_version=4)
    nb.cells[1].source = "print('ok')"
    nb.cells[2].source = answer
    folder = root / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "w.ipynb")


def written_grade(root: Path, student: str):
    """(manual score, needs manual grade, manual comment) of the written answer, read from the gradebook."""
    from nbgrader.api import Gradebook
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        grade = gb.find_grade("written", "w", ASSIGNMENT, student)
        comment = gb.find_comment("written", "w", ASSIGNMENT, student)
        return grade.manual_score, grade.needs_manual_grade, comment.manual_comment


def feedback_page(root: Path, student: str) -> str:
    return (root / "feedback" / student / ASSIGNMENT / "w.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """Released, submitted by ana and ben, autograded and given feedback; nobody graded by hand yet."""
    root = tmp_path_factory.mktemp("written-answers-course")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                "language_info": {"name": "python"}})
    nb.cells = [
        new_markdown_cell("Explain what the layer does at initialization.",
                          metadata=nbgrader_metadata("q", locked=True)),
        new_code_cell("### BEGIN SOLUTION\nprint('ok')\n### END SOLUTION",
                      metadata=nbgrader_metadata("code", solution=True)),
        new_markdown_cell(WRITTEN, metadata=nbgrader_metadata("written", solution=True, points=2.0)),
    ]
    nbformat.write(nb, root / "source" / ASSIGNMENT / "w.ipynb")
    nbgrader("generate_assignment", ASSIGNMENT, "--force", root=root, timeout=300)
    for student, answer in ANSWERS.items():
        submit(root, student, answer)
    autograde(root)
    nbgrader("generate_feedback", ASSIGNMENT, "--force", root=root, timeout=300)
    return root


def test_the_source_cell_splits_into_rubric_and_model_answer():
    assert rubric_and_model_answer(WRITTEN) == (RUBRIC, MODEL_ANSWER)
    assert rubric_and_model_answer("just text") == ("", "")


def test_every_written_question_of_the_course_has_a_rubric():
    for path in sorted(REPO_ROOT.glob("source/*/*.ipynb")):
        written = [c for c in nbformat.read(path, as_version=4).cells
                   if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")
                   and c.metadata["nbgrader"].get("grade")]
        for cell in written:
            rubric, model_answer = rubric_and_model_answer(cell.source)
            assert "point" in rubric and len(model_answer) > 100, f"{path.name}: {cell.metadata.nbgrader.grade_id}"


def test_the_release_holds_neither_rubric_nor_model_answer(course):
    released = (course / "release" / ASSIGNMENT / "w.ipynb").read_text(encoding="utf-8")
    assert "YOUR ANSWER HERE" in released
    for secret in (RUBRIC, MODEL_ANSWER, "MARK SCHEME"):
        assert secret not in released


def test_feedback_before_grading_says_pending_not_zero(course):
    assert written_grade(course, "ana") == (None, True, None)
    page = feedback_page(course, "ana")
    toc = bs4.BeautifulSoup(page, "html.parser").find(id="toc").get_text(" ", strip=True)
    assert "Written response (Score: pending (graded by hand) / 2.0)" in toc
    assert "<h4>w (Score: 0.0 / 2.0, plus 2.0 points pending)</h4>" in page
    heading = bs4.BeautifulSoup(page, "html.parser").find("a", attrs={"name": "written"}).find_next("div")
    assert heading.find("span", class_="cell-score").get_text() == "Score: pending (graded by hand) / 2.0"
    assert re.fullmatch(r"[0-9a-f]{64}", page_fingerprint(course / "feedback" / "ana" / ASSIGNMENT / "w.html"))


def test_a_manual_grade_survives_regrading_and_refreshes_only_that_feedback(course):
    from nbgrader.api import Gradebook
    with Gradebook(sqlite_gradebook_url(course)) as gb:   # what the formgrader does when a grader saves
        grade = gb.find_grade("written", "w", ASSIGNMENT, "ana")
        grade.manual_score, grade.needs_manual_grade = 1.5, False
        gb.find_comment("written", "w", ASSIGNMENT, "ana").manual_comment = "Say why the factor is one half."
        gb.db.commit()
    ben_before = feedback_page(course, "ben")

    autograde(course)
    assert written_grade(course, "ana") == (1.5, False, "Say why the factor is one half.")
    assert written_grade(course, "ben") == (None, True, None)

    assert refresh_feedback(course, ASSIGNMENT) == ["ana"]
    page = feedback_page(course, "ana")
    assert "<h4>w (Score: 1.5 / 2.0)</h4>" in page
    assert "pending" not in bs4.BeautifulSoup(page, "html.parser").body.get_text()
    assert "Written response (Score: 1.5 / 2.0)" in bs4.BeautifulSoup(page, "html.parser").find(id="toc").get_text(
        " ", strip=True)
    assert "Say why the factor is one half." in page
    assert feedback_page(course, "ben") == ben_before

    autograde(course, "ana")   # any number of runs
    assert written_grade(course, "ana") == (1.5, False, "Say why the factor is one half.")
    assert refresh_feedback(course, ASSIGNMENT) == [], "nothing the pages show changed since"


def test_the_formgrader_shows_rubric_and_model_answer_and_the_feedback_does_not(course):
    from nbgrader.server_extensions.formgrader.formgrader import FormgradeExtension
    from traitlets.config.loader import PyFileConfigLoader

    config = FormgradeExtension().build_extra_config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config())
    resources = {"assignment_id": ASSIGNMENT, "notebook_id": "w", "submission_id": "x", "index": 0, "total": 1,
                 "base_url": "", "student": "ana", "last_name": None, "first_name": None,
                 "notebook_path": "autograded/ana/w/w.ipynb"}
    page, _ = HTMLExporter(config=config).from_notebook_node(
        nbformat.read(course / "autograded" / "ana" / ASSIGNMENT / "w.ipynb", as_version=4), resources=resources)
    soup = bs4.BeautifulSoup(page, "html.parser")
    boxes = soup.find_all("div", class_="course-rubric")
    assert len(boxes) == 1, "one manually graded cell, one box"
    box = boxes[0]
    assert "Rubric (graders only)" in box.get_text() and RUBRIC in box.get_text() and MODEL_ANSWER in box.get_text()
    grading_box = box.find_next("div", class_="nbgrader_cell")
    assert grading_box.find("input", id="written") is not None, "the box stands above the written answer's score"
    assert "div.course-rubric" in page, "the box is styled"

    for student in ANSWERS:
        feedback = feedback_page(course, student)
        for secret in (RUBRIC, MODEL_ANSWER, "Rubric (graders only)", "MARK SCHEME"):
            assert secret not in feedback


def test_a_changed_answer_needs_grading_again(course):
    submit(course, "ana", "Ana's second answer, after the grader saw the first.")
    autograde(course, "ana")
    assert written_grade(course, "ana") == (1.5, True, "Say why the factor is one half."), \
        "the old score stays visible to the grader, the answer is flagged"
    autograde(course, "ana")
    assert written_grade(course, "ana")[1] is True, "still pending until a grader looks again"
