"""Trusted grading: verdicts are decided in the grading process, never in the student's kernel.

Configured in nbgrader_config.py around nbgrader's own ``Execute``:

* :class:`RestoreGradeCells` (sanitize phase) gives every graded cell back the metadata
  of its source version, so an edited test cell is graded from the source instead of failing
  with "Inconsistent checksums".
* :class:`PrepareTrustedTests` (before execution) generates each test cell's hidden cases
  with a course secret, writes them to ``.grading/`` in the student's folder, and replaces the
  cell by a call that only records what the student's code returns.
* :class:`ApplyTrustedVerdicts` (after execution) loads those outputs (arrays only, no
  pickle), computes the torch/torchvision references here, and writes the verdict — the
  same feedback the visible checks give — as the cell's only output, from which nbgrader
  takes the points.

Whatever the kernel does (patching numpy or torch, input transformers that skip cells,
printing "passed") cannot produce a passing verdict without outputs that match references
on inputs it could not know in advance.
"""
from __future__ import annotations

import ast
import json
import pickle
import secrets
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
from nbformat.notebooknode import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells
from traitlets import Integer, Unicode

from utils.checks.exercise import CaseMemo, Produced, case_label, evaluate, from_scratch_report
from utils.checks.feedback import CheckResult, Report
from utils.grading.in_kernel.recording import GRADING_DIR, inputs_path, outputs_paths
from utils.checks.registry import MODULE_OF_CHECK, exercise as find_exercise
from utils.checks.seeding import grading_salt

TRUSTED_KEY = "course_trusted_tests"
SKIPPED_KEY = "course_skipped_cells"
# First line of a locked demo cell (training runs, figures) that the autograder does not run:
# nothing graded may depend on it. Students still run it in JupyterLab.
NOT_GRADED_MARKER = "# Not run by the autograder (nothing graded depends on this cell)."


# Hidden cases depend only on the check, the test cell and the course secret, so one grading
# process draws them, pickles them and computes their references once for all its students.
_HIDDEN_CASES: dict[tuple[str, str], tuple[list, list[CaseMemo]]] = {}
_PICKLED_INPUTS: dict[tuple[str, tuple[str, ...]], bytes] = {}


def hidden_cases(check_name: str, salt: str) -> tuple[list, list[CaseMemo]]:
    key = (check_name, salt)
    if key not in _HIDDEN_CASES:
        exercise = find_exercise(check_name)
        with grading_salt(salt):
            cases = exercise.make_cases(True)
        _HIDDEN_CASES[key] = (cases, [CaseMemo(exercise, case) for case in cases])
    return _HIDDEN_CASES[key]


def course_secret(root: Path) -> str:
    """The course's grading secret, created once; the grading kernel cannot read the course root."""
    path = Path(root) / ".grading_secret"
    if not path.exists():
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()


