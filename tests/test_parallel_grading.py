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

No silent zeros, on a small course of its own (deformable_conv, three students): a student whose
kernel dies in every cell is FAILED in the status table and the exit status is 1, the others are
graded; a grading kernel that imports another ``utils`` than the grader stops the batch (exit
status 2) before any student.
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

import utils
from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor.course import REPO_ROOT, build_submissions, generate_release

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
    assert f"✗ {BROKEN}/{run.assignment}: not graded: " in report
    total = sum(len(names) for names in run.students.values())
    assert f"Graded {total} of {total + 1} submissions" in report
    # Quiet: a student graded as expected gets no line at all.
    honest = {s for names in run.students.values() for s in names}
    assert not [line for line in report.splitlines() if any(f" {s}/" in line for s in honest)], report
    # nothing of the broken one reached the feedback or autograded folders
    assert not (run.parallel / "feedback" / BROKEN / run.assignment).exists()


# --------------------------------------------------------------------------- no silent zeros

KILLER = "kills_kernel"


@pytest.fixture(scope="module")
def small_course(tmp_path_factory) -> Path:
    """deformable_conv released, with the solution, the untouched release and a notebook that kills its kernel."""
    root = tmp_path_factory.mktemp("parallel_status") / "course"
    shutil.copytree(REPO_ROOT / "source" / "deformable_conv", root / "source" / "deformable_conv")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    generate_release(root, ["deformable_conv"])
    build_submissions("deformable_conv", root, 0)
    nb = nbformat.read(root / "submitted" / "solution" / "deformable_conv" / "deformable_conv.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os\nos._exit(3)"))   # every cell after it: not run
    (root / "submitted" / KILLER / "deformable_conv").mkdir(parents=True)
    nbformat.write(nb, root / "submitted" / KILLER / "deformable_conv" / "deformable_conv.ipynb")
    return root


def run_parallel(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([sys.executable, "-m", "utils.instructor.parallel", "deformable_conv", "--quiet", *args],
                          cwd=root, env=env, text=True, capture_output=True, timeout=900)


def test_the_parallel_grader_fails_a_student_whose_tests_all_recorded_nothing(small_course):
    proc = run_parallel(small_course, "--workers", "2", "--shard-size", "1", "--timings", "timings.json", "--verbose")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {r["student"]: r for r in json.loads((small_course / "timings.json").read_text())}
    assert not results[KILLER]["ok"] and results["solution"]["ok"] and results["untouched"]["ok"]
    assert [s["graded"] for s in results[KILLER]["statuses"]] == [False]
    assert "every test cell failed to run: no output was recorded" in results[KILLER]["error"]
    table = proc.stdout[proc.stdout.index("Grading status:"):]
    rows = {line.split()[0]: line for line in table.splitlines()[2:5]}
    assert "FAILED: every test cell failed to run: no output was recorded (the kernel exited with status 3" \
        in rows[KILLER]
    assert rows["solution"].endswith("  graded") and rows["untouched"].endswith("  graded")
    assert "2 of 3 submissions graded; 1 could not be graded" in table
    assert f"✗ {KILLER}/deformable_conv: not graded: " in proc.stdout
    # graded all the same, with feedback that says why
    assert code_scores(small_course, "deformable_conv", [KILLER])[(KILLER, "deformable_conv")][0] == 0
    assert "the kernel had stopped" in (small_course / "feedback" / KILLER / "deformable_conv" /
                                        "deformable_conv.html").read_text()


def test_the_parallel_grader_stops_before_any_student_when_the_kernel_imports_another_utils(small_course, tmp_path):
    course = tmp_path / "next_term"
    course.mkdir()
    for name in ("source", "release", "submitted"):
        shutil.copytree(small_course / name, course / name, ignore=shutil.ignore_patterns(KILLER, "untouched"))
    shutil.copy(small_course / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copy(small_course / "gradebook.db", course / "gradebook.db")
    package = Path(utils.__file__).resolve().parent
    (course / "utils").mkdir()
    (course / "utils" / "__init__.py").write_text(   # this copy differs from the one the kernel imports
        f"COURSE_TERM = 'next term'\n__path__.append({str(package)!r})\n"
        f"exec(compile(open({str(package / '__init__.py')!r}).read(), __file__, 'exec'))\n")
    proc = run_parallel(course, "--workers", "1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Preflight failed for deformable_conv/deformable_conv.ipynb" in output
    assert str(package / "__init__.py") in output and str(course / "utils" / "__init__.py") in output
    assert not (course / "autograded").exists() and not (course / "feedback").exists()
