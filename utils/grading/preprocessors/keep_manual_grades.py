"""KeepManualGrades: re-grading keeps a grader's score of a written answer, unless the answer changed.

The cause, in nbgrader 0.9.6: ``SaveAutoGrades._add_score`` (nbgrader/preprocessors/saveautogrades.py)
runs on every ``nbgrader autograde``, and ``--force`` (which the parallel grader always passes)
re-runs it for students already graded. For each grade cell it sets::

    if (grade.manual_score is not None) or (grade.auto_score is None):
        grade.needs_manual_grade = True

A written answer has no auto score, and once a grader scored it it has a manual score, so each run
flags it "needs manual grading" again, as if nobody had graded it. The manual score and comment stay
in the gradebook (nbgrader never overwrites them), but the formgrader lists the answer as ungraded,
the feedback and the reports read it as pending, and a grader redoes it.

What this class decides instead, for a cell whose answer is the cell itself (a solution cell that
is graded: written answers and free-response code; or a task cell):

* each autograde run records the checksum of the answer as graded (nbgrader's
  ``compute_checksum``: source, type, grade id, points) in a table of the gradebook,
  ``course_graded_answer`` (grade id -> checksum; added to nbgrader's tables, so that every
  ``Gradebook`` creates it, before any concurrent grader writes);
* a manual score stays "graded" when the answer is the one recorded by the previous run (the one
  the grader saw in the formgrader) and it was graded before this run;
* otherwise (the student's answer changed, or nothing was recorded yet, e.g. a gradebook graded
  before this course code) it needs grading again; the old manual score stays visible to the grader.

Test cells keep nbgrader's rule (a manual override is flagged for review after each run): their
checksum is the instructor's test, not the student's answer, so it cannot tell whether the result
the grader overrode is still the same.

nbgrader_patches.install() puts :meth:`KeepManualGrades._add_score` on nbgrader's ``SaveAutoGrades``,
which nbgrader_config.py lists among the autograde preprocessors; the class can also be listed in its
place.
"""
from __future__ import annotations

from nbgrader import utils
from nbgrader.api import Base
from nbgrader.preprocessors import SaveAutoGrades
from sqlalchemy import Column, String, Table, delete, insert, select

TABLE_NAME = "course_graded_answer"


def graded_answer_table() -> Table:
    """The table grade id -> checksum of the answer last autograded, in nbgrader's metadata (created once)."""
    existing = Base.metadata.tables.get(TABLE_NAME)
    if existing is not None:
        return existing
    return Table(TABLE_NAME, Base.metadata,
                 Column("grade_id", String(32), primary_key=True),   # nbgrader's Grade.id
                 Column("checksum", String(128), nullable=False))


def is_answer_cell(cell) -> bool:
    """A cell the student writes and a grader scores: a graded solution cell, or a task cell."""
    return (utils.is_solution(cell) and utils.is_grade(cell)) or utils.is_task(cell)


class KeepManualGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades, keeping a manual grade's "graded" state while the answer is unchanged."""

    def _add_score(self, cell, resources) -> None:
        # Written without super(): nbgrader_patches.install() puts this method on SaveAutoGrades itself.
        gradebook = self.gradebook
        grade = gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                     self.assignment_id, self.student_id)
        graded_before = grade.manual_score is not None and not grade.needs_manual_grade
        grade.auto_score, _ = utils.determine_grade(cell, self.log)

        if grade.manual_score is None:
            grade.needs_manual_grade = grade.auto_score is None
        elif is_answer_cell(cell):
            grade.needs_manual_grade = not (
                graded_before and recorded_checksum(gradebook.db, grade.id) == utils.compute_checksum(cell))
        else:
            grade.needs_manual_grade = True
        if is_answer_cell(cell):
            record_checksum(gradebook.db, grade.id, utils.compute_checksum(cell))
        gradebook.db.commit()


def recorded_checksum(session, grade_id: str) -> str | None:
    """The checksum of the answer the previous autograde run saw for this grade, or None."""
    table = graded_answer_table()
    return session.execute(select(table.c.checksum).where(table.c.grade_id == grade_id)).scalar_one_or_none()


def record_checksum(session, grade_id: str, checksum: str) -> None:
    table = graded_answer_table()
    session.execute(delete(table).where(table.c.grade_id == grade_id))
    session.execute(insert(table).values(grade_id=grade_id, checksum=checksum))
