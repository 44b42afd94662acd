"""A PostgreSQL gradebook under concurrent shards gets the grades of sequential SQLite grading.

A real PostgreSQL server is started on 127.0.0.1 in a temporary folder
(utils/instructor/pgserver.py; as root it runs as the unprivileged user ``nobody``). The
assignment is released into it with ``nbgrader generate_assignment`` pointed at its db_url,
then the parallel grader writes from two worker processes at once (two shards of one student).
Skipped only when the PostgreSQL server binaries are not installed.
"""
from __future__ import annotations

import shutil

from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor import parallel
from utils.instructor.course import nbgrader

COURSE_ID = "dl-architectures"


def grades(db_url: str, assignment: str, students: list[str]) -> dict:
    """(student, notebook) -> (code score, {cell: (auto score, max score)})."""
    out = {}
    with Gradebook(db_url, COURSE_ID) as gb:
        for student in students:
            for nb in gb.find_submission(assignment, student).notebooks:
                out[(student, nb.name)] = (nb.code_score, {g.name: (g.auto_score, g.max_score) for g in nb.grades})
    return out


def overlapping(results) -> bool:
    """Two students on different workers were graded at the same time."""
    return any(a.worker != b.worker and a.started < b.finished and b.started < a.finished
               for a in results for b in results)


def test_concurrent_shards_write_a_postgres_gradebook(graded_course, postgres, tmp_path):
    assignment = "deformable_conv" if "deformable_conv" in graded_course.names else graded_course.names[0]
    sqlite_url = sqlite_gradebook_url(graded_course.root)
    with Gradebook(sqlite_url, COURSE_ID) as gb:
        sampled = sorted(s.student.id for s in gb.find_assignment(assignment).submissions)
    # the solution and one mistake (two scores that differ), one student per shard: two shards at once
    students = ["solution"] + [s for s in sampled if s not in ("solution", "untouched")][:1]
    assert set(students) <= set(sampled)

    course = tmp_path / "course"
    course.mkdir()
    shutil.copytree(graded_course.root / "source", course / "source")
    for name in ("nbgrader_config.py", ".grading_secret"):
        shutil.copy2(graded_course.root / name, course / name)
    for student in students:
        shutil.copytree(graded_course.root / "submitted" / student / assignment,
                        course / "submitted" / student / assignment)
    nbgrader("generate_assignment", assignment, "--force", f"--CourseDirectory.db_url={postgres.db_url}", root=course)

    results = parallel.grade(course, [assignment], workers=2, shard_size=1, db_url=postgres.db_url,
                             feedback=False, export_to="grades.csv", progress=False)

    failed = [f"{r.student}: {r.error}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    assert sorted(r.student for r in results) == sorted(students)
    assert len({r.worker for r in results}) >= 2 and overlapping(results), \
        [(r.worker, r.started, r.finished) for r in results]
    expected = grades(sqlite_url, assignment, students)
    assert grades(postgres.db_url, assignment, students) == expected
    assert len({score for score, _ in expected.values()}) > 1
    exported = (course / "grades.csv").read_text().splitlines()
    assert len([line for line in exported if line.startswith(assignment + ",")]) == len(students)
    assert not (course / "gradebook.db").exists()   # nothing went to the default SQLite gradebook
