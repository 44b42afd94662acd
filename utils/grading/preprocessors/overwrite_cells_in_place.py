"""OverwriteCellsInPlace (sanitize phase): nbgrader's OverwriteCells, but a deleted grade cell goes back
where the source notebook has it, and a test cell exactly as released is restored without a warning.

Written against nbgrader 0.9.6's ``OverwriteCells.add_missing_grade_cells``, which re-inserts a
missing grade cell after "the previous source cell" and fails with a KeyError when that cell is
an ordinary locked cell. Re-check this override when nbgrader is upgraded.

The gradebook keeps each locked cell as it was before the hidden tests were cleared, so a test cell
with hidden tests never has the stored checksum in a submission: stock nbgrader warns
"Attribute 'checksum' for cell … has changed!" for every such cell of every honest student. Here a
cell whose text is the stored one with its hidden tests cleared (what the student was given) gets
the stored text back silently; only a cell the student really changed is reported.
"""
from __future__ import annotations

import json
from pathlib import Path

from nbformat.v4 import new_code_cell
from nbgrader.api import MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, OverwriteCells


def _grade_ids(nb) -> dict[str, int]:
    """grade_id -> position of each cell of ``nb`` that has one."""
    return {cell.metadata["nbgrader"]["grade_id"]: i for i, cell in enumerate(nb.cells)
            if "grade_id" in cell.metadata.get("nbgrader", {})}


class OverwriteCellsInPlace(OverwriteCells):
    """OverwriteCells; a missing grade cell is inserted after the grade cells that precede it in the
    source notebook, or appended when that order is unknown."""

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = {cell.name: cell for cell in source_nb.source_cells}
        grade_cells = {cell.name: cell for cell in source_nb.grade_cells}
        solution_ids = {cell.name for cell in source_nb.solution_cells}
        order = self._source_order() or list(grade_cells)
        for position, grade_id in enumerate(order):
            if grade_id not in grade_cells or grade_id in _grade_ids(nb):
                continue
            self.log.warning("Grade cell %s is missing; grading it from the source version", grade_id)
            cell = self.missing_cell_transform(source_cells[grade_id], grade_cells[grade_id].max_score,
                                               is_solution=grade_id in solution_ids)
            present = _grade_ids(nb)
            before = [present[g] for g in order[:position] if g in present]
            nb.cells.insert(max(before) + 1 if before else 0, cell)
        return nb, resources

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and cell.cell_type == "code":
            try:
                source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except MissingEntry:
                source_cell = None
            if source_cell is not None and source_cell.locked and cell.source == self._as_released(source_cell.source):
                cell.source = source_cell.source
        return super().preprocess_cell(cell, resources, cell_index)

    def _as_released(self, source: str) -> str | None:
        """``source`` with its hidden tests cleared, as generate_assignment gave it to students."""
        released = new_code_cell(source)
        try:
            ClearHiddenTests(config=self.config)._remove_hidden_test_region(released)
        except RuntimeError:   # unbalanced markers: no released form to compare with
            return None
        return released.source

    def _source_order(self) -> list[str]:
        """The grade ids of the source notebook, in its order ([] when it cannot be read)."""
        course = CourseDirectory(config=self.config)
        path = Path(course.root) / course.source_directory / self.assignment_id / f"{self.notebook_id}.ipynb"
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError):
            return []
        return [c["metadata"]["nbgrader"]["grade_id"] for c in cells
                if "grade_id" in c.get("metadata", {}).get("nbgrader", {})]
