"""The one loop every ``check_*`` runs: call the student's function on each case,
compare with the reference, and turn the first failure into feedback.

An assignment module describes an exercise (its cases, its reference, its
known mistakes) and calls :func:`run_check`; nothing here knows about a
particular exercise. The loop has two halves so that grading can split them:
:func:`produce` runs student code (in the student's kernel), :func:`judge`
compares with the reference (in the trusted grading process).
"""
from __future__ import annotations

import copy
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utils.checks.adapters import to_numpy
from utils.checks.characterise import Layout, describe_difference, describe_shape
from utils.checks.compare import DEFAULT_TOLERANCE, Tolerance, agrees, compare
from utils.checks.diagnose import _DOES_NOT_APPLY, Mistake, identify, matching, mistake_output
from utils.checks.feedback import CheckFailure, CheckResult, NotImplementedYet, Report, raise_failure
from utils.checks.from_scratch import ForbiddenUse, from_scratch_report, switched_off_report, unavailable_report
from utils.checks.rules import RuleBroken


@dataclass
class Case:
    """One set of inputs for the student's function."""

    description: str                  # "N=2, C_in=3, C_out=4, 6×7 input, ..."
    inputs: dict[str, Any]
    describe_index: Callable[[tuple], str] | None = None   # how to name an output element
    describe_value: Callable[[float], str] | None = None   # how to show a value (a character for its code)
    layout: Layout | None = None      # names of the output's axes and stacked parts (default: the exercise's)
    # Named regions of the output ("masked positions" -> boolean mask broadcastable to the output's shape):
    # a difference confined to one is reported as such.
    regions: dict[str, Any] = field(default_factory=dict)


HIDDEN_SALT = "hidden"


def visible_then_hidden(visible: list, hidden_only: list, hidden: bool) -> list[tuple[Any, str]]:
    """``(setting, salt)`` for each case of a check: the visible settings, then, with ``hidden=True``
    (grading), the hidden ones.

    This is the one rule for hidden cases: they come after the visible ones (which they keep), and
    they draw their random inputs with :data:`HIDDEN_SALT`, so no hidden input equals a visible one.
    """
    return [(s, "") for s in visible] + ([(s, HIDDEN_SALT) for s in hidden_only] if hidden else [])


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
    # Library functions/classes a from-scratch answer must not call ("torch.nn.functional.conv2d",
    # "torch.nn.LSTMCell"): calling one, by any route, fails the case, in the visible check and when
    # grading (utils.checks.from_scratch).
    forbidden: tuple[str, ...] = ()
    # The notebook heading a failure sends the student back to ("2.1 The LSTM cell"): text that occurs in
    # one Markdown heading of the exercise's source notebook.
    section: str = ""
    layout: Layout | None = None       # names of the output's axes and stacked parts, for the diagnosis
    # The input space the cases must cover: property name -> predicate over a Case ("batch ≥ 2",
    # "a ragged last batch", "train and eval mode", "row maxima of both signs", "eps matters"). The contract
    # test requires each property to hold on at least one case (visible or hidden).
    covers: dict[str, Callable[[Case], bool]] = field(default_factory=dict)
    # False for answers worked out by hand (sizes, parameter counts): the expected value is the answer, so a
    # failure says which answer is wrong and why it may be, never the right value or how far off it is.
    reveal_expected: bool = True


@dataclass
class Produced:
    """What the student's code gave for one case: a value, or a report of why there is none."""

    value: Any = None
    error: Report | None = None
    not_implemented: bool = False


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the whole `utils` package


