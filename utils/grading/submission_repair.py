"""RepairingAutograde: ``nbgrader autograde`` that grades what a student meant to submit, and says so.

* a notebook that is not valid JSON is graded as the empty release notebook, with a note that
  names the error (instead of the student silently missing from the batch);
* a renamed notebook (e.g. ``deformable_conv (1).ipynb``) is graded under its expected name when
  it is the only unknown notebook in the submission.

The repaired notebook, with the note as its first cell, is written to a temporary folder; nbgrader
reads the student, assignment and notebook ids from the submitted path, so it is given the path
the notebook should have had. ``nbgrader autograde`` itself uses this class through
:mod:`utils.grading.nbgrader_patches`; the parallel grader uses it directly.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile

import nbformat
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde


def _notice(text: str):
    return nbformat.v4.new_markdown_cell(f"**Grading note:** {text}")


class RepairingAutograde(Autograde):
    """nbgrader's Autograde; unreadable and renamed notebooks are graded with a note (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._graded_as: dict[str, str] = {}   # repaired notebook -> the submitted path it stands for
        self._repaired_dir = ""

    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        # Before nbgrader's own checks, which skip unknown notebook names.
        try:
            self._repair(assignment_id, student_id)
        finally:
            super().init_assignment(assignment_id, student_id)

    def init_single_notebook_resources(self, notebook_filename: str):
        graded_as = self._graded_as.get(os.path.abspath(notebook_filename))
        return super().init_single_notebook_resources(graded_as or notebook_filename)

    def _release_notebook(self, assignment_id: str, name: str):
        folder = self.coursedir.format_path(self.coursedir.release_directory, ".", assignment_id)
        return nbformat.read(os.path.join(folder, f"{name}.ipynb"), as_version=4)

    def _write_repaired(self, nb, name: str) -> str:
        if not self._repaired_dir:
            self._repaired_dir = tempfile.mkdtemp(prefix="course-repaired-")
            atexit.register(shutil.rmtree, self._repaired_dir, True)
        folder = tempfile.mkdtemp(dir=self._repaired_dir)   # the same notebook names recur across students
        target = os.path.join(folder, f"{name}.ipynb")
        nbformat.write(nb, target)
        return target

    def _repair(self, assignment_id: str, student_id: str) -> None:
        folder = self.coursedir.format_path(self.coursedir.submitted_directory, student_id, assignment_id)
        try:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
                expected = [nb.name for nb in gb.find_assignment(assignment_id).notebooks]
        except Exception:
            return   # nbgrader itself reports a missing assignment
        present = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(folder, "*.ipynb"))}
        unknown = [p for name, p in present.items() if name not in expected]
        for name in expected:
            path = present.get(name)
            note = None
            if path is None and len(unknown) == 1:
                path = unknown[0]
                note = (f"your notebook was submitted as `{os.path.basename(path)}`; it was graded as "
                        f"`{name}.ipynb`. Keep the original file name next time.")
            if path is None:
                continue
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception as exc:   # any unreadable file is reported, not fatal
                nb = self._release_notebook(assignment_id, name)
                note = (f"`{os.path.basename(path)}` could not be read as a notebook "
                        f"({type(exc).__name__}: {str(exc)[:200]}). It was graded as an empty submission; "
                        "ask your instructor to regrade a repaired file.")
            if note is None:
                continue
            self.log.warning("%s/%s: %s", student_id, assignment_id, note)
            nb.cells.insert(0, _notice(note))
            target = self._write_repaired(nb, name)
            self.notebooks = [n for n in self.notebooks if os.path.abspath(n) != os.path.abspath(path)
                              and os.path.basename(n) != os.path.basename(target)] + [target]
            self._graded_as[os.path.abspath(target)] = os.path.join(folder, os.path.basename(target))
