"""ApplyTrustedVerdicts: after execution, judge what the kernel recorded and write the verdicts.

For each test cell :class:`PrepareTrustedTests` replaced, the cell gets its source back and, as
its only outputs, one verdict per check: the check's own passing text on stdout, or an error
output with the same feedback the visible check gives (nbgrader then gives the cell 0 points).
Code that could get around the from-scratch rule or read the grader's files is flagged for an
instructor's review (:mod:`utils.grading.review_flags`): the evidence is added on stdout under the
verdict of the exercise it concerns (points unchanged) and kept in the notebook's metadata, where
``python -m utils.instructor.review_flags`` lists it.
"""
from __future__ import annotations

import ast
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from utils.checks.exercise import evaluate, from_scratch_report
from utils.checks.feedback import CheckResult, Report
from utils.checks.registry import exercise as find_exercise
from utils.checks.seeding import grading_salt
from utils.grading.recorded_outputs import load_recorded
from utils.grading.review_flags import FLAGS_KEY, flag_submission, flags_for, other_flags, review_text
from utils.grading.trusted import (
    HIDDEN_CASES,
    KERNEL_FOLDER_KEY,
    TRUSTED_KEY,
    cell_salt,
    forbidden_reference,
    student_definitions,
)

# cell.metadata[VERDICTS_KEY] of each graded test cell: one entry per check, for the class report
# (utils/instructor/class_report.py). Written here only; any such metadata of a submission is dropped first.
VERDICTS_KEY = "course_verdicts"


def _error_output(report: Report) -> NotebookNode:
    return NotebookNode(output_type="error", ename="CheckFailure", evalue=report.headline,
                        traceback=report.lines())


def _failure(report: Report) -> tuple[NotebookNode, Report]:
    return _error_output(report), report


def _verdict(check_name: str, report: Report | None) -> dict:
    """What the class report needs of one check's verdict: passed, or how it failed and with which mistake."""
    if report is None:
        return {"check": check_name, "passed": True}
    diagnosis = report.diagnosis()
    verdict = {"check": check_name, "passed": False, "diagnosis": diagnosis, "cause": report.likely_cause,
               "headline": report.headline, "case": report.case}
    if diagnosis == "rule" and report.details:
        verdict["rule"] = report.details[0]      # "Rule: <the rule the notebook states>."
    return verdict


def _stdout(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text + "\n")


def _kernel_error_summary(kernel_outputs) -> str:
    for output in kernel_outputs:
        if output.get("output_type") == "error":
            return f"The kernel reported {output.get('ename')}: {str(output.get('evalue'))[:300]}"
    return ""


