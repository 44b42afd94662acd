"""The trusted reader of what a grading kernel recorded (:mod:`utils.grading.in_kernel.recording`).

Everything here is untrusted input: plain arrays (``.npz`` read without pickle) and a JSON list,
size-limited, turned into the :class:`~utils.checks.exercise.Produced` values the check core
judges. Nothing the kernel wrote is ever unpickled or executed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from utils.checks.exercise import Produced
from utils.checks.feedback import Report
from utils.grading.in_kernel.recording import outputs_paths

REPORT_FIELDS = {f.name for f in fields(Report)}


class Opaque:
    """Stands for a non-array value the kernel returned (only its type name crosses over)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return self.type_name


@dataclass
class RecordedCheck:
    """What the kernel recorded for one check of a test cell."""

    entry: dict | None             # {"check", "outputs": [...]} or {"check", "missing": NameError text}
    arrays: dict[str, np.ndarray]

    def missing(self) -> str | None:
        """The NameError of a function that was not defined when the test ran (None when it was)."""
        return self.entry.get("missing") if self.entry else None

    def produced(self, index: int, label: str) -> Produced:
        """What the student's code gave for case ``index`` (called ``label`` in the feedback)."""
        recorded = self.entry["outputs"]
        if index >= len(recorded):
            return Produced(error=Report(headline=f"no output was recorded for {label}"))
        item = recorded[index]
        if "error" in item:
            report = Report(**{k: v for k, v in item["error"].items() if k in REPORT_FIELDS})
            return Produced(error=report, not_implemented=item.get("not_implemented", False))
        if "non_array" in item:
            return Produced(value=None if item["non_array"] == "None" else Opaque(item["non_array"]))
        return Produced(value=self.arrays[item["array"]])


def load_recorded(folder: Path, cell_id: str, check_names: list[str], max_bytes: int) -> list[RecordedCheck] | None:
    """One :class:`RecordedCheck` per check of the cell, or None when the kernel recorded nothing.

    Raises ValueError (or any error of a malformed file) for outputs that cannot be read.
    """
    npz_path, json_path = outputs_paths(folder, cell_id)
    if not (npz_path.exists() and json_path.exists()):
        return None
    if npz_path.stat().st_size + json_path.stat().st_size > max_bytes:
        raise ValueError(f"recorded outputs are larger than {max_bytes // 2**20} MiB")
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    entries = json.loads(json_path.read_text())
    recorded = []
    for index, check_name in enumerate(check_names):
        entry = entries[index] if index < len(entries) else None
        if entry is not None and entry.get("check") != check_name:
            entry = None
        recorded.append(RecordedCheck(entry, arrays))
    return recorded
