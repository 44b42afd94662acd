"""nbgrader plug-ins configured in nbgrader_config.py (instructor side only)."""
from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import tempfile

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

# Lines that libraries print on stderr while a correct answer runs. nbgrader gives 0 points
# to a test cell with any stderr output, so these would zero correct work.
HARMLESS_STDERR = [
    r"^.*\b\w*Warning: .*$",              # "…/functional.py:12: UserWarning: …"
    r"^\s+warnings\.warn\(.*$",           # the source line Python prints under a warning
    r"^\s*return _VF\..*$",
    r"^.*\d+%\|.*\|.*(it/s|s/it|\?it/s).*$",  # tqdm progress bars
    r"^\s*$",
]


class FilterHarmlessStderr(NbGraderPreprocessor):
    """Remove known-harmless stderr lines (library warnings, progress bars) from code cell outputs."""

    patterns = List(Unicode(), default_value=HARMLESS_STDERR,
                    help="Regular expressions; a stderr line matching one of them is removed.").tag(config=True)

    def preprocess(self, nb, resources):
        compiled = [re.compile(p) for p in self.patterns]
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            kept = []
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    text = output.get("text", "")
                    if isinstance(text, list):
                        text = "".join(text)
                    lines = [line for line in re.split(r"[\r\n]", text)
                             if not any(p.match(line) for p in compiled)]
                    if not lines:
                        continue
                    output["text"] = "\n".join(lines) + "\n"
                kept.append(output)
            cell.outputs = kept
        return nb, resources


def _release_notebook(coursedir, assignment_id: str, name: str):
    import nbformat
    path = os.path.join(coursedir.format_path(coursedir.release_directory, ".", assignment_id), f"{name}.ipynb")
    return nbformat.read(path, as_version=4)


def _notice(text: str):
    import nbformat
    return nbformat.v4.new_markdown_cell(f"**Grading note:** {text}")


def repair_submissions() -> None:
    """Make ``nbgrader autograde`` grade what a student meant to submit, and say so in the feedback.

    * a notebook that is not valid JSON is graded as the empty release notebook, with a note that
      names the error (instead of the student silently missing from the batch);
    * a renamed notebook (e.g. ``deformable_conv (1).ipynb``) is graded under its expected name when
      it is the only unknown notebook in the submission.
    """
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.converters.autograde import Autograde

    if getattr(Autograde, "_course_repair_installed", False):
        return
    original = Autograde.init_assignment

    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        # Runs before nbgrader's own checks, which skip unknown notebook names.
        try:
            _repair(self, assignment_id, student_id)
        finally:
            original(self, assignment_id, student_id)

    def _repair(self, assignment_id: str, student_id: str) -> None:
        folder = self.coursedir.format_path(self.coursedir.submitted_directory, student_id, assignment_id)
        try:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
                expected = [nb.name for nb in gb.find_assignment(assignment_id).notebooks]
        except Exception:  # noqa: BLE001 - nbgrader itself reports a missing assignment
            return
        present = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(folder, "*.ipynb"))}
        unknown = [p for name, p in present.items() if name not in expected]
        repaired_dir = tempfile.mkdtemp(prefix="course-repaired-")
        atexit.register(shutil.rmtree, repaired_dir, True)
        repaired = []
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
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not fatal
                nb = _release_notebook(self.coursedir, assignment_id, name)
                note = (f"`{os.path.basename(path)}` could not be read as a notebook "
                        f"({type(exc).__name__}: {str(exc)[:200]}). It was graded as an empty submission; "
                        "ask your instructor to regrade a repaired file.")
            if note is None:
                continue
            self.log.warning("%s/%s: %s", student_id, assignment_id, note)
            nb.cells.insert(0, _notice(note))
            target = os.path.join(repaired_dir, f"{name}.ipynb")
            nbformat.write(nb, target)
            repaired.append((path, target))
        aliases = getattr(self, "_course_aliases", {})
        for original_path, target in repaired:
            self.notebooks = [n for n in self.notebooks if os.path.abspath(n) != os.path.abspath(original_path)
                              and os.path.basename(n) != os.path.basename(target)] + [target]
            # nbgrader derives the student, assignment and notebook ids from the submitted path
            aliases[os.path.abspath(target)] = os.path.join(folder, os.path.basename(target))
        self._course_aliases = aliases

    original_resources = Autograde.init_single_notebook_resources

    def init_single_notebook_resources(self, notebook_filename: str):
        alias = getattr(self, "_course_aliases", {}).get(os.path.abspath(notebook_filename))
        return original_resources(self, alias or notebook_filename)

    Autograde.init_assignment = init_assignment
    Autograde.init_single_notebook_resources = init_single_notebook_resources
    Autograde._course_repair_installed = True
