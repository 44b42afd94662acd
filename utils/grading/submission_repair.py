"""nbgrader's converters as the course uses them: what a student submitted is taken in safely and graded
as meant, with a note, and nothing is written through a link.

:class:`RepairingAutograde` (``nbgrader autograde``):

* the submission is first taken in by :class:`~utils.grading.submission_intake.SubmissionIntake`:
  its regular files within the limits are copied into a temporary folder, and nbgrader grades that
  copy; links, hard links, special files, oversized files, and too many or too large files are
  refused and named in a note. Nothing in ``submitted/`` is read through a link, or written;
* a refused notebook (a link to ``source/``, larger than the limit) and a notebook that is not
  valid JSON are graded as the empty release notebook, with a note that names the rule or error
  (instead of the student silently missing from the batch, or getting the link target's marks);
* a renamed notebook (e.g. ``deformable_conv (1).ipynb``) is graded under its expected name when
  it is the only unknown notebook in the submission.

A note is a first markdown cell, "**Grading note:** ...", of the graded notebook. A notebook with a
note is written to the temporary folder too; nbgrader reads the student, assignment and notebook
ids from the submitted path, so every notebook is given the path it should have had
(``init_single_notebook_resources``), and the copy is where nbgrader reads the submission from
(``_format_source``) until the sanitize step is done.

:class:`SafeGenerateFeedback` (``nbgrader generate_feedback``) copies into ``feedback/`` only the
regular files of ``autograded/`` that the intake would take, and refuses to render a notebook that
is a link.

Both write their notebooks, set permissions and clear their destination through
:class:`~utils.grading.safe_files.NoFollowWrites`. ``nbgrader autograde``, ``generate_feedback`` and
the formgrader use them through :mod:`utils.grading.nbgrader_patches`; the parallel grader uses
them directly.
"""
from __future__ import annotations

import glob
import os
import shutil
import stat
import tempfile
from fnmatch import fnmatchcase

import nbformat
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateFeedback, NbGraderException

from utils.grading.safe_files import NoFollowWrites, kind_of, open_folder, remove_links
from utils.grading.submission_intake import Intake, SubmissionIntake, shown


def _notice(text: str):
    return nbformat.v4.new_markdown_cell(f"**Grading note:** {text}")


