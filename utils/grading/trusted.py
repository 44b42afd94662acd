"""Trusted grading: verdicts are decided in the grading process, never in the student's kernel.

Configured in nbgrader_config.py around the sandboxed execution (``utils/grading/preprocessors/``):

* :class:`RestoreGradeCells` (sanitize phase) gives every graded cell back the metadata of its
  source version, so an edited test cell is graded from the source instead of failing with
  "Inconsistent checksums"; :class:`OverwriteCellsInPlace` puts a deleted one back.
* :class:`PrepareTrustedTests` (before execution) generates each test cell's hidden cases with
  the course secret, for this student, and replaces the cell by a call that only records what the
  student's code returns (:mod:`utils.grading.in_kernel.recording`); :class:`SandboxedExecute`
  writes each cell's inputs into ``.grading/`` of the kernel's own folder just before the cell runs.
* :class:`ApplyTrustedVerdicts` (after execution) loads those outputs (arrays only, no pickle;
  :mod:`utils.grading.recorded_outputs`), computes the torch/torchvision references here, and
  writes the verdict, the same feedback the visible checks give, as the cell's only output, from
  which nbgrader takes the points.

Whatever the kernel does (patching numpy or torch, input transformers that skip cells, printing
"passed") cannot produce a passing verdict without outputs that match references on inputs it
could not know in advance.

This module holds what those preprocessors share: which cells they handle, which checks a test
cell calls, the course secret and the hidden cases drawn with it.
"""
from __future__ import annotations

import ast
import hashlib
import hmac
import pickle
import secrets
from collections import OrderedDict
from pathlib import Path

from utils.checks.exercise import Case, CaseMemo
from utils.checks.registry import exercise as find_exercise
from utils.checks.seeding import grading_salt

# resources[TRUSTED_KEY]: what PrepareTrustedTests hands over to SandboxedExecute (each test cell's
# inputs) and ApplyTrustedVerdicts (what to judge) for one notebook.
TRUSTED_KEY = "course_trusted_tests"
# resources[KERNEL_FOLDER_KEY]: the kernel's folder (utils.grading.kernel_folder.KernelFolder), where
# SandboxedExecute puts the inputs and ApplyTrustedVerdicts reads the outputs.
KERNEL_FOLDER_KEY = "course_kernel_folder"
# First line of a locked demo cell (training runs, figures) that the autograder does not run:
# nothing graded may depend on it. Students still run it in JupyterLab.
NOT_GRADED_MARKER = "# Not run by the autograder (nothing graded depends on this cell)."


def is_demo_cell(cell, marker: str = NOT_GRADED_MARKER) -> bool:
    """A locked, ungraded code cell whose source starts with ``marker``."""
    meta = cell.metadata.get("nbgrader", {})
    return bool(cell.cell_type == "code" and meta.get("locked") and not meta.get("grade")
                and not meta.get("solution") and cell.source.lstrip().startswith(marker))


def is_autograded_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"))


def student_definitions(nb) -> dict[str, ast.AST]:
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


def forbidden_reference(definition: ast.AST | None, forbidden: tuple[str, ...]) -> str:
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


def course_secret(root: Path) -> str:
    """The course's grading secret, created once; the grading kernel cannot read the course root."""
    path = Path(root) / ".grading_secret"
    if not path.exists():
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()


def cell_salt(secret: str, student: str, cell_id: str) -> str:
    """What the hidden inputs of one test cell are drawn with, for one student.

    A keyed hash of the student and the cell: each student gets inputs of their own (one student's
    inputs, or answers computed from them, are worthless to another), regrading a student draws the
    same inputs again, and nothing about the secret can be recovered from the inputs.
    """
    return hmac.new(secret.encode(), f"{student}\x00{cell_id}".encode(), hashlib.sha256).hexdigest()


class HiddenCases:
    """The hidden cases of each (check, salt), drawn and given references once per student.

    PrepareTrustedTests draws them before the kernel runs, ApplyTrustedVerdicts judges with the
    same memo afterwards; only the most recent ``keep`` entries are kept, so memory does not grow
    with the class.
    """

    def __init__(self, keep: int = 64):
        self.keep = keep
        self._cases: OrderedDict[tuple[str, str], tuple[list[Case], list[CaseMemo]]] = OrderedDict()

    def cases(self, check_name: str, salt: str) -> tuple[list[Case], list[CaseMemo]]:
        """The cases, and a memo of each one's reference and mistake outputs."""
        key = (check_name, salt)
        if key in self._cases:
            self._cases.move_to_end(key)
        else:
            exercise = find_exercise(check_name)
            with grading_salt(salt):
                cases = exercise.make_cases(True)
            self._cases[key] = (cases, [CaseMemo(exercise, case) for case in cases])
            while len(self._cases) > self.keep:
                self._cases.popitem(last=False)
        return self._cases[key]

    def pickled_inputs(self, check_names: list[str], salt: str) -> bytes:
        """``[[(description, inputs), ...] per check]``, pickled, as the kernel's recorder reads them."""
        return pickle.dumps([[(c.description, c.inputs) for c in self.cases(name, salt)[0]] for name in check_names])


HIDDEN_CASES = HiddenCases()
