"""The one loop every ``check_*`` runs: call the student's function on each case,
compare with the reference, and turn the first failure into feedback.

An assignment module describes an exercise (its cases, its reference, its
known mistakes) and calls :func:`run_check`; nothing here knows about a
particular exercise.
"""
from __future__ import annotations

import copy
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .compare import DEFAULT_TOLERANCE, Tolerance, compare
from .diagnose import Mistake, identify, identify_shape
from .feedback import CheckResult, NotImplementedYet, Report, raise_failure


@dataclass
class Case:
    """One set of inputs for the student's function."""

    description: str                  # "N=2, C_in=3, C_out=4, 6×7 input, ..."
    inputs: dict[str, Any]
    describe_index: Callable[[tuple], str] | None = None   # how to name an output element


@dataclass
class Exercise:
    """What a check needs to know about one exercise."""

    function: str                                  # the student's function name
    reference_name: str                            # "torchvision.ops.deform_conv2d"
    make_cases: Callable[[bool], list[Case]]       # hidden=False: visible cases only
    reference: Callable[[dict], np.ndarray]        # float64 reference for a case's inputs
    call: Callable[[Callable, dict], Any]          # how to call the student's function
    mistakes: list[Mistake] = field(default_factory=list)
    tolerance: Tolerance = DEFAULT_TOLERANCE
    hint: str = ""                                 # shown when no mistake matched
    exception_hints: dict[str, str] = field(default_factory=dict)  # exception type name -> hint


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _student_frame(exc: BaseException) -> str:
    """'line 12, in deform_conv2d: v = img[y, x]' for the innermost frame outside this package."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)]
    if not frames:
        return ""
    f = frames[-1]
    code = f" → {f.line.strip()}" if f.line else ""
    return f"line {f.lineno}, in {f.name}{code}"


def _call_student(exercise: Exercise, fn: Callable, case: Case, label: str):
    """The student's output for a case; failures become feedback, never a traceback."""
    __tracebackhide__ = True  # IPython then shows the feedback, not this package's frames
    inputs = copy.deepcopy(case.inputs)   # the student may modify their inputs in place
    try:
        return exercise.call(fn, inputs)
    except NotImplementedError:
        raise_failure(Report(
            headline=f"{exercise.function} is not implemented yet",
            hint=f"replace `raise NotImplementedError()` in {exercise.function} with your code, "
                 "run that cell, then run this check again."), NotImplementedYet)
    except Exception as exc:  # noqa: BLE001 - any error in student code is feedback
        where = _student_frame(exc)
        details = [f"Your function raised {type(exc).__name__}: {exc}"]
        if where:
            details.append(f"At {where}")
        raise_failure(Report(
            headline=f"{exercise.function} raised an error",
            case=f"{label}: {case.description}",
            details=details,
            hint=exercise.exception_hints.get(type(exc).__name__, exercise.hint)))


def run_check(exercise: Exercise, fn: Callable, hidden: bool = False) -> CheckResult:
    """Check ``fn`` on every case; return a result or raise :class:`CheckFailure`."""
    __tracebackhide__ = True
    if not callable(fn):
        raise_failure(Report(
            headline=f"check_{exercise.function} expects your function, got {type(fn).__name__}",
            hint=f"pass the function itself: check_{exercise.function}({exercise.function})"))
    cases = exercise.make_cases(hidden)
    worst = 0.0
    for number, case in enumerate(cases, start=1):
        label = f"Case {number} of {len(cases)}"
        expected = exercise.reference(case.inputs)
        actual = _call_student(exercise, fn, case, label)
        mismatch, max_abs = compare(actual, expected, exercise.tolerance, case.describe_index)
        if mismatch is None:
            worst = max(worst, max_abs)
            continue
        mistake = identify(actual, case.inputs, exercise.mistakes, expected, exercise.tolerance)
        if mistake is None and mismatch.kind == "shape":
            mistake = identify_shape(actual, case.inputs, exercise.mistakes)
        raise_failure(Report(
            headline=f"{exercise.function} does not match {exercise.reference_name}",
            case=f"{label}: {case.description}",
            details=mismatch.details,
            likely_cause=mistake.name if mistake else "",
            hint=mistake.hint if mistake else exercise.hint))
    return CheckResult(exercise.function, exercise.reference_name, len(cases), worst,
                       exercise.tolerance.describe())
