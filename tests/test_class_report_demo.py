"""The class report on the demo's known submissions (the session's ``graded_course``).

Every sample is known: the solution, the untouched release, and one submission per sample mistake
whose feedback must name it. The report must say the same, counted from the gradebook and from the
verdicts the trusted grader kept in each autograded notebook.
"""
from __future__ import annotations

import csv

import nbformat
import pytest
from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor.class_report import build_report, top_mistakes
from utils.instructor.course import sample_mistakes


@pytest.fixture(scope="module")
def report(graded_course, tmp_path_factory):
    return build_report(graded_course.root, graded_course.names, failures={}, similar=[],
                        out_dir=tmp_path_factory.mktemp("report"))


def _counted(a, mistake) -> bool:
    """The sample is counted under its mistake's name, or under the rule of the notebook it breaks."""
    return any(mistake.student in m.students and (
        (m.diagnosis == "named" and mistake.diagnosis in m.cause)
        or (m.diagnosis == "rule" and m.cause.startswith("breaks a rule of the notebook: Rule: ")))
        for q in a.tests for m in q.mistakes)


def test_every_sample_mistake_is_counted_under_its_name_or_rule(graded_course, report):
    for name in graded_course.names:
        a = report.assignment(name)
        for mistake in sample_mistakes(name, 1):
            assert _counted(a, mistake), (name, mistake.student, [m for q in a.tests for m in q.mistakes
                                                                  if mistake.student in m.students])
        everyone = {s for q in a.tests for m in q.mistakes for s in m.students}
        assert "solution" not in everyone


def test_scores_and_pass_rates_equal_the_gradebook(graded_course, report):
    with Gradebook(sqlite_gradebook_url(graded_course.root)) as gb:
        for name in graded_course.names:
            a = report.assignment(name)
            students = {o.student for o in graded_course.outcomes if o.assignment == name}
            assert set(a.totals) == students
            assert a.totals["solution"] == pytest.approx(a.max_total - sum(q.max_points for q in a.written))
            assert a.totals["untouched"] == 0
            for q in a.tests:
                expected = {s: gb.find_grade(q.grade_id, q.notebook, name, s).score for s in students}
                assert q.scores == pytest.approx(expected), (name, q.grade_id)
                full = sorted(s for s, points in expected.items() if points >= q.max_points - 1e-9)
                assert q.passed == full and q.pass_rate == pytest.approx(len(full) / len(students))
            for q in a.written:   # nobody graded the demo's written answers; an unanswered one scores 0 by itself
                assert sorted(q.pending) == sorted(students - {"untouched"}) and q.scores == {"untouched": 0}


def test_the_untouched_release_fails_every_test_as_not_implemented(graded_course, report):
    for name in graded_course.names:
        for q in report.assignment(name).tests:
            kinds = {m.diagnosis for m in q.mistakes if "untouched" in m.students}
            assert kinds == {"not implemented"}, (name, q.grade_id, kinds)


def test_the_csv_has_one_row_per_graded_cell(graded_course, report):
    for name in graded_course.names:
        with open(report.csv_paths[name], newline="") as f:
            rows = list(csv.DictReader(f))
        a = report.assignment(name)
        assert [r["grade_id"] for r in rows] == [q.grade_id for q in a.questions]
        for row, q in zip(rows, a.questions, strict=True):
            assert float(row["max_points"]) == q.max_points and int(row["n_students"]) == q.n_students


def test_top_mistakes_name_the_sample_mistakes(graded_course, report):
    top = top_mistakes(report, n=100)
    for name in graded_course.names:
        for mistake in sample_mistakes(name, 1):
            if any(m.diagnosis == "rule" and mistake.student in m.students
                   for q in report.assignment(name).tests for m in q.mistakes):
                continue     # a broken rule is not a catalogued mistake: not among the top named ones
            assert any(a == name and mistake.diagnosis in cause and mistake.student in students
                       for a, _, cause, _, students in top), (name, mistake.student)


def test_a_forged_verdict_in_a_submission_does_not_reach_the_report(graded_course):
    """ApplyTrustedVerdicts writes course_verdicts on the test cells it judged and drops any other."""
    for name in graded_course.names:
        for path in (graded_course.root / "autograded" / "untouched" / name).glob("*.ipynb"):
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                judged = meta.get("grade") and not meta.get("solution") and cell.cell_type == "code"
                assert ("course_verdicts" in cell.metadata) == bool(judged and "check_" in cell.source), \
                    (path, meta.get("grade_id"))
