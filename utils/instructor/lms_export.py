"""The gradebook as a CSV an LMS imports: Canvas's gradebook layout, one row per student.

    nbgrader export --exporter=utils.instructor.lms_export.CanvasExportPlugin --to canvas_grades.csv
    python -m utils.instructor.term export --to canvas_grades.csv      (the same, from Python: export_lms)

nbgrader's own ``nbgrader export`` (``grades.csv``: one row per student and assignment, totals only) is
unchanged; this is a second exporter, selected by name. The file (UTF-8, comma-separated, RFC 4180 quoting):

* row 1, the header: ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then per assignment
  (gradebook order: due date, then name) one column named after the assignment (``deformable_conv``),
  followed, unless ``c.CanvasExportPlugin.question_columns = False``, by one column per graded cell
  (question) named ``<assignment>: <notebook>: <grade id>`` (``deformable_conv: deformable_conv:
  test_bilinear``);
* row 2: ``Points Possible`` in the Student column, the five identity columns otherwise empty, then each
  column's maximum points (Canvas reads a new assignment's points from this row);
* one row per student of the gradebook (last name, first name order): ``Student`` is "Last, First" (the
  id when the gradebook has no name), ``SIS Login ID`` the nbgrader id (the JupyterHub user name), and the
  roster's ``lms_user_id`` goes to ``SIS User ID`` (or to ``ID``, Canvas's own user number, with
  ``c.CanvasExportPlugin.lms_id_column = "ID"``); the other of the two and ``Section`` are empty (nbgrader
  keeps neither);
* an assignment's cell holds its score after the late penalty, ``max(0, score - late_submission_penalty)``
  (as nbgrader's ``score`` column); a question's cell its points before any penalty (nbgrader charges the
  penalty per notebook, not per question), extra credit included; numbers with at most two decimals;
* a student without a submission has empty cells (Canvas leaves such a grade untouched), or ``0`` with
  ``c.CanvasExportPlugin.missing = "zero"``; a question still waiting for a grade by hand is empty and counts
  0 in its assignment's total, which the log reports.

Canvas matches each row by ID, SIS User ID or SIS Login ID and creates an assignment for each column it does
not know; put the question columns in an assignment group that does not count (or export without them) so
that Canvas's total does not count a question twice.
"""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import Bool, Enum

IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_ROW = "Points Possible"


def points(value: float) -> str:
    """A score as the CSV writes it: at most two decimals, no trailing zeros (9, 8.1, 0.33)."""
    return f"{round(float(value), 2):g}"


class CanvasExportPlugin(ExportPlugin):
    """Canvas-style gradebook CSV: students in rows, assignments and their questions in columns (module docstring)."""

    question_columns = Bool(True, help=(
        "Write a column per graded cell (question) after each assignment's total column; False: totals only."
    )).tag(config=True)

    missing = Enum(["empty", "zero"], default_value="empty", help=(
        "What a student without a submission gets: an empty cell (Canvas leaves the grade as it is) or 0."
    )).tag(config=True)

    lms_id_column = Enum(["SIS User ID", "ID"], default_value="SIS User ID", help=(
        "The column that receives the roster's lms_user_id: 'SIS User ID' (the student number of the "
        "institution) or 'ID' (Canvas's own user number)."
    )).tag(config=True)

    def columns(self, gradebook: Gradebook) -> list[tuple[str, str, str | None, str | None, float]]:
        """(header, assignment, notebook or None, grade id or None, max points) of every grade column."""
        wanted = [str(a) for a in self.assignment]
        out = []
        for assignment in gradebook.assignments:
            if wanted and assignment.name not in wanted:
                continue
            out.append((assignment.name, assignment.name, None, None, assignment.max_score))
            if self.question_columns:
                for notebook in sorted(assignment.notebooks, key=lambda n: n.name):
                    for cell in notebook.grade_cells:   # in notebook order
                        out.append((f"{assignment.name}: {notebook.name}: {cell.name}", assignment.name,
                                    notebook.name, cell.name, cell.max_score))
        return out

    def student_row(self, gradebook: Gradebook, student, columns) -> tuple[list[str], int]:
        """The student's row, and how many questions in it still wait for a grade by hand."""
        name = ", ".join(p for p in (student.last_name, student.first_name) if p) or student.id
        identity = {"Student": name, "ID": "", "SIS User ID": "", "SIS Login ID": student.id, "Section": ""}
        identity[self.lms_id_column] = student.lms_user_id or ""
        row, pending, submissions, grades = [identity[c] for c in IDENTITY], 0, {}, {}
        for _, assignment, notebook, cell, _ in columns:
            if assignment not in submissions:
                try:
                    submissions[assignment] = gradebook.find_submission(assignment, student.id)
                except MissingEntry:
                    submissions[assignment] = None
                else:
                    for nb in submissions[assignment].notebooks:
                        for grade in nb.grades:
                            grades[(assignment, nb.name, grade.name)] = grade
            submission = submissions[assignment]
            if submission is None:
                row.append("0" if self.missing == "zero" else "")
            elif notebook is None:
                penalty = submission.late_submission_penalty or 0.0
                row.append(points(max(0.0, submission.score - penalty)))
            else:
                grade = grades.get((assignment, notebook, cell))
                if grade is None or grade.needs_manual_grade:
                    pending += grade is not None
                    row.append("")
                else:
                    row.append(points(grade.score))
        return row, pending

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "canvas_grades.csv"
        wanted = {str(s) for s in self.student}
        columns = self.columns(gradebook)
        self.log.info("Exporting the Canvas gradebook CSV to %s (%d grade columns)", dest, len(columns))
        pending_students = []
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(IDENTITY + [c[0] for c in columns])
            writer.writerow([POINTS_ROW] + [""] * (len(IDENTITY) - 1) + [points(c[4]) for c in columns])
            for student in gradebook.students:
                if wanted and student.id not in wanted:
                    continue
                row, pending = self.student_row(gradebook, student, columns)
                writer.writerow(row)
                if pending:
                    pending_students.append(f"{student.id} ({pending})")
        if pending_students:
            self.log.warning("Questions still to grade by hand (empty cells, counted 0 in the totals): %s",
                             ", ".join(pending_students))


def export_lms(root: str | Path, to: str | Path = "canvas_grades.csv", *, db_url: str | None = None,
               assignments: list[str] | None = None) -> Path:
    """``nbgrader export --exporter=utils.instructor.lms_export.CanvasExportPlugin --to <to>`` for the course
    at ``root``, in this process (settings of ``c.CanvasExportPlugin`` in its nbgrader_config.py apply);
    returns the file written (``to`` relative to ``root`` unless absolute)."""
    from nbgrader.apps import ExportApp

    root = Path(root)
    dest = Path(to) if Path(to).is_absolute() else root / to
    argv = ["--log-level=ERROR", f"--ExportApp.plugin_class={CanvasExportPlugin.__module__}.CanvasExportPlugin",
            f"--ExportPlugin.to={dest}"]
    if db_url:
        argv.append(f"--CourseDirectory.db_url={db_url}")
    argv += [f"--ExportPlugin.assignment={a}" for a in assignments or []]
    app = ExportApp()
    with contextlib.chdir(root):     # nbgrader reads nbgrader_config.py from the working directory
        app.initialize(argv)
        app.start()
    return dest
