"""ContinueAfterErrors: *Run All* in JupyterLab goes on past a cell that raises.

Release phase (``c.GenerateAssignment.preprocessors``). JupyterLab stops *Run All* at the first
cell that raises, so a notebook with one unfinished exercise never ran its later figures. A code
cell tagged ``raises-exception`` is executed with ``stop_on_error=False``: its error is shown and
the cells after it still run. The error still counts: Validate and autograde grade a test cell by
its error output, whatever its tags.
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode


class ContinueAfterErrors(NbGraderPreprocessor):
    """Tag every code cell of the student's version so that an error does not stop *Run All*."""

    tag = Unicode("raises-exception",
                  help="The cell tag JupyterLab (and nbclient) read as 'an error here does not stop the "
                       "run'.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if self.tag not in tags:
                tags.append(self.tag)
        return cell, resources