def _student_frame(exc: BaseException) -> str:
    """'line 12, in deform_conv2d → v = img[y, x]' for the innermost frame outside this package."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)]
    if not frames:
        return ""
    f = frames[-1]
    code = f" → {f.line.strip()}" if f.line else ""
    return f"line {f.lineno}, in {f.name}{code}"


def not_implemented_report(exercise: Exercise) -> Report:
    return Report(headline=f"{exercise.function} is not implemented yet",
                  hint=f"replace `raise NotImplementedError()` in {exercise.function} with your code, "
                       "run that cell, then run this check again.",
                  section=exercise.section)


def produce(exercise: Exercise, fn: Callable, case: Case, label: str) -> Produced:
    """Run the student's code on one case; an exception becomes a report, never a traceback."""
    inputs = copy.deepcopy(case.inputs)   # the student may modify their inputs in place
    try:
        if not exercise.forbidden:
            return Produced(value=exercise.call(fn, inputs))
        with ForbiddenUse(exercise.forbidden) as watch:
            value = exercise.call(fn, inputs) if not watch.unavailable else None
        if watch.unavailable:
            return Produced(error=unavailable_report(exercise, watch.unavailable, label, case.description))
        if watch.switched_off:
            return Produced(error=switched_off_report(exercise, watch.switched_off, label, case.description))
        if watch.found:
            return Produced(error=from_scratch_report(exercise, watch.found, label, case.description))
        return Produced(value=value)
    except NotImplementedError:
        return Produced(error=not_implemented_report(exercise), not_implemented=True)
    except RuleBroken as broken:
        return Produced(error=Report(
            headline=f"{exercise.function} breaks a rule of the exercise",
            case=f"{label}: {case.description}",
            details=[f"Rule: {broken.rule}.", f"Seen: {broken.seen}."],
            hint="keep the rule the notebook states; the value you return is checked once the rule holds.",
            section=exercise.section))
    except Exception as exc:   # any error in student code is feedback
        where = _student_frame(exc)
        details = [f"Your function raised {type(exc).__name__}: {exc}"]
        if where:
            details.append(f"At {where}")
        return Produced(error=Report(
            headline=f"{exercise.function} raised an error",
            case=f"{label}: {case.description}",
            details=details,
            hint=exercise.exception_hints.get(type(exc).__name__, exercise.hint),
            section=exercise.section))


class CaseMemo:
    """A case's reference and mistake outputs, computed once: the trusted grader judges every
    student of a batch on the same hidden cases."""

    def __init__(self, exercise: Exercise, case: Case):
        self.exercise, self.case = exercise, case
        self._reference: Any = None
        self._mistakes: dict[int, Any] = {}

    def reference(self) -> Any:
        if self._reference is None:
            self._reference = self.exercise.reference(self.case.inputs)
        return self._reference

    def mistake(self, index: int) -> Any:
        if index not in self._mistakes:
            self._mistakes[index] = mistake_output(self.exercise.mistakes[index], self.case.inputs)
        return self._mistakes[index]


def judge(exercise: Exercise, case: Case, label: str, produced: Produced,
          memo: CaseMemo | None = None) -> tuple[Report | None, float]:
    """Compare one produced output with the reference: ``(None, max_abs_diff)`` when it passes."""
    if produced.error is not None:
        return produced.error, float("nan")
    expected = memo.reference() if memo else exercise.reference(case.inputs)
    actual = produced.value
    layout = case.layout or exercise.layout
    mismatch, max_abs = compare(actual, expected, exercise.tolerance, case.describe_index, case.describe_value,
                                layout.parts if layout else (), reveal=exercise.reveal_expected)
    if mismatch is None:
        return None, max_abs
    outputs = memo.mistake if memo else None
    mistake = identify(actual, case.inputs, exercise.mistakes, expected, exercise.tolerance, outputs)
    pattern = [] if mistake or not exercise.reveal_expected else \
        _pattern(mismatch.kind, actual, expected, exercise.tolerance, layout, case.regions)
    return Report(
        headline=f"{exercise.function} does not match {exercise.reference_name}",
        case=f"{label}: {case.description}",
        details=mismatch.details,
        pattern=pattern,
        likely_cause=mistake.name if mistake else "",
        hint=mistake.hint if mistake else exercise.hint,
        section=exercise.section), max_abs


def _pattern(kind: str, actual, expected, tol: Tolerance, layout: Layout | None, regions: dict) -> list[str]:
    """Where and how a value differs when no catalogued mistake explains it (utils.checks.characterise)."""
    array = to_numpy(actual)
    expected = np.asarray(expected, dtype=np.float64)
    if array is None or array.dtype.kind not in "biuf":
        return []
    try:
        if kind == "shape":
            return describe_shape(array.shape, expected.shape, layout, array, expected)
        if kind in ("values", "nan"):
            if expected.ndim == 0 and array.size == 1:
                array = array.reshape(())
            return describe_difference(array, expected, tol, layout, regions)
    except Exception:   # a description is a courtesy: never let it hide the verdict
        return []
    return []