def checks_in(source: str) -> list[tuple[str, str]]:
    """``(check name, argument source)`` for each top-level ``check_<name>(<arg>, ...)`` call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in MODULE_OF_CHECK and node.args):
            found.append((node.func.id, ast.unparse(node.args[0])))
    unique = []
    for item in found:   # the visible and the hidden call check the same object once
        if item not in unique:
            unique.append(item)
    return unique


def _is_demo_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return (cell.cell_type == "code" and meta.get("locked") and not meta.get("grade")
            and not meta.get("solution") and cell.source.lstrip().startswith(NOT_GRADED_MARKER))


def _is_autograded_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


class RestoreGradeCells(NbGraderPreprocessor):
    """Reset the nbgrader metadata of graded and locked cells to their source versions."""

    def preprocess(self, nb, resources):
        notebook_id = resources["unique_key"]
        assignment_id = resources["nbgrader"]["assignment"]
        db_url = resources["nbgrader"]["db_url"]
        with Gradebook(db_url) as gb:
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader")
                if not meta or "grade_id" not in meta:
                    continue
                try:
                    source_cell = gb.find_source_cell(meta["grade_id"], notebook_id, assignment_id)
                except MissingEntry:
                    continue
                try:
                    graded = gb.find_graded_cell(meta["grade_id"], notebook_id, assignment_id)
                except MissingEntry:
                    graded = None
                meta["grade"] = graded is not None
                if graded is None:
                    meta.pop("points", None)
                elif float(meta.get("points", -1)) != float(graded.max_score):
                    meta["points"] = float(graded.max_score)
                try:
                    gb.find_solution_cell(meta["grade_id"], notebook_id, assignment_id)
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
        return nb, resources


class OverwriteCellsInPlace(OverwriteCells):
    """nbgrader's OverwriteCells, but a deleted grade cell goes back where the source has it.

    nbgrader 0.9.6 re-inserts a missing grade cell after "the previous source cell", and fails
    with a KeyError when that cell is an ordinary locked cell; here the position comes from the
    order of the source notebook, and the cell is appended when that order is unknown.
    """

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = {cell.name: cell for cell in source_nb.source_cells}
        grade_cells = {cell.name: cell for cell in source_nb.grade_cells}
        solution_ids = {cell.name for cell in source_nb.solution_cells}
        order = self._source_order() or list(grade_cells)
        for position, grade_id in enumerate(order):
            if grade_id not in grade_cells or grade_id in self._ids(nb):
                continue
            self.log.warning("Grade cell %s is missing; grading it from the source version", grade_id)
            cell = self.missing_cell_transform(source_cells[grade_id], grade_cells[grade_id].max_score,
                                               is_solution=grade_id in solution_ids)
            present = self._ids(nb)
            before = [present[g] for g in order[:position] if g in present]
            nb.cells.insert(max(before) + 1 if before else 0, cell)
        return nb, resources

    @staticmethod
    def _ids(nb) -> dict[str, int]:
        return {cell.metadata["nbgrader"]["grade_id"]: i for i, cell in enumerate(nb.cells)
                if "grade_id" in cell.metadata.get("nbgrader", {})}

    def _source_order(self) -> list[str]:
        course = CourseDirectory(config=self.config)
        path = Path(course.root) / course.source_directory / self.assignment_id / f"{self.notebook_id}.ipynb"
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError):
            return []
        return [c["metadata"]["nbgrader"]["grade_id"] for c in cells
                if "grade_id" in c.get("metadata", {}).get("nbgrader", {})]


class PrepareTrustedTests(NbGraderPreprocessor):
    """Replace each autograded test cell by a recording call on secret grading inputs."""

    secret = Unicode("", help="Grading secret; by default read from (or created in) "
                              "<course root>/.grading_secret.").tag(config=True)

    def preprocess(self, nb, resources):
        folder = Path(resources["metadata"]["path"])
        grading = folder / GRADING_DIR
        if grading.exists():
            shutil.rmtree(grading)
        grading.mkdir()
        secret = self.secret or course_secret(Path(CourseDirectory(config=self.config).root))
        prepared, skipped = {}, {}
        for index, cell in enumerate(nb.cells):
            if _is_demo_cell(cell):
                skipped[index] = cell.source
                cell.source = "# (demo cell: not run while grading)"
                continue
            if not _is_autograded_test(cell):
                continue
            cell_id = cell.metadata.nbgrader["grade_id"]
            checks = checks_in(cell.source)
            if not checks:
                continue   # a test cell without course checks is graded by nbgrader as usual
            salt = f"{secret}|{cell_id}"
            key = (salt, tuple(name for name, _ in checks))
            if key not in _PICKLED_INPUTS:
                all_cases = [hidden_cases(check_name, salt)[0] for check_name, _ in checks]
                _PICKLED_INPUTS[key] = pickle.dumps(
                    [[(c.description, c.inputs) for c in cases] for cases in all_cases])
            inputs_path(folder, cell_id).write_bytes(_PICKLED_INPUTS[key])
            prepared[cell_id] = {"source": cell.source, "checks": [name for name, _ in checks]}
            getters = ", ".join(f"({name!r}, lambda: {arg})" for name, arg in checks)
            cell.source = ("# Graded: this cell records what your code returns; the verdict is computed "
                           "outside your kernel.\n"
                           "from utils.grading.in_kernel.recording import record as _course_record\n"
                           f"_course_record({cell_id!r}, [{getters}])")
        resources[TRUSTED_KEY] = prepared
        resources[SKIPPED_KEY] = skipped
        resources[TRUSTED_KEY + "_secret"] = secret
        return nb, resources


def _error_output(report: Report) -> NotebookNode:
    return NotebookNode(output_type="error", ename="CheckFailure", evalue=report.headline,
                        traceback=report.lines())


def _stdout(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text + "\n")


class ApplyTrustedVerdicts(NbGraderPreprocessor):
    """Compare the recorded outputs with references computed here, and write the verdicts."""

    max_output_bytes = Integer(64 * 2**20, help="Recorded outputs larger than this are refused.").tag(config=True)

    def preprocess(self, nb, resources):
        prepared = resources.get(TRUSTED_KEY, {})
        secret = resources.get(TRUSTED_KEY + "_secret", "")
        folder = Path(resources["metadata"]["path"])
        for index, source in resources.get(SKIPPED_KEY, {}).items():
            nb.cells[index].source = source
            nb.cells[index].outputs = []
        definitions = _student_definitions(nb)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            cell_id = meta.get("grade_id")
            if cell_id not in prepared:
                continue
            kernel_outputs = cell.get("outputs", [])
            cell.source = prepared[cell_id]["source"]
            salt = f"{secret}|{cell_id}"
            with grading_salt(salt):
                cell.outputs = self.verdict(folder, cell_id, prepared[cell_id]["checks"], kernel_outputs,
                                            definitions, salt)
        shutil.rmtree(folder / GRADING_DIR, ignore_errors=True)
        return nb, resources

    def _load(self, folder: Path, cell_id: str):
        npz_path, json_path = outputs_paths(folder, cell_id)
        if not (npz_path.exists() and json_path.exists()):
            return None, None
        if npz_path.stat().st_size + json_path.stat().st_size > self.max_output_bytes:
            raise ValueError(f"recorded outputs are larger than {self.max_output_bytes // 2**20} MiB")
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return json.loads(json_path.read_text()), arrays

    def verdict(self, folder: Path, cell_id: str, check_names: list[str], kernel_outputs,
                definitions: dict[str, ast.AST] | None = None, salt: str = "") -> list:
        try:
            results, arrays = self._load(folder, cell_id)
        except Exception as exc:  # noqa: BLE001 - anything unreadable is the submission's problem
            return [_error_output(Report(headline="the outputs of this test could not be read",
                                         details=[str(exc)[:300]]))]
        if results is None:
            why = _kernel_error_summary(kernel_outputs)
            return [_error_output(Report(
                headline="this test did not run to the end, so no answer could be graded",
                details=[why] if why else [],
                hint="run your notebook from top to bottom (Kernel → Restart and Run All); every cell "
                     "above must finish without stopping the kernel."))]
        outputs = []
        for check_name, entry in zip(check_names, results + [None] * len(check_names)):
            exercise = find_exercise(check_name)
            if entry is None or entry.get("check") != check_name:
                outputs.append(_error_output(Report(headline=f"no output was recorded for {check_name}")))
                continue
            if "missing" in entry:
                outputs.append(_error_output(Report(
                    headline=f"{exercise.function} is not defined when this test runs",
                    details=[entry["missing"][:300]],
                    hint=f"run the cell that defines {exercise.function}; if it raised an error, fix that first.")))
                continue
            named = _forbidden_reference((definitions or {}).get(exercise.function), exercise.forbidden)
            if named:
                outputs.append(_error_output(from_scratch_report(exercise, named)))
                continue
            cases, memos = hidden_cases(check_name, salt)
            recorded = entry["outputs"]

            def produced(index, case, label, recorded=recorded):
                if index >= len(recorded):
                    return Produced(error=Report(headline=f"no output was recorded for {label}"))
                item = recorded[index]
                if "error" in item:
                    names = {f.name for f in fields(Report)}
                    report = Report(**{k: v for k, v in item["error"].items() if k in names})
                    return Produced(error=report, not_implemented=item.get("not_implemented", False))
                if "non_array" in item:
                    return Produced(value=None if item["non_array"] == "None" else _Opaque(item["non_array"]))
                return Produced(value=arrays[item["array"]])

            result = evaluate(exercise, cases, produced, memos)
            if isinstance(result, CheckResult):
                outputs.append(_stdout(result.text()))
            else:
                outputs.append(_error_output(result))
        return outputs


def _student_definitions(nb) -> dict[str, ast.AST]:
    """Top-level functions and classes the student's answer cells define, by name."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = node
    return found


def _forbidden_reference(definition: ast.AST | None, forbidden: tuple[str, ...]) -> str:
    """The forbidden library path an answer's code names as ``<module>.<name>``, if any."""
    if definition is None or not forbidden:
        return ""
    by_name = {path.rsplit(".", 1)[-1]: path for path in forbidden}
    for node in ast.walk(definition):
        if isinstance(node, ast.Attribute) and node.attr in by_name:
            return by_name[node.attr]
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in by_name:
                    return by_name[alias.name]
    return ""


class _Opaque:
    """Stands for a non-array value the kernel returned (only its type name crosses over)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return self.type_name


def _kernel_error_summary(kernel_outputs) -> str:
    for output in kernel_outputs:
        if output.get("output_type") == "error":
            return f"The kernel reported {output.get('ename')}: {str(output.get('evalue'))[:300]}"
    return ""