class ApplyTrustedVerdicts(NbGraderPreprocessor):
    """Compare the recorded outputs with references computed here, and write the verdicts."""

    max_output_bytes = Integer(64 * 2**20, help="Recorded outputs larger than this are refused.").tag(config=True)

    def preprocess(self, nb, resources):
        nb.metadata.pop(FLAGS_KEY, None)   # only the grader's own review may stand there
        trusted = resources.get(TRUSTED_KEY)
        if trusted is None:
            return nb, resources   # PrepareTrustedTests did not run
        kernel_folder = resources.get(KERNEL_FOLDER_KEY)
        folder = kernel_folder.work if kernel_folder is not None else Path(resources["metadata"]["path"])
        for index, source in trusted["skipped"].items():
            nb.cells[index].source = source
            nb.cells[index].outputs = []
        for cell in nb.cells:
            cell.metadata.pop(VERDICTS_KEY, None)   # only the grader's verdicts may stand there
        definitions = student_definitions(nb)
        kernel_outputs = {}
        for cell in nb.cells:   # the sources first: the review reads the notebook as the student wrote it
            cell_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell_id in trusted["cells"]:
                kernel_outputs[cell_id] = cell.get("outputs", [])
                cell.source = trusted["cells"][cell_id]["source"]
        flags = self.review(nb, resources, trusted["student"])
        functions = set()
        for cell in nb.cells:
            cell_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell_id not in trusted["cells"]:
                continue
            checks = trusted["cells"][cell_id]["checks"]
            salt = cell_salt(trusted["secret"], trusted["student"], cell_id)
            with grading_salt(salt):
                judged = self.verdicts(folder, cell_id, checks, kernel_outputs[cell_id], definitions, salt)
            names = checks if len(judged) == len(checks) else [", ".join(checks)] * len(judged)
            cell.metadata[VERDICTS_KEY] = [_verdict(name, report)
                                           for name, (_, report) in zip(names, judged, strict=True)]
            cell.outputs = [output for output, _ in judged]
            cell_functions = {find_exercise(name).function for name in checks}
            review = review_text([flag for f in sorted(cell_functions) for flag in flags_for(flags, f)])
            if not functions:   # the first graded cell also shows what no exercise of the notebook owns
                all_functions = {find_exercise(name).function for prepared in trusted["cells"].values()
                                 for name in prepared["checks"]}
                review = "\n".join(text for text in (review, review_text(other_flags(flags, all_functions))) if text)
            functions |= cell_functions
            if review:
                cell.outputs.append(_stdout(review))
        if kernel_folder is not None:
            kernel_folder.remove()
        return nb, resources

    def review(self, nb, resources, student: str) -> list:
        """Flags for an instructor's review of the submitted code (utils/grading/review_flags.py), kept in
        the notebook's metadata; [] when the source notebook cannot be found."""
        info = resources.get("nbgrader", {})
        assignment, notebook = info.get("assignment", ""), info.get("notebook", "")
        coursedir = CourseDirectory(config=self.config)
        source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{notebook}.ipynb"
        if not source.is_file():
            return []
        return flag_submission(nb, student=student, notebook=f"{assignment}/{notebook}", source_notebook=source)

    def verdicts(self, folder: Path, cell_id: str, check_names: list[str], kernel_outputs,
                 definitions: dict[str, ast.AST], salt: str) -> list[tuple[NotebookNode, Report | None]]:
        """One ``(output, failure report or None)`` per check of the cell: its verdict on the hidden cases
        drawn with ``salt`` (one for the whole cell when nothing could be read)."""
        try:
            recorded = load_recorded(folder, cell_id, check_names, self.max_output_bytes)
        except Exception as exc:   # anything unreadable is the submission's problem
            return [_failure(Report(headline="the outputs of this test could not be read",
                                    details=[str(exc)[:300]]))]
        if recorded is None:
            why = _kernel_error_summary(kernel_outputs)
            return [_failure(Report(
                headline="this test did not run to the end, so no answer could be graded",
                details=[why] if why else [],
                hint="run your notebook from top to bottom (Kernel → Restart and Run All); every cell "
                     "above must finish without stopping the kernel."))]
        outputs = []
        for check_name, check in zip(check_names, recorded, strict=True):
            exercise = find_exercise(check_name)
            if check.entry is None:
                outputs.append(_failure(Report(headline=f"no output was recorded for {check_name}")))
                continue
            if check.missing() is not None:
                outputs.append(_failure(Report(
                    headline=f"{exercise.function} is not defined when this test runs",
                    details=[check.missing()[:300]],
                    hint=f"run the cell that defines {exercise.function}; if it raised an error, fix that first.")))
                continue
            named = forbidden_reference(definitions.get(exercise.function), exercise.forbidden)
            if named:
                outputs.append(_failure(from_scratch_report(exercise, named)))
                continue
            cases, memos = HIDDEN_CASES.cases(check_name, salt)
            result = evaluate(exercise, cases, lambda index, case, label, check=check: check.produced(index, label),
                              memos)
            outputs.append((_stdout(result.text()), None) if isinstance(result, CheckResult) else _failure(result))
        return outputs