def _consistent(exercise: Exercise, mistake: Mistake, memos: list[CaseMemo],
                student: Callable[[int], Any]) -> bool:
    """A named mistake is the cause only if it explains the student's output on every case where it can be
    formed: where the student passed, the mistake must not change the answer; where the student's output is
    known, the mistake must give it."""
    index = exercise.mistakes.index(mistake)
    for number, memo in enumerate(memos):
        wrong = memo.mistake(index)
        if wrong is _DOES_NOT_APPLY or to_numpy(wrong) is None:
            continue
        actual = student(number)
        if actual is _DOES_NOT_APPLY:
            continue
        if not agrees(actual, wrong, exercise.tolerance, equal_nan=True):
            return False
    return True


def case_label(number: int, total: int) -> str:
    return f"Case {number} of {total}"


def evaluate(exercise: Exercise, cases: list[Case], outputs: Callable[[int, Case, str], Produced],
             memos: list[CaseMemo] | None = None) -> CheckResult | Report:
    """Judge every case in order; the first failure is the verdict.

    A failure that names a catalogued mistake is checked against every other case first (the student's
    outputs there, produced on demand): the name stays only if that mistake explains all of them.
    """
    memos = memos or [CaseMemo(exercise, case) for case in cases]
    produced: dict[int, Produced] = {}

    def output(index: int) -> Produced:
        if index not in produced:
            produced[index] = outputs(index, cases[index], case_label(index + 1, len(cases)))
        return produced[index]

    worst = 0.0
    for number, case in enumerate(cases, start=1):
        label = case_label(number, len(cases))
        memo = memos[number - 1]
        report, max_abs = judge(exercise, case, label, output(number - 1), memo)
        if report is not None:
            if report.likely_cause:
                _keep_only_a_proven_cause(report, exercise, case, memos, number - 1, output)
            return report
        worst = max(worst, max_abs)
    return CheckResult(exercise.function, exercise.reference_name, len(cases), worst,
                       exercise.tolerance.describe(), exact=exercise.tolerance.exact)


def _keep_only_a_proven_cause(report: Report, exercise: Exercise, case: Case, memos: list[CaseMemo], failed: int,
                              output: Callable[[int], Produced]) -> None:
    """Keep a named mistake only if it explains every case: the first catalogued mistake that gives the failing
    output and explains every case is named (with its hint); when none does, the difference is described."""
    def student(index: int) -> Any:
        produced = output(index)
        return _DOES_NOT_APPLY if produced.error is not None else produced.value

    value, memo = output(failed).value, memos[failed]
    candidates = matching(value, case.inputs, exercise.mistakes, memo.reference(), exercise.tolerance, memo.mistake)
    proven = next((m for m in candidates if _consistent(exercise, m, memos, student)), None)
    if proven is not None:
        report.likely_cause, report.hint = proven.name, proven.hint
        return
    report.likely_cause, report.hint = "", exercise.hint
    if not exercise.reveal_expected:
        return
    expected = memo.reference()
    array = to_numpy(value)
    same = array is not None and (array.shape == np.shape(expected) or (np.ndim(expected) == 0 and array.size == 1))
    report.pattern = _pattern("values" if same else "shape", value, expected, exercise.tolerance,
                              case.layout or exercise.layout, case.regions)


def run_check(exercise: Exercise, fn: Callable, hidden: bool = False) -> CheckResult:
    """Check ``fn`` on every case; return a result or raise :class:`CheckFailure`."""
    __tracebackhide__ = True  # IPython then shows the feedback, not this package's frames
    verdict = evaluate(exercise, exercise.make_cases(hidden),
                       lambda index, case, label: produce(exercise, fn, case, label))
    if isinstance(verdict, Report):
        raise_failure(verdict, NotImplementedYet if verdict.headline.endswith("not implemented yet")
                      else CheckFailure)
    return verdict
