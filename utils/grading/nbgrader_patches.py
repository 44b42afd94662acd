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

Written for nbgrader 0.9.6: with another version a warning says what to re-check.
"""
from __future__ import annotations

import warnings

import nbgrader
from nbgrader.apps import api, autogradeapp

from utils.grading.submission_repair import RepairingAutograde

NBGRADER_VERSION = "0.9.6"


def install() -> None:
    """Apply every patch (calling it again changes nothing)."""
    if nbgrader.__version__ != NBGRADER_VERSION:
        warnings.warn(
            f"utils/grading/nbgrader_patches.py was written for nbgrader {NBGRADER_VERSION}, this is "
            f"nbgrader {nbgrader.__version__}: re-check that nbgrader.apps.autogradeapp and nbgrader.apps.api "
            "still build their converter as `Autograde(coursedir=..., parent=...)`, that Autograde.init_assignment "
            "and init_single_notebook_resources (RepairingAutograde) and OverwriteCells.add_missing_grade_cells "
            "(OverwriteCellsInPlace) keep their signatures, then update NBGRADER_VERSION.",
            stacklevel=2)
    autogradeapp.Autograde = RepairingAutograde
    api.Autograde = RepairingAutograde
