"""Grading that cannot be fooled: tricks, crashes and malformed files in one nbgrader batch.

Every trick earns no point that the plain wrong submission does not earn, every honest
submission gets full marks in the same batch, and regrading gives identical scores. The batch
runs twice: with a new kernel per notebook (nbgrader's way) and with warm kernels forked from a
zygote (``SandboxedExecute.warm_kernels``, what the parallel grader uses).
"""
from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor.course import REPO_ROOT, generate_release, nbgrader
from utils.instructor.demo import feedback_text

from . import submissions as subs

# Short limits keep the batch fast; the course's own limits are in nbgrader_config.py.
LIMITS = ["--SandboxedExecute.timeout=20", "--SandboxedExecute.memory_limit_mb=2048",
          "--SandboxedExecute.cpu_time_limit=300"]
KERNELS = {"new kernels": [], "warm kernels": ["--SandboxedExecute.warm_kernels=True"]}
_GRADING_ARGS: dict[Path, list[str]] = {}   # course root -> the options its batch was graded with


def _autograde(root: Path, *args: str, check: bool = True):
    return nbgrader("autograde", subs.ASSIGNMENT, "--force", *args, *_GRADING_ARGS[root], root=root,
                    check=check, timeout=1500)


def _scores(root: Path) -> dict[str, float]:
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        return {s.student.id: float(s.code_score) for s in gb.assignment_submissions(subs.ASSIGNMENT)}


def _feedback(root: Path, student: str) -> str:
    return feedback_text(root, student, subs.ASSIGNMENT)


@pytest.fixture(scope="module", params=list(KERNELS))
def batch(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    _GRADING_ARGS[root] = LIMITS + KERNELS[request.param]
    shutil.copytree(REPO_ROOT / "source" / subs.ASSIGNMENT, root / "source" / subs.ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    generate_release(root, [subs.ASSIGNMENT])
    expectations = subs.build(root)
    start = time.perf_counter()
    proc = _autograde(root, check=False)
    seconds = time.perf_counter() - start
    nbgrader("generate_feedback", subs.ASSIGNMENT, "--force", root=root, check=False)
    return root, expectations, _scores(root), proc, seconds


def test_batch_grades_every_submission(batch):
    root, expectations, scores, proc, _ = batch
    missing = sorted(set(expectations) - set(scores))
    assert not missing, f"not graded: {missing}\n" + (proc.stdout + proc.stderr)[-3000:]
    if "--SandboxedExecute.warm_kernels=True" in _GRADING_ARGS[root]:
        log = proc.stdout + proc.stderr
        assert "was forked by a warm zygote" in log and "was started anew" not in log, log[-3000:]


def test_honest_submissions_get_full_marks(batch):
    root, expectations, scores, _, _ = batch
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        best = float(gb.find_assignment(subs.ASSIGNMENT).max_code_score)
    for student in subs.HONEST:
        assert scores[student] == best, f"{student}: {scores[student]} of {best}"


@pytest.mark.parametrize("trick", sorted(subs.TRICKS))
def test_trick_earns_nothing_a_wrong_answer_does_not(batch, trick):
    root, _, scores, _, _ = batch
    baseline = scores[subs.PLAIN_WRONG]
    assert 0 < baseline
    assert scores[trick] <= baseline, f"{trick} earned {scores[trick]}, the plain wrong answer {baseline}"


def test_kernel_cannot_touch_the_gradebook(batch):
    root, _, _, _, _ = batch
    with sqlite3.connect(root / "gradebook.db") as con:
        rows = con.execute("SELECT COUNT(*) FROM grade WHERE manual_score = 100 OR extra_credit = 100").fetchone()
    assert rows[0] == 0
    assert "wrote" not in _feedback(root, "trick_gradebook_write").split("unable to open")[0][-20:]


def test_from_scratch_violation_is_named(batch):
    root, _, _, _, _ = batch
    text = _feedback(root, "trick_from_scratch_violation")
    assert "graded from scratch" in text and "torchvision" in text


def test_kernel_death_and_limits_are_explained(batch):
    root, _, _, _, _ = batch
    assert "the kernel had stopped in an earlier cell" in _feedback(root, "trick_os_exit")
    assert "MemoryError" in _feedback(root, "trick_memory_bomb")
    assert "CellTimeoutError" in _feedback(root, "trick_infinite_loop") or \
        "KeyboardInterrupt" in _feedback(root, "trick_infinite_loop")
    assert "did not run to the end" in _feedback(root, "trick_input_transformer")


def test_huge_output_is_truncated(batch):
    root, _, _, _, _ = batch
    notebook = root / "autograded" / "honest_huge_output" / subs.ASSIGNMENT / f"{subs.NOTEBOOK}.ipynb"
    assert notebook.stat().st_size < 2_000_000
    assert "output truncated" in notebook.read_text()


def test_malformed_and_renamed_notebooks_get_a_note(batch):
    root, _, scores, _, _ = batch
    assert scores["broken_invalid_json"] == 0
    assert "could not be read as a notebook" in _feedback(root, "broken_invalid_json")
    assert "was graded as" in _feedback(root, "honest_renamed")


def test_sandbox_hides_the_course(batch):
    root, _, scores, _, _ = batch
    assert scores["trick_read_source"] <= scores[subs.PLAIN_WRONG]
    assert not (root / "autograded" / "trick_shadow_utils" / subs.ASSIGNMENT / "utils.py").exists()


def test_regrading_gives_identical_scores(batch):
    root, _, scores, _, _ = batch
    again = ["honest", subs.PLAIN_WRONG, "trick_hardcoded_visible", "honest_edited_metadata"]
    for student in again:
        _autograde(root, f"--student={student}")
    rescored = _scores(root)
    assert {s: rescored[s] for s in again} == {s: scores[s] for s in again}


def test_busy_gradebook_waits_instead_of_aborting(batch):
    root, _, scores, _, _ = batch
    if "--SandboxedExecute.warm_kernels=True" in _GRADING_ARGS[root]:
        pytest.skip("the gradebook's locking does not depend on the kind of kernel (run with new kernels)")
    held = threading.Event()

    def hold_lock():
        con = sqlite3.connect(root / "gradebook.db", timeout=30)
        con.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(8)
        con.rollback()
        con.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    held.wait(10)
    proc = _autograde(root, "--student=honest", check=False)
    thread.join()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert _scores(root)["honest"] == scores["honest"]
