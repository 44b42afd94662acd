"""The class report (utils/instructor/class_report.py) on a small synthetic course.

The course is written by hand in a temporary root: a gradebook through nbgrader's API (one assignment,
two test cells and one written question), the source notebook, and autograded notebooks whose test
cells carry the verdicts the trusted grader writes (``course_verdicts``). No grading runs. Every number
of the report is compared with one computed here from the same table of students, by plain loops.
"""
from __future__ import annotations

import csv
import html
import os
import statistics
import sys
import types
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.preprocessors.apply_trusted_verdicts import VERDICTS_KEY
from utils.grading.review_flags import FLAGS_KEY, ReviewFlag
from utils.instructor import class_report

# nbgrader's Gradebook.add_submission, which builds the course here, warns under SQLAlchemy 2 (not the report)
pytestmark = pytest.mark.filterwarnings("ignore:Object of type <Submitted:sqlalchemy.exc.SAWarning")

ASSIGNMENT, NOTEBOOK = "toy", "nb1"
HOSTILE = "<img src=x onerror=alert(1)>"      # a folder name can hold this
SWAP = "your output equals the reference computed with Δy and Δx swapped"
AXIS = "the softmax was taken over the query axis"
CELLS = {"test_a": ("code", 2.0), "test_b": ("code", 3.0), "written_q": ("markdown", 2.0)}
TESTS = ("test_a", "test_b")


def passed(check):
    return {"check": check, "passed": True}


def failed(check, diagnosis, cause=""):
    return {"check": check, "passed": False, "diagnosis": diagnosis, "cause": cause,
            "headline": f"{check} does not match", "case": "Case 2 of 6: N=2"}


# student -> test cell -> the verdicts in its autograded notebook (None: the cell holds none)
VERDICTS = {
    "alice": {"test_a": [passed("check_a")], "test_b": [passed("check_b1"), passed("check_b2")]},
    "bob": {"test_a": [failed("check_a", "named", SWAP)],
            "test_b": [passed("check_b1"), failed("check_b2", "named", AXIS)]},
    "carol": {"test_a": [failed("check_a", "named", SWAP)],
              "test_b": [failed("check_b1", "raised"), failed("check_b2", "values")]},
    HOSTILE: {"test_a": [failed("check_a", "named", SWAP)], "test_b": [passed("check_b1"), passed("check_b2")]},
    "dave": {"test_a": [passed("check_a")], "test_b": None},
    "erin": {"test_a": [passed("check_a")], "test_b": [passed("check_b1"), passed("check_b2")]},
    "gina": {"test_a": None, "test_b": None},   # her autograded notebook is a link: never read
}
LINKED = {"gina"}
# the written answer's points (None: pending)
WRITTEN = {"alice": 2.0, "bob": None, "carol": 1.0, HOSTILE: None, "dave": 0.0, "erin": 2.0, "gina": 2.0}
SCORE_OVERRIDES = {("gina", "test_b"): 3.0}   # full points, though no verdict could be read
NOT_GRADED = "frank"                          # a submission folder, nothing in the gradebook
FLAG = ReviewFlag(student="someone-else", notebook="x/y", cell="test_a", cell_index=3, line=1, rule="dynamic-code",
                  evidence="eval('<script>alert(1)</script>')", function="helper")


def score(student: str, cell: str) -> float:
    if (student, cell) in SCORE_OVERRIDES:
        return SCORE_OVERRIDES[(student, cell)]
    verdicts = VERDICTS[student][cell]
    return CELLS[cell][1] if verdicts and all(v["passed"] for v in verdicts) else 0.0


# --------------------------------------------------------------------------- the course


def source_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Toy\n## Exercise 1: `a`"),
        nbformat.v4.new_code_cell("check_a(a)", metadata={"nbgrader": {"grade_id": "test_a", "grade": True,
                                                                        "points": 2}}),
        nbformat.v4.new_markdown_cell("## Exercise 2: `b`\nTwo checks."),
        nbformat.v4.new_code_cell("check_b1(b1)\ncheck_b2(b2)",
                                  metadata={"nbgrader": {"grade_id": "test_b", "grade": True, "points": 3}}),
        nbformat.v4.new_markdown_cell("## 3. Written question"),
        nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nA model answer.\n### END SOLUTION",
                                      metadata={"nbgrader": {"grade_id": "written_q", "grade": True, "points": 2}}),
    ]
    return nb


