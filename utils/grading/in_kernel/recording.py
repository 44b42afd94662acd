"""Kernel side of trusted grading: run the student's code on the grading inputs and save what it returns.

During ``nbgrader autograde`` each test cell is replaced by a call to :func:`record`.
It reads the inputs the trusted grader wrote into ``.grading/`` (and deletes them, so no
later cell of the kernel can read them), runs only the student's code on them
(``Exercise.call``), and saves the outputs as plain arrays (``.npz``, uncompressed, without
pickle) plus a JSON list of errors. Nothing here decides a grade: the comparison with the
reference happens in the grading process, outside this kernel, whose reader
(:mod:`utils.grading.recorded_outputs`) accepts exactly what this module writes:

* ``<cell>.outputs.json``: one entry per check, ``{"check": name, "missing": NameError text}`` or
  ``{"check": name, "outputs": [item, ...]}``, where an item is ``{"array": key}``,
  ``{"non_array": type name}`` or ``{"error": Report fields, "not_implemented": bool}``;
* ``<cell>.outputs.npz``: one member ``<key>.npy`` per ``"array"`` item, ``key`` being
  :func:`array_key` of the check's and the case's positions; booleans, integers and floats only.

Texts are shortened to :data:`MAX_TEXT_CHARS` (and a report to :data:`MAX_DETAIL_LINES` detail
lines) so that a long exception message never makes the whole record unreadable.
"""
from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from utils.checks.adapters import to_numpy
from utils.checks.exercise import Case, case_label, produce
from utils.checks.registry import exercise as find_exercise

GRADING_DIR = ".grading"
MAX_TEXT_CHARS = 2000     # longest text of a recorded entry (an error message, a type name)
MAX_DETAIL_LINES = 20     # most detail lines of a recorded error report
ARRAY_KINDS = "biuf"      # numpy dtype kinds recorded as arrays: bool, int, uint, float


def inputs_path(folder: Path, cell_id: str) -> Path:
    return Path(folder) / GRADING_DIR / f"{cell_id}.inputs.pkl"


def outputs_paths(folder: Path, cell_id: str) -> tuple[Path, Path]:
    base = Path(folder) / GRADING_DIR / cell_id
    return base.with_suffix(".outputs.npz"), base.with_suffix(".outputs.json")


def array_key(check_index: int, case_index: int) -> str:
    """The name (without ``.npy``) of the ``.npz`` member holding one case's output."""
    return f"{check_index}_{case_index}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS - 12] + " (shortened)"


def _report_fields(report) -> dict:
    fields = asdict(report)
    return {name: [_clip(line) for line in value[:MAX_DETAIL_LINES]] if isinstance(value, list) else _clip(value)
            for name, value in fields.items()}


def _describe_non_array(value: Any) -> str:
    if value is None:
        return "None"
    return _clip(type(value).__name__)


def record(cell_id: str, checks: list[tuple[str, Callable[[], Any]]]) -> None:
    """Run each ``(check name, getter of the student's object)`` on this cell's grading inputs."""
    path = inputs_path(Path.cwd(), cell_id)
    with open(path, "rb") as f:
        os.remove(path)              # read once: no later cell of this kernel finds the inputs
        all_cases = pickle.load(f)   # [(description, inputs), ...] per check, from the trusted grader
    arrays: dict[str, np.ndarray] = {}
    results: list[dict] = []
    for check_index, ((check_name, getter), cases) in enumerate(zip(checks, all_cases, strict=False)):
        exercise = find_exercise(check_name)
        try:
            student_object = getter()
        except NameError as exc:
            results.append({"check": check_name, "missing": _clip(str(exc))})
            continue
        outputs: list[dict] = []
        results.append({"check": check_name, "outputs": outputs})
        for index, (description, inputs) in enumerate(cases):
            case = Case(description, inputs)
            produced = produce(exercise, student_object, case, case_label(index + 1, len(cases)))
            if produced.error is not None:
                outputs.append({"error": _report_fields(produced.error), "not_implemented": produced.not_implemented})
                break   # the verdict stops at the first failing case anyway
            try:
                array = to_numpy(produced.value)
            except Exception:   # a value that does not convert (a bfloat16 tensor) is recorded by its type
                array = None
            if array is None or array.dtype.kind not in ARRAY_KINDS:
                outputs.append({"non_array": _describe_non_array(produced.value)})
                continue
            key = array_key(check_index, index)
            arrays[key] = array
            outputs.append({"array": key})
    npz_path, json_path = outputs_paths(Path.cwd(), cell_id)
    np.savez(npz_path, **arrays)
    json_path.write_text(json.dumps(results))
    print(f"Outputs recorded for grading ({sum(len(e.get('outputs', [])) for e in results)} cases).")
