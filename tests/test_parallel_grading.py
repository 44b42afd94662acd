"""The parallel grader (utils/instructor/parallel.py) grades exactly as sequential nbgrader.

The session fixture ``graded_course`` graded the sample submissions with plain
``nbgrader autograde`` / ``generate_feedback`` / ``export``. Here the same submissions are copied
into a fresh course (same source, release, configuration, grading secret, and the gradebook's
assignment definitions without any grade) and graded by ``python -m utils.instructor.parallel``
run from that course root on a 2-worker Dask LocalCluster, with a broken submission added.
The parallel grader forks its kernels from warm zygotes (utils/grading/zygote.py), nbgrader starts each
kernel anew, so this also shows that warm kernels grade exactly as new ones. Two assignments are
regraded to keep the test short: ``deformable_conv`` (NumPy only, torch blocked) and ``rnn``
(torch), those of them that were graded; override with COURSE_PARALLEL_ASSIGNMENTS.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url

BROKEN = "aaa_broken_metadata"   # sorts first: the first student of its shard
SHARD_SIZE = 2                   # several shards on the two workers, the broken one with a shard-mate


@dataclass
class ParallelRun:
    sequential: Path
    parallel: Path
    students: dict[str, list[str]]   # assignment -> its sample students
    proc: subprocess.CompletedProcess
    results: list[dict]

    @property
    def assignment(self) -> str:
        """The assignment with the broken submission (the first one)."""
        return next(iter(self.students))


def fresh_course(graded: Path, target: Path, students: dict[str, list[str]]) -> Path:
    """A course that has released the assignments and received their students' submissions, but graded nothing."""
    target.mkdir(parents=True)
    for name in ("source", "release"):
        shutil.copytree(graded / name, target / name)
    for name in ("nbgrader_config.py", ".grading_secret", "gradebook.db"):
        shutil.copy2(graded / name, target / name)
    for assignment, names in students.items():
        for student in names:
            shutil.copytree(graded / "submitted" / student / assignment,
                            target / "submitted" / student / assignment)
    with Gradebook(sqlite_gradebook_url(target), "dl-architectures") as gb:
        for student in [s.id for s in gb.students]:
            gb.remove_student(student)   # and its submissions and grades
    return target


def break_submission(course: Path, assignment: str, student: str) -> None:
    """A submission nbgrader cannot grade: its test cells claim a newer nbgrader metadata schema.

    Sequential ``nbgrader autograde`` stops the whole batch at such a notebook (SchemaTooNewError).
    """
    source = course / "release" / assignment
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade"):
                cell.metadata.nbgrader["schema_version"] = 99
        nbformat.write(nb, folder / path.name)


@pytest.fixture(scope="module")
def parallel_run(graded_course, tmp_path_factory) -> ParallelRun:
    wanted = os.environ.get("COURSE_PARALLEL_ASSIGNMENTS", "deformable_conv,rnn").split(",")
    assignments = [a for a in wanted if a in graded_course.names] or graded_course.names[:1]
    # the demo's samples only: other tests add students of their own to the shared course
    students = {a: sorted(o.student for o in graded_course.outcomes if o.assignment == a) for a in assignments}
    course = fresh_course(graded_course.root, tmp_path_factory.mktemp("parallel") / "course", students)
    break_submission(course, assignments[0], BROKEN)
    timings = course / "timings.json"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([sys.executable, "-m", "utils.instructor.parallel", *assignments, "--workers", "2",
                           "--shard-size", str(SHARD_SIZE), "--timings", str(timings), "--quiet"],
                          cwd=course, env=env, text=True, capture_output=True, timeout=900)
    results = json.loads(timings.read_text()) if timings.exists() else []
    return ParallelRun(graded_course.root, course, students, proc, results)


def code_scores(root: Path, assignment: str, students: list[str]) -> dict:
    """(student, notebook) -> (code score, {test cell: auto score})."""
    scores = {}
    with Gradebook(sqlite_gradebook_url(root), "dl-architectures") as gb:
        for student in students:
            for nb in gb.find_submission(assignment, student).notebooks:
                cells = {g.name: (g.auto_score, g.max_score) for g in nb.grades}
                scores[(student, nb.name)] = (nb.code_score, cells)
    return scores


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( ?[A-Z]{2,5}|[+-]\d{2}:?\d{2})?")


def feedback(root: Path, student: str, assignment: str) -> dict[str, str]:
    folder = root / "feedback" / student / assignment
    return {p.name: _TIMESTAMP.sub("<time>", p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.html"))}


def export_rows(root: Path, assignment: str, students: list[str]) -> list[dict]:
    with open(root / "grades.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == assignment and r["student_id"] in students]
    return sorted(rows, key=lambda r: r["student_id"])


def test_parallel_grades_equal_sequential_grades(parallel_run):
    run = parallel_run
    graded = {(r["assignment"], r["student"]) for r in run.results if r["ok"]}
    assert graded == {(a, s) for a, names in run.students.items() for s in names}, \
        (run.proc.stdout[-3000:], run.proc.stderr[-3000:])
    for assignment, students in run.students.items():
        # the fixture grades the solution, the untouched release and at least one mistake
        assert {"solution", "untouched"} < set(students), students
        sequential = code_scores(run.sequential, assignment, students)
        parallel = code_scores(run.parallel, assignment, students)
        assert parallel == sequential, assignment
        # the check is meaningful: the samples do not all get the same score
        assert len({score for score, _ in sequential.values()}) > 1


def test_the_parallel_grader_forked_every_kernel_from_a_warm_zygote(parallel_run):
    notebooks = [nb for r in parallel_run.results if r["ok"] for nb in r["notebooks"]]
    assert notebooks and all(nb["warm"] for nb in notebooks), notebooks


def test_parallel_feedback_equals_sequential_feedback(parallel_run):
    run = parallel_run
    for assignment, students in run.students.items():
        for student in students:
            expected = feedback(run.sequential, student, assignment)
            assert expected, f"no sequential feedback for {student}/{assignment}"
            assert feedback(run.parallel, student, assignment) == expected, f"{student}/{assignment}"


def test_parallel_export_equals_sequential_export(parallel_run):
    run = parallel_run
    for assignment, students in run.students.items():
        expected = export_rows(run.sequential, assignment, students)
        assert [r["student_id"] for r in expected] == students
        assert export_rows(run.parallel, assignment, students) == expected


def test_a_broken_submission_is_reported_at_the_end_and_others_are_graded(parallel_run):
    run = parallel_run
    assert run.proc.returncode == 1, run.proc.stdout[-3000:] + run.proc.stderr[-3000:]
    by_student = {r["student"]: r for r in run.results if r["assignment"] == run.assignment}
    assert not by_student[BROKEN]["ok"]
    assert "newer version of the nbgrader metadata format" in " ".join(by_student[BROKEN]["error"].split())
    # its shard-mates (graded after it in the same task) and everyone else were graded
    first = run.students[run.assignment]
    shard_mates = sorted([BROKEN] + first)[1:SHARD_SIZE]
    assert shard_mates
    assert all(by_student[s]["ok"] for s in shard_mates)
    assert all(r["ok"] for r in run.results if r["student"] != BROKEN)
    report = run.proc.stdout
    tail = report[report.index("could not be graded"):]
    assert f"✗ {BROKEN}/{run.assignment}" in tail
    total = sum(len(names) for names in run.students.values())
    assert f"Graded {total} of {total + 1} submissions" in report
    # nothing of the broken one reached the feedback or autograded folders
    assert not (run.parallel / "feedback" / BROKEN / run.assignment).exists()
