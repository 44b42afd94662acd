"""Kernel side of trusted grading: run the student's code on the grading inputs and save what it returns.

During ``nbgrader autograde`` each test cell is replaced by a call to :func:`record`.
It reads the inputs the trusted grader wrote into ``.grading/``, runs only the
student's code on them (``Exercise.call``), and saves the outputs as plain arrays
(``.npz`` without pickle) plus a JSON list of errors. Nothing here decides a grade:
the comparison with the reference happens in the grading process, outside this kernel.
"""
from __future__ import annotations

import json
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


def inputs_path(folder: Path, cell_id: str) -> Path:
    return Path(folder) / GRADING_DIR / f"{cell_id}.inputs.pkl"


def outputs_paths(folder: Path, cell_id: str) -> tuple[Path, Path]:
    base = Path(folder) / GRADING_DIR / cell_id
    return base.with_suffix(".outputs.npz"), base.with_suffix(".outputs.json")


def _describe_non_array(value: Any) -> str:
    if value is None:
        return "None"
    return type(value).__name__


def record(cell_id: str, checks: list[tuple[str, Callable[[], Any]]]) -> None:
    """Run each ``(check name, getter of the student's object)`` on this cell's grading inputs."""
    with open(inputs_path(Path.cwd(), cell_id), "rb") as f:
        all_cases = pickle.load(f)   # [(description, inputs), ...] per check, from the trusted grader
    arrays: dict[str, np.ndarray] = {}
    results: list[dict] = []
    for (check_name, getter), cases in zip(checks, all_cases, strict=False):
        exercise = find_exercise(check_name)
        entry: dict = {"check": check_name, "outputs": []}
        results.append(entry)
        try:
            student_object = getter()
        except NameError as exc:
            entry["missing"] = str(exc)
            continue
        for index, (description, inputs) in enumerate(cases):
            case = Case(description, inputs)
            produced = produce(exercise, student_object, case, case_label(index + 1, len(cases)))
            if produced.error is not None:
                entry["outputs"].append({"error": asdict(produced.error),
                                         "not_implemented": produced.not_implemented})
                break   # the verdict stops at the first failing case anyway
            array = to_numpy(produced.value)
            if array is None or array.dtype.kind not in "biuf":
                entry["outputs"].append({"non_array": _describe_non_array(produced.value)})
                continue
            key = f"{len(results) - 1}_{index}"
            arrays[key] = array
            entry["outputs"].append({"array": key})
    npz_path, json_path = outputs_paths(Path.cwd(), cell_id)
    np.savez(npz_path, **arrays)
    json_path.write_text(json.dumps(results))
    print(f"Outputs recorded for grading ({sum(len(e['outputs']) for e in results)} cases).")
