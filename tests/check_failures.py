"""What the checker tests share: run a check that must fail and read its message; the plain data a grader
accepts from the student's kernel."""
from __future__ import annotations

import numpy as np
import pytest

from utils.checks.feedback import CheckFailure


def failure(check, student, hidden: bool = False) -> str:
    """The message of the CheckFailure that ``check(student)`` must raise."""
    with pytest.raises(CheckFailure) as info:
        check(student, hidden=hidden)
    return str(info.value)


def fails_with(check, student, *texts: str, hidden: bool = False) -> str:
    """As :func:`failure`, and the message contains each of ``texts``."""
    message = failure(check, student, hidden=hidden)
    for text in texts:
        assert text in message, message
    return message


def mistake_name(exercises: dict, function: str, keyword: str) -> str:
    """The one catalogued mistake of ``function`` whose name contains ``keyword``."""
    names = [m.name for m in exercises[function].mistakes if keyword in m.name]
    assert len(names) == 1, (function, keyword, names)
    return names[0]


def plain_data(value) -> bool:
    """Numbers, strings, numeric arrays and lists, tuples and str-keyed dicts of them: what ``call`` may give."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_data(v) for k, v in value.items())
    return False
