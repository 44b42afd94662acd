"""No silent zeros: a grading batch ends with each submission's status, graded or failed and why.

A submission can fail to be graded without any error from nbgrader. If the grading kernel cannot
import the checks, every test cell's verdict reads "this test did not run to the end", every
student gets 0, and ``nbgrader autograde`` used to exit 0. So a notebook counts as *failed*, not
graded, when:

* nbgrader could not grade the submission (its error, e.g. a metadata schema it cannot read);
* the kernel stopped before the end of the notebook (it died, or a cell could not be stopped), so
  the cells after it were not graded;
* every autograded test cell has the "did not run to the end" verdict. Nothing was recorded, and
  that is the signature of a grading problem, not of an answer.

:class:`ReportingAutograde` is ``nbgrader autograde`` (through :mod:`utils.grading.nbgrader_patches`)
with two additions. Before any student is graded, it runs the preflight
(:mod:`utils.grading.preflight`), which stops the batch with a message and exit status 1 when
the grading kernel would not import what the grader uses. At the end, it logs a table of every
graded notebook's status, and exits with status 1 (nbgrader's ``NbGraderException``) when any
submission failed. The grades of a failed notebook stay in the gradebook, with feedback that
says what happened, so nobody is silently dropped. The parallel grader
(:mod:`utils.instructor.parallel`) uses the same class and the same table.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import nbformat
from nbgrader.converters import NbGraderException
from traitlets import Bool, Float

from utils.grading.preflight import PreflightResult, check_assignments
from utils.grading.preprocessors.sandboxed_execute import SandboxedExecute
from utils.grading.submission_repair import RepairingAutograde
from utils.grading.trusted import is_autograded_test

# The verdict ApplyTrustedVerdicts gives a test cell whose recording call left no outputs.
NOT_RUN_VERDICT = "this test did not run to the end"
# The error outputs SandboxedExecute writes where the kernel stopped before the end of the notebook.
KERNEL_STOPPED = ("KernelDied", "CellTimeoutError")
_STOPPED_IN_TEXT = re.compile(r"\b(?:KernelDied|CellTimeoutError): (.+)")
SILENT_ZERO = "every test cell failed to run: no output was recorded"


@dataclass
class NotebookStatus:
    """One row of the table: one student's notebook, graded or not, and why not."""

    student: str
    assignment: str
    notebook: str       # "" when grading failed before any notebook
    graded: bool
    why: str = ""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _error_outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    yield cell, output


def _is_not_run(output) -> bool:
    return output.get("output_type") == "error" and str(output.get("evalue", "")).startswith(NOT_RUN_VERDICT)


def grading_problem(nb) -> str:
    """Why this autograded notebook does not count as graded, or "" when it does (see the module)."""
    stopped = ""
    for _, output in _error_outputs(nb):
        if output.get("ename") in KERNEL_STOPPED:
            stopped = stopped or str(output.get("evalue", ""))
        else:   # a test cell's verdict quotes what the kernel reported there
            found = _STOPPED_IN_TEXT.search("\n".join(output.get("traceback", [])))
            stopped = stopped or (found.group(1) if found else "")
    tests = [cell for cell in nb.cells if is_autograded_test(cell)]
    not_run = [next(o for o in cell.get("outputs", []) if _is_not_run(o)) for cell in tests
               if any(_is_not_run(o) for o in cell.get("outputs", []))]
    if tests and len(not_run) == len(tests):
        detail = stopped
        if not detail:   # the verdict's first detail line: what the kernel reported
            lines = [line.strip() for line in not_run[0].get("traceback", [])[1:]]
            detail = next((line for line in lines if line and not line.startswith(("Hint:", "Likely cause:"))), "")
        return SILENT_ZERO + (f" ({_one_line(detail, 200)})" if detail else "")
    if stopped:
        return (f"the kernel stopped before the end of the notebook ({_one_line(stopped, 200)}); "
                "the cells after it were not graded")
    return ""


def error_summary(messages: list[str]) -> str:
    """nbgrader's error records for one submission, in one line: each message, or a traceback's last line."""
    parts = []
    for message in messages:
        if message.startswith(("There was an error processing", "Please see the")):
            continue
        lines = [line for line in message.strip().splitlines() if line.strip()]
        if not lines:
            continue
        text = lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)
        if not any(text.split(": ", 1)[-1] in part for part in parts):   # a traceback repeating a message
            parts.append(text)
    return _one_line("; ".join(parts) or "nbgrader stopped without an error message")


def format_table(rows: list[NotebookStatus]) -> str:
    """The status table: student, assignment, notebook, then "graded" or "FAILED: why"; then the counts."""
    header = ("student", "assignment", "notebook")
    widths = [max([len(h)] + [len(getattr(r, h) or "—") for r in rows]) for h in header]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  status"]
    for r in rows:
        cells = [r.student, r.assignment, r.notebook or "—"]
        status = "graded" if r.graded else f"FAILED: {r.why}"
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + status)
    submissions = {(r.assignment, r.student) for r in rows}
    failed = {(r.assignment, r.student) for r in rows if not r.graded}
    lines.append(f"{len(submissions) - len(failed)} of {len(submissions)} submissions graded"
                 + (f"; {len(failed)} could not be graded (FAILED above)." if failed else "."))
    return "\n".join(lines)


