"""OverwriteCellsInPlace restores a locked test cell exactly as released without nbgrader's "checksum has
changed" warning, and still warns, and restores, when the student really changed the cell."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from nbformat.v4 import new_code_cell
from nbgrader import utils as nbgrader_utils

from utils.grading.preprocessors import OverwriteCellsInPlace

SOURCE = """check_patchify(patchify)
### BEGIN HIDDEN TESTS
check_patchify(patchify, hidden=True)
### END HIDDEN TESTS"""
RELEASED = "check_patchify(patchify)"


def _cell(source: str):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "test_patchify", "locked": True, "points": 1.0,
                                 "schema_version": 3, "solution": False, "task": False}
    return cell


class _Gradebook:
    def __init__(self, source_cell):
        self.source_cell = source_cell

    def find_source_cell(self, grade_id, notebook_id, assignment_id):
        return self.source_cell

    def find_graded_cell(self, grade_id, notebook_id, assignment_id):
        return SimpleNamespace(max_score=1.0)


@pytest.fixture
def overwrite():
    stored = _cell(SOURCE)
    stored.metadata.nbgrader["checksum"] = nbgrader_utils.compute_checksum(stored)
    source_cell = SimpleNamespace(name="test_patchify", cell_type="code", locked=True, source=SOURCE,
                                  checksum=stored.metadata.nbgrader["checksum"])
    pre = OverwriteCellsInPlace()
    pre.gradebook, pre.notebook_id, pre.assignment_id = _Gradebook(source_cell), "vit", "vit"
    return pre


@pytest.mark.parametrize("submitted, warned", [
    (RELEASED, False),                                   # as released: hidden tests removed for the student
    (SOURCE, False),                                     # already the stored text
    ("check_patchify(lambda x, p: x)", True),            # the student edited the locked cell
    (RELEASED + "\nprint('extra')", True),
])
def test_only_a_cell_the_student_changed_is_reported(overwrite, caplog, submitted, warned):
    cell = _cell(submitted)
    with caplog.at_level(logging.WARNING):
        overwrite.log.addHandler(caplog.handler)
        restored, _ = overwrite.preprocess_cell(cell, {}, 0)
    assert restored.source == SOURCE
    assert ("checksum" in caplog.text) is warned, caplog.text
