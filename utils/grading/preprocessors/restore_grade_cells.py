"""RestoreGradeCells (sanitize phase): graded and locked cells get the metadata of their source version.

A student who edits a test cell's metadata (points, grade, solution, locked, cell type) would
otherwise get nbgrader's "Inconsistent checksums" error or change the points; here every cell
the gradebook knows is graded as the source defines it.
"""
from __future__ import annotations

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor


def _restore(cell, gb: Gradebook, notebook_id: str, assignment_id: str) -> None:
    meta = cell.metadata["nbgrader"]
    grade_id = meta["grade_id"]
    try:
        source_cell = gb.find_source_cell(grade_id, notebook_id, assignment_id)
    except MissingEntry:
        return
    try:
        graded = gb.find_graded_cell(grade_id, notebook_id, assignment_id)
    except MissingEntry:
        graded = None
    meta["grade"] = graded is not None
    if graded is None:
        meta.pop("points", None)
    elif float(meta.get("points", -1)) != float(graded.max_score):
        meta["points"] = float(graded.max_score)
    try:
        gb.find_solution_cell(grade_id, notebook_id, assignment_id)
        meta["solution"] = True
    except MissingEntry:
        meta["solution"] = False
    meta["locked"] = bool(source_cell.locked)
    if cell.cell_type != source_cell.cell_type:
        cell.cell_type = source_cell.cell_type
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)


class RestoreGradeCells(NbGraderPreprocessor):
    """Reset the nbgrader metadata of graded and locked cells to their source versions."""

    def preprocess(self, nb, resources):
        notebook_id = resources["unique_key"]
        assignment_id = resources["nbgrader"]["assignment"]
        with Gradebook(resources["nbgrader"]["db_url"]) as gb:
            for cell in nb.cells:
                if "grade_id" in (cell.metadata.get("nbgrader") or {}):
                    _restore(cell, gb, notebook_id, assignment_id)
        return nb, resources