class ErrorRecords(logging.Handler):
    """Collects the ERROR records nbgrader logs, so each submission's failure can be told apart."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage())
        except Exception:   # a message whose arguments do not format
            self.messages.append(str(record.msg))


class ReportingAutograde(RepairingAutograde):
    """Autograde with a preflight before the batch and a status per notebook after it (see the module)."""

    preflight = Bool(
        True, help="Before grading, check in a sandboxed kernel that it imports the check package this grader "
                   "uses and the notebooks' libraries (utils/grading/preflight.py), and stop the batch if not."
    ).tag(config=True)
    preflight_timeout = Float(
        180.0, help="Seconds one notebook's preflight may take (its kernel's imports).").tag(config=True)
    report = Bool(
        True, help="At the end, log the status of every graded notebook and fail (exit status 1) when any "
                   "submission could not be graded; the parallel grader turns this off and reports for the whole "
                   "batch.").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.statuses: list[NotebookStatus] = []
        self._errors = ErrorRecords()
        self._current: tuple[str, str] | None = None   # (assignment, student) being graded
        self._current_done = False
        self._current_rows: list[NotebookStatus] = []
        self._current_errors = 0
        self._notebook = ""
        self._seen: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ the batch

    def _submissions(self) -> list[tuple[str, str]]:
        """(assignment, student) of every submission nbgrader found, in its order."""
        regexp = self._format_source("(?P<assignment_id>.*)", "(?P<student_id>.*)", escape=True)
        found = []
        for folder in sorted(self.assignments):
            match = re.match(regexp, folder)
            if match:
                found.append((match.group("assignment_id"), match.group("student_id")))
        return found

    def run_preflight(self, assignments: list[str]) -> list[PreflightResult]:
        """Each notebook's preflight; PreflightError (logged) when a grading kernel would not grade."""
        execute = None
        if any(isinstance(p, type) and issubclass(p, SandboxedExecute) for p in self.autograde_preprocessors):
            execute = SandboxedExecute(parent=self)
        try:
            return check_assignments(self.coursedir, assignments, execute, self.preflight_timeout, self.log)
        except NbGraderException as exc:
            self.log.error("%s", exc)
            raise

    def convert_notebooks(self) -> None:
        self.statuses = []
        self._seen = set()
        submissions = self._submissions()
        if self.preflight:
            self.run_preflight(sorted({assignment for assignment, _ in submissions}))
        self.log.addHandler(self._errors)
        try:
            super().convert_notebooks()
        finally:
            self.log.removeHandler(self._errors)
            self._close_submission()
            last = self.statuses[-1] if self.statuses else None
            at = f" at {last.student}/{last.assignment}" if last is not None and not last.graded else ""
            self.statuses += [NotebookStatus(student, assignment, "", False, f"not reached: nbgrader stopped the "
                                             f"batch{at}")
                              for assignment, student in submissions if (assignment, student) not in self._seen]
            if self.report and self.statuses:
                failed = any(not s.graded for s in self.statuses)
                (self.log.error if failed else self.log.info)("Grading status:\n%s", format_table(self.statuses))
        failed = sorted({(s.assignment, s.student) for s in self.statuses if not s.graded})
        if failed and self.report:
            msg = (f"{len(failed)} submission(s) could not be graded: "
                   + ", ".join(f"{student}/{assignment}" for assignment, student in failed[:20])
                   + (" …" if len(failed) > 20 else "") + " (see the table above).")
            self.log.error(msg)
            raise NbGraderException(msg)

    # ------------------------------------------------------------------ one submission

    def _close_submission(self) -> None:
        """Record the submission being graded: its notebooks' rows, or one failed row with nbgrader's error."""
        if self._current is None:
            return
        assignment, student = self._current
        if self._current_done:
            self.statuses += self._current_rows or [NotebookStatus(student, assignment, "", True)]
        else:
            why = error_summary(self._errors.messages[self._current_errors:])
            self.statuses.append(NotebookStatus(student, assignment, self._notebook, False, why))
        self._current = None

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        self._close_submission()
        should_process = super().init_destination(assignment_id, student_id)
        self._seen.add((assignment_id, student_id))
        if should_process:
            self._current = (assignment_id, student_id)
            self._current_done = False
            self._current_rows = []
            self._current_errors = len(self._errors.messages)
            self._notebook = ""
        return should_process

    def convert_single_notebook(self, notebook_filename: str) -> None:
        self._notebook = os.path.splitext(os.path.basename(notebook_filename))[0]
        super().convert_single_notebook(notebook_filename)

    def write_single_notebook(self, output: str, resources) -> None:
        super().write_single_notebook(output, resources)
        if self._sanitizing or self._current is None:
            return
        assignment, student = self._current
        problem = grading_problem(nbformat.reads(output, as_version=4))
        self._current_rows.append(NotebookStatus(student, assignment, resources["nbgrader"]["notebook"],
                                                 not problem, problem))

    def run_post_convert_hook(self) -> None:
        super().run_post_convert_hook()
        self._current_done = True
