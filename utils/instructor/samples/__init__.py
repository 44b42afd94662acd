"""Sample submissions with typical mistakes, one module per notebook.

Each module ``<assignment>.py`` or ``<assignment>_<notebook>.py`` defines ``MISTAKES``: a list of
:class:`SampleMistake`. The demo and the end-to-end tests build each one from the instructor
solution of the source notebook by exact text replacements in one solution cell, grade it with
nbgrader, and expect a partial score whose feedback contains ``diagnosis``.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SampleMistake:
    student: str                        # nbgrader student id, unique across the course
    notebook: str                       # notebook name without .ipynb
    cell: str                           # nbgrader grade_id of the solution cell to edit
    replace: tuple[tuple[str, str], ...]  # (old, new) exact replacements in that cell's solution code
    diagnosis: str                      # text the student's feedback must contain


def in_notebook(notebook: str) -> Callable[..., SampleMistake]:
    """``mistake(student, cell, (old, new), ..., diagnosis=...)``: a :class:`SampleMistake` of ``notebook``."""

    def mistake(student: str, cell: str, *replace: tuple[str, str], diagnosis: str) -> SampleMistake:
        return SampleMistake(student, notebook, cell, replace, diagnosis)

    return mistake


def mistakes_for(assignment: str) -> list[SampleMistake]:
    """Mistakes from ``samples/<assignment>.py`` and ``samples/<assignment>_*.py``."""
    mistakes = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == assignment or info.name.startswith(assignment + "_"):
            mistakes += importlib.import_module(f"{__name__}.{info.name}").MISTAKES
    return mistakes
