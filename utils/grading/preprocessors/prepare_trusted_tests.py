"""PrepareTrustedTests: before execution, replace each test cell by a call that only records outputs.

For every autograded test cell that calls course checks, the hidden cases are drawn with the
course secret for this student (:data:`~utils.grading.trusted.HIDDEN_CASES`), their inputs are
pickled for :class:`SandboxedExecute`, which writes them to ``.grading/<cell>.inputs.pkl`` in the
kernel's folder just before that cell runs (so no earlier cell can read them), and the cell
becomes a call of :func:`utils.grading.in_kernel.recording.record`. Locked demo cells are blanked.
What was replaced is handed to :class:`ApplyTrustedVerdicts` in ``resources``.
"""
from __future__ import annotations

from pathlib import Path

from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from utils.checks.registry import checks_in
from utils.grading.trusted import (
    HIDDEN_CASES,
    NOT_GRADED_MARKER,
    TRUSTED_KEY,
    cell_salt,
    course_secret,
    is_autograded_test,
    is_demo_cell,
)

DEMO_CELL_STANDIN = "# (demo cell: not run while grading)"


def recording_call(cell_id: str, checks: list[tuple[str, str]]) -> str:
    """The source that replaces a test cell: record what each checked object returns."""
    getters = ", ".join(f"({name!r}, lambda: {arg})" for name, arg in checks)
    return ("# Graded: this cell records what your code returns; the verdict is computed outside your kernel.\n"
            "from utils.grading.in_kernel.recording import record as _course_record\n"
            f"_course_record({cell_id!r}, [{getters}])")


class PrepareTrustedTests(NbGraderPreprocessor):
    """Replace each autograded test cell by a recording call on secret grading inputs."""

    secret = Unicode("", help="Grading secret; by default read from (or created in) "
                              "<course root>/.grading_secret.").tag(config=True)
    not_graded_marker = Unicode(
    NOT_GRADED_MARKER,
        help="First line of a locked, ungraded demo cell (training runs, figures) that is not run while "
             "grading; nothing graded may depend on such a cell.").tag(config=True)

    def preprocess(self, nb, resources):
        secret = self.secret or course_secret(Path(CourseDirectory(config=self.config).root))
        student = resources["nbgrader"]["student"]
        prepared, skipped = {}, {}
        for index, cell in enumerate(nb.cells):
            if is_demo_cell(cell, self.not_graded_marker):
                skipped[index] = cell.source
                cell.source = DEMO_CELL_STANDIN
                continue
            if not is_autograded_test(cell):
                continue
            cell_id = cell.metadata.nbgrader["grade_id"]
            checks = checks_in(cell.source)
            if not checks:
                continue   # a test cell without course checks is graded by nbgrader as usual
            names = [name for name, _ in checks]
            inputs = HIDDEN_CASES.pickled_inputs(names, cell_salt(secret, student, cell_id))
            prepared[cell_id] = {"source": cell.source, "checks": names, "inputs": inputs}
            cell.source = recording_call(cell_id, checks)
        resources[TRUSTED_KEY] = {"secret": secret, "student": student, "cells": prepared, "skipped": skipped}
        return nb, resources
