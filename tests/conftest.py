"""Fixtures shared by the end-to-end tests.

``graded_course`` copies the course into a temporary root and runs the whole demo
there once per test session (release, sample submissions, autograde, feedback,
export, class report) with nbgrader's own commands in sequence (``make demo`` uses the
parallel grader), so the nbgrader, browser and export tests all look at one graded course.
Set ``COURSE_TEST_ASSIGNMENTS=deformable_conv,rnn`` to grade only some assignments
while developing. The tests grade the first sample mistake of each notebook
(``COURSE_TEST_MISTAKES``, default 1; every mistake's diagnosis is also tested
directly in the checker tests); ``make demo`` grades them all.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from utils.instructor import demo
from utils.instructor.course import REPO_ROOT, assignments


@dataclass
class GradedCourse:
    root: Path
    names: list[str]
    outcomes: list[demo.Outcome]
    report: Path                 # the class report's page


def copy_course(root: Path) -> Path:
    """A course root with the repository's source/ and nbgrader_config.py."""
    shutil.copytree(REPO_ROOT / "source", root / "source")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


@pytest.fixture(scope="session")
def graded_course(tmp_path_factory) -> GradedCourse:
    root = copy_course(tmp_path_factory.mktemp("course"))
    wanted = os.environ.get("COURSE_TEST_ASSIGNMENTS")
    names = [n for n in wanted.split(",") if n] if wanted else assignments(root)
    per_notebook = int(os.environ.get("COURSE_TEST_MISTAKES", "1"))
    graded = demo.run(root, names, per_notebook, parallel=False)   # nbgrader's own commands, in sequence
    return GradedCourse(root, names, graded.outcomes, graded.report.html_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models and references: one torch thread is faster than several, above all on a busy
    machine. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on loopback (:mod:`utils.instructor.pgserver`) for one test module;
    skipped where the server binaries are missing."""
    from utils.instructor.pgserver import PostgresServer, ServerUnavailable, find_bindir
    try:
        find_bindir()
    except ServerUnavailable as why:
        pytest.skip(f"PostgreSQL server binaries missing: {why}")
    with PostgresServer() as server:
        yield server
