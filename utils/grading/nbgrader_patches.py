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

Written for nbgrader 0.9.6: with another version a warning says what to re-check.
"""
from __future__ import annotations

import warnings

import nbgrader
from nbgrader.apps import api, autogradeapp, generatefeedbackapp

from utils.grading.batch_report import ReportingAutograde
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
            "convert_single_notebook and run_post_convert_hook (ReportingAutograde) keep their signatures, and "
            "that convert_notebooks still raises NbGraderException after the batch when a submission failed, "
            "then update NBGRADER_VERSION.",
            stacklevel=2)
    autogradeapp.Autograde = ReportingAutograde
    api.Autograde = ReportingAutograde
    generatefeedbackapp.GenerateFeedback = SafeGenerateFeedback
    api.GenerateFeedback = SafeGenerateFeedback