def autograded_notebook(verdicts: dict, flags=()):
    nb = source_notebook()
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if verdicts.get(grade_id) is not None:
            cell.metadata[VERDICTS_KEY] = verdicts[grade_id]
    if flags:
        nb.metadata[FLAGS_KEY] = [asdict(flag) for flag in flags]
    return nb


def write_gradebook(root: Path) -> None:
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        gb.add_assignment(ASSIGNMENT)
        gb.add_notebook(NOTEBOOK, ASSIGNMENT)
        for name, (cell_type, points) in CELLS.items():
            gb.add_grade_cell(name, NOTEBOOK, ASSIGNMENT, max_score=points, cell_type=cell_type)
        for student in VERDICTS:
            gb.add_student(student)
            gb.add_submission(ASSIGNMENT, student)
            for cell in TESTS:
                grade = gb.find_grade(cell, NOTEBOOK, ASSIGNMENT, student)
                grade.auto_score, grade.needs_manual_grade = score(student, cell), False
            grade = gb.find_grade("written_q", NOTEBOOK, ASSIGNMENT, student)
            grade.manual_score, grade.needs_manual_grade = WRITTEN[student], WRITTEN[student] is None
            gb.db.commit()


@pytest.fixture
def course(tmp_path) -> Path:
    root = tmp_path / "course"
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(source_notebook(), root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    write_gradebook(root)
    decoy = tmp_path / "elsewhere.ipynb"
    nbformat.write(autograded_notebook({"test_a": [failed("check_a", "named", "LINKED MISTAKE")]}), decoy)
    for student, verdicts in VERDICTS.items():
        folder = root / "autograded" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (root / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        if student in LINKED:
            os.symlink(decoy, folder / f"{NOTEBOOK}.ipynb")
        else:
            nbformat.write(autograded_notebook(verdicts, [FLAG] if student == HOSTILE else ()),
                           folder / f"{NOTEBOOK}.ipynb")
    (root / "submitted" / NOT_GRADED / ASSIGNMENT).mkdir(parents=True)
    return root


@dataclass
class Pair:   # the fields of utils.instructor.similarity.SimilarPair
    assignment: str
    notebook: str
    student_a: str
    student_b: str
    similarity: float
    shared_tokens: int
    side_by_side_html: str


SIDE_BY_SIDE = ('<table class="sbs"><tr><td><pre>return x &lt; 1</pre></td>'
                '<td><pre>return y &lt; 1</pre></td></tr></table>')
PLANTED = Pair(ASSIGNMENT, NOTEBOOK, "bob", HOSTILE, 0.93, 120, SIDE_BY_SIDE)


def build(root: Path, tmp_path: Path, **kwargs) -> class_report.ReportResult:
    kwargs.setdefault("similar", [])
    return class_report.build_report(root, [ASSIGNMENT], out_dir=tmp_path / "out", **kwargs)


# --------------------------------------------------------------------------- the independent computation


def expected_mistakes(cell: str, students) -> dict[tuple[str, str, str], list[str]]:
    """``(check, diagnosis, cause or "") -> students`` by plain loops over the table above."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for student in students:
        verdicts = VERDICTS[student][cell]
        if verdicts is None:
            if score(student, cell) < CELLS[cell][1]:
                out.setdefault((cell, "no verdict", ""), []).append(student)
            continue
        for v in verdicts:
            if not v["passed"]:
                key = (v["check"], v["diagnosis"], v["cause"] if v["diagnosis"] == "named" else "")
                out.setdefault(key, []).append(student)
    return {key: sorted(who) for key, who in out.items()}


def reported_mistakes(question) -> dict[tuple[str, str, str], list[str]]:
    return {(m.check, m.diagnosis, m.cause if m.diagnosis == "named" else ""): m.students
            for m in question.mistakes}


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, attrs))


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("failures", [None, {("erin", ASSIGNMENT): "the kernel died <b>twice</b>"}])
def test_numbers_match_an_independent_computation(course, tmp_path, failures):
    result = build(course, tmp_path, failures=failures)
    report = result.assignment(ASSIGNMENT)
    counted = sorted(s for s in VERDICTS if not failures or (s, ASSIGNMENT) not in failures)
    assert sorted(report.totals) == counted
    for student in counted:
        total = sum(score(student, c) for c in TESTS) + (WRITTEN[student] or 0.0)
        assert report.totals[student] == pytest.approx(total), student
    questions = {q.grade_id: q for q in report.questions}
    assert [q.grade_id for q in report.questions] == ["test_a", "test_b", "written_q"]
    for cell in TESTS:
        q, points = questions[cell], CELLS[cell][1]
        scores = [score(s, cell) for s in counted]
        assert q.kind == "test" and q.max_points == points and q.n_students == len(counted)
        assert q.pass_rate == pytest.approx(sum(x == points for x in scores) / len(scores))
        assert q.mean == pytest.approx(sum(scores) / len(scores))
        assert q.median == pytest.approx(statistics.median(scores))
        assert reported_mistakes(q) == expected_mistakes(cell, counted)
        counts = [m.count for m in q.mistakes]
        assert counts == sorted(counts, reverse=True)
    written = questions["written_q"]
    assert written.kind == "written" and written.mistakes == []
    assert written.pending == sorted(s for s in counted if WRITTEN[s] is None)
    assert sorted(written.scores) == sorted(s for s in counted if WRITTEN[s] is not None)
    assert questions["test_a"].heading == "Exercise 1: `a`"
    assert questions["test_b"].checks == ["check_b1", "check_b2"]
    assert written.heading == "3. Written question"
    if failures:
        assert report.failures == {"erin": "the kernel died <b>twice</b>"}
    else:
        assert report.failures == {NOT_GRADED: class_report.NOT_GRADED}


def test_the_swap_is_the_top_mistake_with_its_students(course, tmp_path):
    result = build(course, tmp_path)
    top = class_report.top_mistakes(result, 5)
    assert top[0] == (ASSIGNMENT, "check_a", SWAP, 3, sorted(["bob", "carol", HOSTILE]))
    assert top[1] == (ASSIGNMENT, "check_b2", AXIS, 1, ["bob"])
    assert len(top) == 2   # uncatalogued failures are not "mistakes of the class"
    page = result.html_path.read_text(encoding="utf-8")
    first = page.index("Top mistakes of the class")
    assert first < page.index(f"<b>3 students</b>: {html.escape(SWAP)}") < page.index(f"<b>1 student</b>: {AXIS}")


def test_links_are_not_followed_and_large_notebooks_not_read(course, tmp_path, monkeypatch):
    result = build(course, tmp_path)
    report = result.assignment(ASSIGNMENT)
    page = result.html_path.read_text(encoding="utf-8")
    assert "LINKED MISTAKE" not in page
    assert any(note.startswith(f"gina/{ASSIGNMENT}/{NOTEBOOK}.ipynb: not read") for note in report.notes)
    test_a = next(q for q in report.questions if q.grade_id == "test_a")
    assert ("test_a", "no verdict", "") in reported_mistakes(test_a)

    monkeypatch.setattr(class_report, "MAX_NOTEBOOK_BYTES", 200)
    report = build(course, tmp_path).assignment(ASSIGNMENT)
    assert sum("bytes" in note for note in report.notes) == len(VERDICTS) - len(LINKED)
    assert all(m.diagnosis == "no verdict" for q in report.tests for m in q.mistakes)


def test_the_page_is_offline_and_escapes_what_submissions_control(course, tmp_path):
    result = build(course, tmp_path, similar=[PLANTED], failures={("erin", ASSIGNMENT): "the kernel died <b>twice</b>"})
    page = result.html_path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    tags = Tags()
    tags.feed(page)
    loading = {"script", "img", "link", "iframe", "object", "embed", "image", "foreignobject"}
    assert not loading & {tag for tag, _ in tags.seen}
    links = [value for _, attrs in tags.seen for name, value in attrs if name in ("src", "href", "xlink:href")]
    assert links and all(value.startswith("#") for value in links)
    assert not [name for _, attrs in tags.seen for name, _ in attrs if name.startswith("on")]
    assert "<b>twice" not in page
    assert html.escape(HOSTILE) in page
    assert html.escape("eval('<script>alert(1)</script>')") in page
    assert "someone-else" not in page   # the flag's student is where the notebook is, not what it says
    assert "dynamic-code" in page and "the kernel died &lt;b&gt;twice&lt;/b&gt;" in page
    # a plot per assignment total and per test cell, inline
    assert page.count("<svg") == 1 + len(TESTS)
    assert page.index("<table") < page.index(f'id="q-{ASSIGNMENT}-{NOTEBOOK}-test_a"')


def test_a_planted_similar_pair_is_shown_side_by_side(course, tmp_path):
    other = Pair("other", NOTEBOOK, "alice", "carol", 0.99, 400, "<p>OTHER ASSIGNMENT</p>")
    result = build(course, tmp_path, similar=[PLANTED, other])
    report = result.assignment(ASSIGNMENT)
    assert report.similar == [PLANTED]
    page = result.html_path.read_text(encoding="utf-8")
    assert "OTHER ASSIGNMENT" not in page
    group = page.index(f"{NOTEBOOK}: 2 students, 1 pair at 93% similarity: ")
    summary = page.index(f"bob and {html.escape(HOSTILE)}: similarity 93%, 120 shared tokens", group)
    assert page.rindex("<details>", 0, summary) < summary < page.index(SIDE_BY_SIDE) < page.index("</details>", summary)


def test_similar_pairs_are_grouped_and_only_the_most_similar_shown_side_by_side(course, tmp_path, monkeypatch):
    monkeypatch.setattr(class_report, "MAX_PAIRS_SHOWN", 3)
    star = [Pair(ASSIGNMENT, NOTEBOOK, "alice", f"s{i}", 0.7 + i / 100, 100, f"<p>VIEW {i}</p>") for i in range(5)]
    apart = [Pair(ASSIGNMENT, NOTEBOOK, "x1", "x2", 0.65, 100, "<p>VIEW APART</p>")]
    page = build(course, tmp_path, similar=star + apart).html_path.read_text(encoding="utf-8")
    # one group of the five pairs around alice, one of the other pair; two views in the first group, one left
    assert f"{NOTEBOOK}: 6 students, 5 pairs at 70%–74% similarity: alice, s0, s1, s2, s3, s4" in page
    assert f"{NOTEBOOK}: 2 students, 1 pair at 65% similarity: x1, x2" in page
    assert [i for i in range(5) if f"VIEW {i}" in page] == [3, 4] and "VIEW APART" in page
    assert "alice and s0: similarity 70%" in page
    groups = class_report.similar_groups(star + apart)
    assert [len(g) for g in groups] == [5, 1] and groups[0][0].similarity == pytest.approx(0.74)


def test_similarity_is_computed_when_not_passed(course, tmp_path, monkeypatch):
    calls = []

    def similar_pairs(root, assignment, **kwargs):
        calls.append((Path(root), assignment))
        return [PLANTED]

    monkeypatch.setitem(sys.modules, "utils.instructor.similarity", types.SimpleNamespace(similar_pairs=similar_pairs))
    report = build(course, tmp_path, similar=None).assignment(ASSIGNMENT)
    assert calls == [(course, ASSIGNMENT)] and report.similar == [PLANTED]

    monkeypatch.setitem(sys.modules, "utils.instructor.similarity", None)   # not installed: import fails
    report = build(course, tmp_path, similar=None).assignment(ASSIGNMENT)
    assert report.similar == [] and any(n.startswith("similarity not checked") for n in report.notes)


def test_question_csv(course, tmp_path):
    result = build(course, tmp_path)
    with open(result.csv_paths[ASSIGNMENT], newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == class_report.CSV_COLUMNS
        rows = {row["grade_id"]: row for row in reader}
    assert set(rows) == set(CELLS)
    a, b, w = rows["test_a"], rows["test_b"], rows["written_q"]
    students = sorted(VERDICTS)
    passing_a = sum(score(s, "test_a") == 2.0 for s in students)
    assert (a["kind"], a["checks"], float(a["max_points"]), int(a["n_students"]), int(a["n_pending"])) == (
        "test", "check_a", 2.0, len(students), 0)
    assert float(a["pass_rate"]) == pytest.approx(passing_a / len(students), abs=1e-4)
    assert int(a["n_failed"]) == len(students) - passing_a
    assert (a["top_mistake"], a["top_mistake_kind"], a["top_mistake_count"]) == (SWAP, "named", "3")
    assert b["checks"] == "check_b1;check_b2" and b["top_mistake_count"] == "1"
    assert (w["kind"], int(w["n_pending"]), w["top_mistake"]) == ("written", 2, "")
    assert float(w["mean"]) == pytest.approx(statistics.fmean(v for v in WRITTEN.values() if v is not None), abs=1e-4)


def test_command_line(course, tmp_path, capsys):
    assert class_report.main(["--root", str(course), "--no-similarity"]) == 0
    out = capsys.readouterr().out
    assert (course / "reports" / "class_report.html").is_file()
    assert (course / "reports" / f"{ASSIGNMENT}_questions.csv").is_file()
    assert f"3 students  {ASSIGNMENT} check_a: {SWAP}" in out
    with pytest.raises(SystemExit):
        class_report.main(["--root", str(tmp_path / "nowhere")])
