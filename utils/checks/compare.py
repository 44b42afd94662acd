"""One comparison for every check: type, then shape, then dtype, then NaN, then values.

Modelled on ``torch.testing.assert_close``: an element passes when
``|actual - expected| <= atol + rtol * |expected|``, and a mismatch reports how
many elements differ, the largest difference with its index, and the tolerance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from utils.checks.adapters import NotANumber, to_numpy


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def describe(self) -> str:
        return f"{self.atol:g} + {self.rtol:g}·|expected|"

    @property
    def exact(self) -> bool:
        """Whole-number answers: compared exactly, so no tolerance is worth stating."""
        return self.rtol == 0 and self.atol < 1e-6

    def close(self, actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
        return np.abs(actual - expected) <= self.atol + self.rtol * np.abs(expected)


# float32 arithmetic in a student's loop must pass; real mistakes differ by ~1e-1.
DEFAULT_TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4)
# Answers that are whole numbers (sizes, counts, byte sizes) or exact by construction.
EXACT = Tolerance(atol=1e-9, rtol=0.0)


@dataclass
class Mismatch:
    kind: str               # "type", "shape", "dtype", "nan", "values"
    details: list[str]
    max_abs_diff: float = float("nan")


def _fmt(x: float) -> str:
    """A value as a student reads it: whole numbers without decimals, others to 4 significant digits."""
    if np.isfinite(x) and x == round(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def compare(actual_raw, expected: np.ndarray, tol: Tolerance,
            describe_index: Callable[[tuple], str] | None = None,
            describe_value: Callable[[float], str] | None = None,
            parts: tuple[str, ...] = (), reveal: bool = True) -> tuple[Mismatch | None, float]:
    """Compare the student's value with the reference.

    ``describe_value`` formats a value (e.g. a character for its code point); ``parts`` names the results
    stacked along axis 0 (``("h", "c")``), so that shapes are stated per part. With ``reveal=False`` (answers
    worked out by hand, where the expected value *is* the answer) the expected values are not shown.
    Returns ``(None, max_abs_diff)`` when they agree, else ``(Mismatch, ...)``.
    """
    value = describe_value or _fmt
    expected = np.asarray(expected, dtype=np.float64)
    if isinstance(actual_raw, NotANumber):
        return Mismatch("type", [f"Expected a single number, got {actual_raw.type_name}."]), float("nan")
    actual = to_numpy(actual_raw)
    if actual is None:
        type_name = getattr(actual_raw, "type_name", type(actual_raw).__name__)
        got = "None (did you forget `return`?)" if actual_raw is None else type_name
        return Mismatch("type", [f"Expected a numpy array of shape {expected.shape}, got {got}."]), float("nan")
    if expected.ndim == 0 and actual.size == 1:
        actual = actual.reshape(())
    if actual.shape != expected.shape:
        if expected.ndim == 1 and actual.ndim == 1:
            text = f"Yours has {actual.shape[0]} values, expected {expected.shape[0]}."
        elif parts and len(parts) == expected.shape[0] and actual.ndim == expected.ndim \
                and actual.shape[0] == expected.shape[0]:
            text = f"Shape of each of {', '.join(parts)}: yours {actual.shape[1:]}, expected {expected.shape[1:]}."
        else:
            text = f"Shape: yours {actual.shape}, expected {expected.shape}."
        return Mismatch("shape", [text]), float("nan")
    if not (np.issubdtype(actual.dtype, np.floating) or np.issubdtype(actual.dtype, np.integer)):
        return Mismatch("dtype", [f"dtype: yours {actual.dtype}, expected a floating-point array."]), float("nan")
    if np.issubdtype(actual.dtype, np.integer) and not np.all(expected == np.round(expected)):
        return Mismatch("dtype", [
            f"dtype: yours {actual.dtype}, expected a floating-point array: the values were rounded "
            "(e.g. np.zeros(..., dtype=int) or an integer input that was never cast to float)."]), float("nan")
    actual = actual.astype(np.float64)
    n = expected.size
    bad_nan = ~np.isfinite(actual) & np.isfinite(expected)
    if bad_nan.any():
        index = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        where = describe_index(index) if describe_index else f"index {list(index)}"
        return Mismatch("nan", [f"{int(bad_nan.sum())} of {n} values are NaN or infinite, "
                                f"first at {where} (expected {value(expected[index])})."]), float("inf")
    diff = np.abs(actual - expected)
    max_abs = float(diff.max()) if n else 0.0
    ok = tol.close(actual, expected)
    if ok.all():
        return None, max_abs
    n_bad = int((~ok).sum())
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(ok, -1.0, diff))), diff.shape))
    where = describe_index(index) if describe_index else f"[{', '.join(map(str, index))}]"
    if parts and len(parts) == actual.shape[0] and actual.ndim >= 2:
        shape_note = f"Shapes OK ({', '.join(parts)}: {actual.shape[1:]} each). "
    else:
        shape_note = f"Shape OK {actual.shape}. " if actual.ndim >= 2 else ""
    allowed = "" if tol.exact else f" (allowed {tol.describe()})"
    if not reveal:
        index = tuple(int(i) for i in np.argwhere(~ok)[0])
        where = describe_index(index) if describe_index else f"[{', '.join(map(str, index))}]"
        if n == 1:
            return Mismatch("values", [f"Yours {value(actual[index])} is not right{allowed}."], max_abs), max_abs
        return Mismatch("values", [f"{n_bad} of {n} values are not right{allowed}; the first is {where}: "
                                   f"yours {value(actual[index])}."], max_abs), max_abs
    if n == 1:
        return Mismatch("values", [f"Yours {value(actual[index])}, expected {value(expected[index])}{allowed}."],
                        max_abs), max_abs
    largest = "Largest difference" if not tol.exact else "First difference"
    if tol.exact:
        index = tuple(int(i) for i in np.argwhere(~ok)[0])
        where = describe_index(index) if describe_index else f"[{', '.join(map(str, index))}]"
    return Mismatch("values", [
        f"{shape_note}{n_bad} of {n} values differ.",
        f"{largest} at {where}: yours {value(actual[index])}, expected {value(expected[index])}{allowed}.",
    ], max_abs), max_abs


def agrees(actual: np.ndarray, expected: np.ndarray, tol: Tolerance, equal_nan: bool = False) -> bool:
    """True when both arrays have the same shape and agree within ``tol`` (with ``equal_nan``, NaN and
    infinities agree where both have the same one)."""
    actual = to_numpy(actual)
    expected = to_numpy(expected)
    if actual is None or expected is None or actual.dtype.kind not in "biuf" or expected.dtype.kind not in "biuf":
        return False
    actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    if expected.ndim == 0 and actual.size == 1:
        actual = actual.reshape(())
    if actual.shape != expected.shape:
        return False
    if equal_nan:
        finite = np.isfinite(expected)
        if not np.array_equal(finite, np.isfinite(actual)) or \
                not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
            return False
        actual, expected = actual[finite], expected[finite]
    with np.errstate(invalid="ignore"):
        return bool(np.all(tol.close(actual, expected)))
