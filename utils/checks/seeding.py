"""Local random generators for check inputs.

Every case draws from its own ``numpy.random.Generator`` seeded from the
exercise name and case number, so inputs are the same on every machine and in
every run, and no check touches ``np.random``, ``random`` or torch's global state.

While grading, the trusted grader mixes a course secret into every seed
(:func:`grading_salt`), so graded inputs cannot be known, or answered, in advance.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager

import numpy as np

_grading_salt = ""


def case_rng(exercise: str, case_number: int, salt: str = "") -> np.random.Generator:
    """A generator that depends only on ``(exercise, case_number, salt)`` and the grading salt."""
    digest = hashlib.sha256(f"{exercise}|{case_number}|{salt}|{_grading_salt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@contextmanager
def grading_salt(secret: str):
    """Within this block, every case's inputs also depend on ``secret``."""
    global _grading_salt
    previous, _grading_salt = _grading_salt, secret
    try:
        yield
    finally:
        _grading_salt = previous
