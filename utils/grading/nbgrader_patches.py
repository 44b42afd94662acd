"""Every change this course makes to nbgrader's own code, in one place; installed by nbgrader_config.py.

Everything else is configured through nbgrader's traits (preprocessor lists, the course's
preprocessor subclasses, ``SandboxedExecute.timing_hook``). These patches exist because nbgrader
0.9.6 offers no setting for them:

* ``nbgrader autograde`` and the formgrader's autograde button construct ``Autograde`` by name
  (``nbgrader.apps.autogradeapp`` and ``nbgrader.apps.api``); there is no trait for the converter
  class. Both names are pointed at :class:`~utils.grading.submission_repair.RepairingAutograde`,
  which grades unreadable and renamed notebooks with a note. The converter's own
  ``pre_convert_hook`` gets neither the converter nor the course settings, and nbgrader drops an
  unknown notebook name before any preprocessor or exporter sees it, so no hook can do this.
  RepairingAutograde also takes the submission in safely (links, special and oversized files refused).
  Both names get its subclass :class:`~utils.grading.batch_report.ReportingAutograde`, which checks
  the grading kernel before the batch (a preflight) and ends it with each submission's status,
  exiting non-zero when one could not be graded.
* ``nbgrader generate_feedback`` and the formgrader's feedback button construct ``GenerateFeedback``
  by name (``nbgrader.apps.generatefeedbackapp``, ``nbgrader.apps.api``); both names are pointed at
  :class:`~utils.grading.submission_repair.SafeGenerateFeedback`, whose copy of extra files, notebook
  writer and permission setting never follow a link (nbgrader's writer class is not a setting either).
* ``SaveAutoGrades._add_score`` flags every cell that has a manual score "needs manual grading" again
  on each autograde run, so re-grading (``--force``, as the parallel grader always does) undoes a
  grader's work on written answers. It is replaced by
  :meth:`~utils.grading.preprocessors.keep_manual_grades.KeepManualGrades._add_score`: a manual grade
  stays graded while the student's answer is the one the grader saw (its checksum, recorded in the
  gradebook table ``course_graded_answer``, which is added to nbgrader's tables here). The method is
  patched, not the class swapped, because nbgrader_config.py and nbgrader's defaults list the class
  itself, and the formgrader's autograde button must behave the same.

* ``Gradebook.add_submission`` builds a submission's notebooks, grades and comments through
  relationships while a query runs; under SQLAlchemy 2 the session's autoflush then meets objects not
  yet added and prints three ``SAWarning: Object of type <SubmittedAssignment> not in session`` per
  new submission. The method runs unchanged inside ``session.no_autoflush`` (it adds and commits the
  whole submission at its end), so nothing is flushed half-built and nothing is printed.

Written for nbgrader 0.9.6: with another version a warning says what to re-check.
"""
from __future__ import annotations

import functools
import warnings

import nbgrader
from nbgrader.api import Gradebook
from nbgrader.apps import api, autogradeapp, generatefeedbackapp
from nbgrader.preprocessors import SaveAutoGrades

from utils.grading.batch_report import ReportingAutograde
from utils.grading.preprocessors.keep_manual_grades import KeepManualGrades, graded_answer_table
from utils.grading.submission_repair import SafeGenerateFeedback

NBGRADER_VERSION = "0.9.6"


def install() -> None:
    """Apply every patch (calling it again changes nothing)."""
    if nbgrader.__version__ != NBGRADER_VERSION:
        warnings.warn(
            f"utils/grading/nbgrader_patches.py was written for nbgrader {NBGRADER_VERSION}, this is "
            f"nbgrader {nbgrader.__version__}: re-check that nbgrader.apps.autogradeapp and nbgrader.apps.api "
            "still build their converter as `Autograde(coursedir=..., parent=...)`, that Autograde.init_assignment "
            "and init_single_notebook_resources (RepairingAutograde), BaseConverter.init_destination, "
            "write_single_notebook, set_permissions, init_assignment, _format_source (RepairingAutograde, "
            "SafeGenerateFeedback, which generatefeedbackapp and api build as `GenerateFeedback(...)`) and "
            "OverwriteCells.add_missing_grade_cells (OverwriteCellsInPlace), BaseConverter.convert_notebooks, "
            "convert_single_notebook and run_post_convert_hook (ReportingAutograde) keep their signatures, "
            "that convert_notebooks still raises NbGraderException after the batch when a submission failed, "
            "and that SaveAutoGrades._add_score(cell, resources) is still where a grade's needs_manual_grade is "
            "set on each autograde run and Gradebook() still calls Base.metadata.create_all (KeepManualGrades), "
            "and that Gradebook.add_submission still builds the whole submission before adding it, "
            "then update NBGRADER_VERSION.",
            stacklevel=2)
    autogradeapp.Autograde = ReportingAutograde
    api.Autograde = ReportingAutograde
    generatefeedbackapp.GenerateFeedback = SafeGenerateFeedback
    api.GenerateFeedback = SafeGenerateFeedback
    graded_answer_table()   # in nbgrader's metadata before any Gradebook of this process is opened
    SaveAutoGrades._add_score = KeepManualGrades._add_score
    if not getattr(Gradebook.add_submission, "without_autoflush", False):
        Gradebook.add_submission = _without_autoflush(Gradebook.add_submission)


def _without_autoflush(add_submission):
    @functools.wraps(add_submission)
    def patched(self, *args, **kwargs):
        with self.db.no_autoflush:
            return add_submission(self, *args, **kwargs)
    patched.without_autoflush = True
    return patched