class RepairingAutograde(NoFollowWrites, Autograde):
    """nbgrader's Autograde; submissions are taken in first, and refused, unreadable and renamed notebooks
    are graded with a note (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.intake = SubmissionIntake(parent=self)
        self._graded_as: dict[str, str] = {}   # notebook graded -> the submitted path it stands for
        self._taken: dict[tuple[str, str], tuple[str, Intake]] = {}   # (assignment, student) -> (copy, intake)
        self._work_dir = ""

    def convert_notebooks(self) -> None:
        try:
            super().convert_notebooks()
        finally:
            self._reset_work_dir(new=False)

    def _reset_work_dir(self, new: bool = True) -> None:
        """Drop the previous student's copy and repaired notebooks (nbgrader grades one student at a time)."""
        if self._work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = tempfile.mkdtemp(prefix="course-intake-") if new else ""
        self._graded_as.clear()
        self._taken.clear()

    def _format_source(self, assignment_id: str, student_id: str, escape: bool = False) -> str:
        taken = self._taken.get((assignment_id, student_id))
        if taken and self._sanitizing and not escape:
            return taken[0]   # nbgrader copies extra files and reads timestamp.txt from the clean copy
        return super()._format_source(assignment_id, student_id, escape=escape)

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        # First of all: nbgrader's own check reads the submission's timestamp.txt.
        self._take_in(assignment_id, student_id)
        return super().init_destination(assignment_id, student_id)

    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        # Before nbgrader's own checks, which skip unknown notebook names.
        try:
            self._repair(assignment_id, student_id)
        finally:
            self.clear_destination(assignment_id, student_id)
            super().init_assignment(assignment_id, student_id)

    def init_single_notebook_resources(self, notebook_filename: str):
        graded_as = self._graded_as.get(os.path.abspath(notebook_filename))
        return super().init_single_notebook_resources(graded_as or notebook_filename)

    def _submitted_folder(self, assignment_id: str, student_id: str) -> str:
        return self.coursedir.format_path(self.coursedir.submitted_directory, student_id, assignment_id)

    def _expected_notebooks(self, assignment_id: str) -> list[str]:
        try:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
                return [nb.name for nb in gb.find_assignment(assignment_id).notebooks]
        except Exception:
            return []   # nbgrader itself reports a missing assignment

    def _take_in(self, assignment_id: str, student_id: str) -> None:
        self._reset_work_dir()
        copy = os.path.join(self._work_dir, "submission")
        os.mkdir(copy)
        target = open_folder(copy)
        try:
            intake = self.intake.take(self._submitted_folder(assignment_id, student_id), target,
                                      keep=[f"{name}.ipynb" for name in self._expected_notebooks(assignment_id)],
                                      ignore=self.coursedir.ignore)
        finally:
            os.close(target)
        for path, why in sorted(intake.refused.items()):
            self.log.warning("%s/%s: %s not taken: %s", student_id, assignment_id, path, why)
        if intake.limit:
            self.log.warning("%s/%s: %s; only the notebooks are taken", student_id, assignment_id, intake.limit)
        self._taken[(assignment_id, student_id)] = (copy, intake)

    def _release_notebook(self, assignment_id: str, name: str):
        folder = self.coursedir.format_path(self.coursedir.release_directory, ".", assignment_id)
        return nbformat.read(os.path.join(folder, f"{name}.ipynb"), as_version=4)

    def _write_repaired(self, nb, name: str) -> str:
        folder = tempfile.mkdtemp(dir=self._work_dir)   # one folder per notebook: names recur
        target = os.path.join(folder, f"{name}.ipynb")
        nbformat.write(nb, target)
        return target

    def _repair(self, assignment_id: str, student_id: str) -> None:
        if (assignment_id, student_id) not in self._taken:
            self._take_in(assignment_id, student_id)
        copy, intake = self._taken[(assignment_id, student_id)]
        expected = self._expected_notebooks(assignment_id)
        if not expected:
            self.notebooks = []   # nothing is read from submitted/; nbgrader reports the assignment
            return
        submitted = self._submitted_folder(assignment_id, student_id)
        present = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(glob.escape(copy),
                                                                                             "*.ipynb"))}
        refused = {os.path.splitext(path)[0]: why for path, why in intake.refused.items()
                   if "/" not in path and path.endswith(".ipynb")}
        unknown = sorted(name for name in {*present, *refused} if name not in expected)
        wanted = [name for name in expected if fnmatchcase(name, self.coursedir.notebook_id)]
        submitted_as = {name: name for name in wanted}   # expected name -> the name it was submitted under
        missing = [name for name in expected if name not in present and name not in refused]
        if len(missing) == 1 and len(unknown) == 1 and missing[0] in wanted and not intake.folder_refused:
            submitted_as[missing[0]] = unknown[0]   # one notebook renamed, e.g. "deformable_conv (1).ipynb"
        # A refused notebook that is graded gets a note of its own; other refused files share one note.
        files_note = intake.note(leave_out=[f"{n}.ipynb" for n in submitted_as.values() if n in refused])
        graded = []
        for name in wanted:
            notes = []
            if submitted_as[name] != name:
                notes.append(f"your notebook was submitted as `{shown(submitted_as[name])}.ipynb`; it was graded as "
                             f"`{name}.ipynb`. Keep the original file name next time.")
            path, why = present.get(submitted_as[name]), refused.get(submitted_as[name])
            nb = None
            if intake.folder_refused:
                nb = self._release_notebook(assignment_id, name)
            elif why:
                nb = self._release_notebook(assignment_id, name)
                notes.append(f"`{shown(submitted_as[name])}.ipynb` was not graded: {why}. It was graded as an empty "
                             "submission; submit the notebook file itself.")
            elif path is None:
                continue   # not submitted: nbgrader gives it 0
            else:
                try:
                    nb = nbformat.read(path, as_version=4)
                except Exception as exc:   # any unreadable file is reported, not fatal
                    nb = self._release_notebook(assignment_id, name)
                    notes.append(f"`{shown(submitted_as[name])}.ipynb` could not be read as a notebook "
                                 f"({type(exc).__name__}: `{shown(str(exc), 200)}`). It was graded as an empty "
                                 "submission; ask your instructor to regrade a repaired file.")
            notes += [files_note] if files_note else []
            if not notes:
                graded.append(path)
                self._graded_as[os.path.abspath(path)] = os.path.join(submitted, f"{name}.ipynb")
                continue
            for note in reversed(notes):
                self.log.warning("%s/%s: %s", student_id, assignment_id, note)
                nb.cells.insert(0, _notice(note))
            target = self._write_repaired(nb, name)
            graded.append(target)
            self._graded_as[os.path.abspath(target)] = os.path.join(submitted, f"{name}.ipynb")
        # Only what was taken in is graded; nbgrader would skip unknown notebook names anyway.
        self.notebooks = graded


class SafeGenerateFeedback(NoFollowWrites, GenerateFeedback):
    """nbgrader's GenerateFeedback; copies into feedback/ only regular files, and renders no link (see the module)."""

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        # nbgrader reads autograded/.../timestamp.txt here; links there are never followed.
        top = os.path.normpath(self.coursedir.format_path(self._input_directory, ".", "."))
        source = os.path.normpath(self._format_source(assignment_id, student_id))
        for path in remove_links(top, os.path.relpath(source, top)):
            self.log.warning("Removed %s from %s: links are never followed", path, source)
        return super().init_destination(assignment_id, student_id)

    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        # Replaces nbgrader's copy of every extra file (shutil.copy, following links).
        source = self._format_source(assignment_id, student_id)
        self.clear_destination(assignment_id, student_id)
        top, below = self._destination(assignment_id, student_id)
        os.makedirs(top, exist_ok=True)
        target = open_folder(top, below, create=True)
        try:
            intake = SubmissionIntake(parent=self).take(source, target, ignore=self.coursedir.ignore + ["*.ipynb"])
        finally:
            os.close(target)
        for path, why in sorted(intake.refused.items()):
            self.log.warning("%s/%s: %s not copied to feedback: %s", student_id, assignment_id, path, why)
        if intake.limit:
            self.log.warning("%s/%s: %s; no other file was copied to feedback", student_id, assignment_id,
                             intake.limit)
        if intake.folder_refused:
            raise NbGraderException(f"{source}: {intake.folder_refused}; no feedback is generated from it")
        for notebook in self.notebooks:
            st = os.lstat(notebook)
            kind = kind_of(st) or ("" if stat.S_ISREG(st.st_mode) else "folder")
            if kind:
                raise NbGraderException(f"{notebook} is a {kind}, not the graded notebook; "
                                        "no feedback is generated from it (regrade the student)")

