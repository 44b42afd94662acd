"""Known mistakes: each one is the reference computed the wrong way, with a name and a hint.

When a student's output fails a case, every mistake is evaluated on the same
inputs; if the student's output equals one of them (and that mistake really
changes the answer on this case), the failure message names it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.checks.compare import Tolerance, agrees, to_numpy


@dataclass(frozen=True)
class Mistake:
    name: str                              # "your output equals the reference computed with Δy and Δx swapped"
    hint: str
    compute: Callable[[Any], np.ndarray]   # the mistaken output for a case's inputs


_DOES_NOT_APPLY = object()


def mistake_output(mistake: Mistake, inputs) -> Any:
    """The mistaken output on these inputs, or ``_DOES_NOT_APPLY`` when it cannot be formed."""
    try:
        return mistake.compute(inputs)
    except Exception:  # a mistake that cannot be formed on this case does not apply
        return _DOES_NOT_APPLY


def _applicable(inputs, mistakes: list[Mistake], outputs: Callable[[int], Any] | None):
    """``(mistake, its output)`` for each mistake that can be formed on these inputs, in catalogue order.

    ``outputs(i)`` may supply mistake i's output (e.g. from a cache) instead of computing it.
    """
    for index, mistake in enumerate(mistakes):
        wrong = outputs(index) if outputs else mistake_output(mistake, inputs)
        if wrong is not _DOES_NOT_APPLY:
            yield mistake, wrong


def matching(actual, inputs, mistakes: list[Mistake], expected: np.ndarray,
             tol: Tolerance, outputs: Callable[[int], Any] | None = None):
    """Each mistake whose output equals ``actual`` and differs from ``expected``, in catalogue order."""
    actual = to_numpy(actual)
    if actual is None:
        return
    yield from (mistake for mistake, wrong in _applicable(inputs, mistakes, outputs)
                if agrees(actual, wrong, tol) and not agrees(wrong, expected, tol))


def identify(actual, inputs, mistakes: list[Mistake], expected: np.ndarray,
             tol: Tolerance, outputs: Callable[[int], Any] | None = None) -> Mistake | None:
    """The first mistake whose output equals ``actual`` and differs from ``expected``."""
    return next(matching(actual, inputs, mistakes, expected, tol, outputs), None)
