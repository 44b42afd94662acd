"""The class report: what the class got wrong in each exercise, and which students to look at.

    python -m utils.instructor.class_report [ASSIGNMENT ...] [--root DIR] [--db-url URL] [--out DIR]
        [--no-similarity]

for an already graded gradebook (every assignment it holds by default); the parallel grader calls
:func:`build_report` itself, with the students it could not grade.

Reads, per assignment:

* nbgrader's gradebook (``--db-url``; default ``<root>/gradebook.db``): each student's points on each
  grade cell and in total, and whether a written answer still waits for a grader;
* each autograded notebook ``autograded/<student>/<assignment>/<notebook>.ipynb``: the verdict of every
  check of each test cell (cell metadata ``course_verdicts``, written by ApplyTrustedVerdicts: passed,
  or failed with a named mistake or an uncatalogued failure kind) and the review flags (notebook metadata
  ``course_review_flags``, utils/grading/review_flags.py);
* ``source/<assignment>/<notebook>.ipynb``: the heading above each graded cell and the checks it calls;
* ``submitted/<student>/<assignment>/``: who handed in work that has no grade, when no list of grading
  failures is given;
* the similar pairs of submissions (utils/instructor/similarity.py), unless they are passed in.

Writes into ``<root>/reports/`` (``--out DIR``):

* ``class_report.html``: one self-contained page that works offline (inline CSS, plots drawn by
  matplotlib as inline SVG, no script, no URL): the most frequent mistakes of the class first, then per
  assignment a summary table, the total-score histogram, the students to look at (review flags with
  their evidence, similar pairs with a side-by-side view, failed grading), the written questions
  (graded / pending), and one section per exercise: score histogram, mean, median, pass rate, and
  each mistake with the students who made it;
* ``<assignment>_questions.csv``: one row per graded cell, with the columns of :data:`CSV_COLUMNS`:

  ``assignment``, ``notebook``, ``grade_id``; ``kind`` ("test": an autograded test cell, "written": a
  manually graded answer); ``heading`` (the section heading above the cell in ``source/``); ``checks``
  (the check functions the cell calls, ";"-separated); ``max_points``; ``n_students`` (students with a
  grade for the cell, pending ones included); ``n_pending`` (of them, still waiting for a manual grade);
  ``mean``, ``median`` (points, over the graded ones); ``pass_rate`` (the fraction of the graded ones with
  full points); ``n_failed`` (graded ones below full points); ``top_mistake``, ``top_mistake_kind``,
  ``top_mistake_count`` (the most frequent failure: a named mistake's text, or an uncatalogued kind's
  label; its diagnosis: "named", one of :data:`utils.checks.feedback.DIAGNOSES` or "no verdict"; how many
  students).
  Empty cells where there is nothing to count.

Students whose grading failed are left out of every number (what the gradebook holds for them may be
partial or stale) and listed instead. A mistake counts each student once per exercise. A failed test
cell with no verdict in its notebook (graded before verdicts were kept, or the notebook could not be
read) counts under "no verdict recorded".

Student ids are folder names of untrusted submissions: everything shown is HTML-escaped, except the
side-by-side view of a similar pair, which utils/instructor/similarity.py builds escaped. Autograded
notebooks are read without following links and only up to :data:`MAX_NOTEBOOK_BYTES`.
"""
from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import re
import statistics
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.preprocessors.apply_trusted_verdicts import VERDICTS_KEY
from utils.grading.review_flags import RULES, ReviewFlag, stored_flags
from utils.grading.safe_files import NotAPlainFile, open_folder, open_plain_file

MAX_NOTEBOOK_BYTES = 64 * 2**20      # larger autograded or source notebooks are noted, not read
REPORT_NAME = "class_report.html"
TOP_MISTAKES = 10                    # how many the page lists first
FAILURE_CHARS = 1000                 # of the reason a grading failed, shown
MAX_PAIRS_SHOWN = 40                 # similar pairs per assignment shown side by side; the rest are listed

CSV_COLUMNS = ("assignment", "notebook", "grade_id", "kind", "heading", "checks", "max_points", "n_students",
               "n_pending", "mean", "median", "pass_rate", "n_failed", "top_mistake", "top_mistake_kind",
               "top_mistake_count")

NO_VERDICT = "no verdict"
# What an uncatalogued failure kind (a diagnosis other than "named") is called in the report.
FAILURE_KINDS = {
    "described": "values differ in a described pattern (no named mistake)",
    "rule": "breaks a rule of the notebook",
    "not implemented": "not implemented (still the stub)",
    "from scratch": "calls a library in a from-scratch answer",
    "raised": "raised an error",
    "values": "wrong values or shape (no named mistake)",
    NO_VERDICT: "failed, no verdict recorded",
}
NOT_GRADED = "not graded: a submission folder but no grade in the gradebook"


# --------------------------------------------------------------------------- results


@dataclass
class Mistake:
    """One failure of one check, and who made it."""

    check: str               # "check_patchify" (or the cell's grade_id when no verdict names one)
    diagnosis: str           # "named", one of utils.checks.feedback.DIAGNOSES, or NO_VERDICT
    cause: str               # the named mistake's text, or the failure kind's label
    students: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.students)


@dataclass
class Question:
    """One graded cell of an assignment: an autograded test ("test") or a written answer ("written")."""

    assignment: str
    notebook: str
    grade_id: str
    kind: str
    heading: str
    checks: list[str]
    max_points: float
    scores: dict[str, float]          # student -> points, graded students only
    pending: list[str]                # students whose grade waits for a grader
    mistakes: list[Mistake]           # most frequent first; empty for written answers

    @property
    def n_students(self) -> int:
        return len(self.scores) + len(self.pending)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores.values()) if self.scores else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.scores.values()) if self.scores else None

    @property
    def passed(self) -> list[str]:
        return sorted(s for s, points in self.scores.items() if _full(points, self.max_points))

    @property
    def pass_rate(self) -> float | None:
        return len(self.passed) / len(self.scores) if self.scores else None

    @property
    def label(self) -> str:
        return self.heading or self.grade_id


@dataclass
class AssignmentReport:
    """The numbers of one assignment; students are ids as in the gradebook."""

    name: str
    max_total: float
    totals: dict[str, float]                     # student -> total points (pending answers count 0)
    questions: list[Question]
    flags: list[ReviewFlag]
    similar: list                                # SimilarPair (utils/instructor/similarity.py)
    failures: dict[str, str]                     # student -> why grading failed
    notes: list[str]                             # what could not be read, and why

    @property
    def tests(self) -> list[Question]:
        return [q for q in self.questions if q.kind == "test"]

    @property
    def written(self) -> list[Question]:
        return [q for q in self.questions if q.kind == "written"]


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and computed."""

    html_path: Path
    csv_paths: dict[str, Path]                   # assignment -> <assignment>_questions.csv
    assignments: list[AssignmentReport]

    def assignment(self, name: str) -> AssignmentReport:
        return next(a for a in self.assignments if a.name == name)


def _full(points: float, max_points: float) -> bool:
    return max_points > 0 and points >= max_points - 1e-9


def top_mistakes(result: ReportResult, n: int = TOP_MISTAKES) -> list[tuple[str, str, str, int, list[str]]]:
    """The ``n`` named mistakes made by the most students, over every assignment:
    ``(assignment, check, cause, count, students)``, most frequent first."""
    named = [(a.name, m.check, m.cause, m.count, m.students)
             for a in result.assignments for q in a.tests for m in q.mistakes if m.diagnosis == "named"]
    return sorted(named, key=lambda t: (-t[3], t[0], t[1], t[2]))[:n]


# --------------------------------------------------------------------------- reading


def _read_notebook(top: Path, below: str, name: str) -> tuple[dict | None, str]:
    """The JSON of ``top/below/name``, or ``(None, why not)``; no link below ``top`` is followed."""
    try:
        folder = open_folder(str(top), below)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:
        return None, f"not read ({getattr(exc, 'strerror', None) or exc})"
    try:
        fd, info = open_plain_file(folder, name)
    except FileNotFoundError:
        return None, "missing"
    except (NotAPlainFile, OSError) as exc:
        return None, f"not read ({exc})"
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_NOTEBOOK_BYTES:
            return None, f"{info.st_size:,} bytes (more than {MAX_NOTEBOOK_BYTES:,}): not read"
        data = f.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, f"more than {MAX_NOTEBOOK_BYTES:,} bytes: not read"
    try:
        nb = json.loads(data)
    except ValueError:
        return None, "not valid JSON"
    return (nb, "") if isinstance(nb, dict) and isinstance(nb.get("cells"), list) else (None, "not a notebook")


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def _cells(nb: dict) -> Iterable[tuple[str, dict]]:
    """``(grade_id, cell)`` for each cell of ``nb`` with an nbgrader grade id."""
    for cell in nb["cells"]:
        grade_id = _grade_id(cell)
        if grade_id is not None:
            yield grade_id, cell


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_MARKER = re.compile(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS)")


@dataclass
class Outline:
    """What ``source/<assignment>/<notebook>.ipynb`` says of its graded cells (empty when it cannot be read)."""

    headings: dict[str, str] = field(default_factory=dict)       # grade id -> the last heading above the cell
    checks: dict[str, list[str]] = field(default_factory=dict)   # grade id -> the check functions it calls
    order: list[str] = field(default_factory=list)               # grade ids in notebook order


def source_outline(root: Path, assignment: str, notebook: str) -> Outline:
    """The :class:`Outline` of one source notebook."""
    nb, _ = _read_notebook(Path(root) / "source", assignment, f"{notebook}.ipynb")
    outline, heading = Outline(), ""
    for cell in nb["cells"] if nb is not None else []:
        if not isinstance(cell, dict):
            continue
        text = _text(cell.get("source"))
        grade_id = _grade_id(cell)
        if grade_id is not None:
            outline.headings[grade_id] = heading
            outline.checks[grade_id] = list(dict.fromkeys(re.findall(r"\b(check_\w+)\s*\(", text)))
            outline.order.append(grade_id)
        if cell.get("cell_type") == "markdown":
            found = [h for h in _HEADING.findall(text) if not _MARKER.search(h)]
            heading = found[-1] if found else heading
    return outline


@dataclass
class _Autograded:
    """What one student's autograded notebook holds for the report."""

    verdicts: dict[str, list[dict]]   # grade_id -> one dict per check
    flags: list[ReviewFlag]


def _verdicts(cell: dict) -> list[dict]:
    entries = cell.get("metadata", {}).get(VERDICTS_KEY)
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("passed"), bool):
            out.append({"check": str(entry.get("check", "")), "passed": entry["passed"],
                        "diagnosis": str(entry.get("diagnosis", "values")), "cause": str(entry.get("cause") or ""),
                        "rule": str(entry.get("rule") or "")})
    return out


def read_autograded(root: Path, student: str, assignment: str, notebook: str) -> tuple[_Autograded | None, str]:
    """The verdicts and review flags of one autograded notebook, or ``(None, why not)``."""
    nb, why = _read_notebook(Path(root) / "autograded", f"{student}/{assignment}", f"{notebook}.ipynb")
    if nb is None:
        return None, why
    verdicts = {grade_id: _verdicts(cell) for grade_id, cell in _cells(nb)}
    # who and which notebook come from where the file is, never from what it says
    flags = [replace(flag, student=student, notebook=f"{assignment}/{notebook}")
             for flag in stored_flags(nb.get("metadata", {}))]
    return _Autograded({k: v for k, v in verdicts.items() if v}, flags), ""


@dataclass
class _Gradebook:
    """What the gradebook holds for one assignment."""

    notebooks: list[str]
    cells: list[tuple[str, str, str, float]]              # (notebook, grade_id, "code" | "markdown", max points)
    max_total: float
    totals: dict[str, float]
    grades: dict[tuple[str, str, str], tuple[float, bool]]   # (student, notebook, grade_id) -> (points, pending)


def read_gradebook(db_url: str, assignment: str) -> _Gradebook | None:
    """Every grade of ``assignment`` in the gradebook at ``db_url``; None when it has no such assignment."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(db_url) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return None
        notebooks = [nb.name for nb in found.notebooks]
        cells = [(nb.name, cell.name, cell.cell_type, float(cell.max_score or 0))
                 for nb in found.notebooks for cell in [*nb.grade_cells, *nb.task_cells]]
        totals, grades = {}, {}
        for sub in found.submissions:
            student = sub.student.id
            totals[student] = float(sub.score or 0)
            for submitted in sub.notebooks:
                for grade in submitted.grades:
                    grades[(student, submitted.name, grade.name)] = (float(grade.score or 0),
                                                                     bool(grade.needs_manual_grade))
        return _Gradebook(notebooks, cells, float(found.max_score or 0), totals, grades)


def _folders(folder: Path) -> list[str]:
    """The names of the real folders (no links) in ``folder``, sorted."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def ungraded_submissions(root: Path, assignment: str, graded: Iterable[str]) -> dict[str, str]:
    """Students with a folder ``submitted/<student>/<assignment>/`` but no graded submission."""
    graded = set(graded)
    return {student: NOT_GRADED for student in _folders(Path(root) / "submitted")
            if student not in graded and assignment in _folders(Path(root) / "submitted" / student)}


def _similar_pairs(root: Path, assignment: str) -> tuple[list, str]:
    """The similar pairs of ``assignment`` (utils/instructor/similarity.py), or ``([], why not)``."""
    try:
        from utils.instructor.similarity import similar_pairs
    except ImportError as exc:
        return [], f"similarity not checked: {exc}"
    try:
        return list(similar_pairs(root, assignment)), ""
    except Exception as exc:   # the report is still worth having without it
        return [], f"similarity not checked: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- numbers


def _mistakes(grade_id: str, students: Iterable[str], verdicts: Mapping[str, list[dict]]) -> list[Mistake]:
    """Each failure of the cell among ``students`` (student -> the cell's verdicts; [] when none was
    found for a student whose cell failed), each student counted once per failure, most frequent first."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for student in students:
        failed = [v for v in verdicts.get(student, []) if not v["passed"]]
        if not verdicts.get(student):
            failed = [{"check": grade_id, "diagnosis": NO_VERDICT, "cause": ""}]
        for v in failed:
            named = v["diagnosis"] == "named" and v["cause"]
            diagnosis = "named" if named else (v["diagnosis"] if v["diagnosis"] != "named" else "values")
            cause = v["cause"] if named else FAILURE_KINDS.get(diagnosis, diagnosis)
            if diagnosis == "rule" and v.get("rule"):      # which rule: one entry per rule of the exercise
                cause = f"{cause}: {v['rule']}"
            found.setdefault((v["check"] or grade_id, diagnosis, cause), set()).add(student)
    mistakes = [Mistake(check, diagnosis, cause, sorted(who)) for (check, diagnosis, cause), who in found.items()]
    return sorted(mistakes, key=lambda m: (-m.count, m.diagnosis != "named", m.check, m.cause))


def _read_class(root: Path, assignment: str, students: list[str], notebooks: list[str]
                ) -> tuple[dict[tuple[str, str], _Autograded], list[ReviewFlag], list[str]]:
    """Each ``(student, notebook)``'s autograded notebook, all their review flags, and a note per notebook not read."""
    autograded, flags, notes = {}, [], []
    for student in students:
        for notebook in notebooks:
            read, why = read_autograded(root, student, assignment, notebook)
            if read is None:
                notes.append(f"{student}/{assignment}/{notebook}.ipynb: {why}")
                continue
            autograded[(student, notebook)] = read
            flags += read.flags
    return autograded, sorted(flags, key=lambda f: (f.student, f.notebook, f.cell_index, f.line, f.rule)), notes


def _question(assignment: str, cell: tuple[str, str, str, float], outline: Outline, students: list[str],
              book: _Gradebook, autograded: dict[tuple[str, str], _Autograded]) -> Question:
    notebook, grade_id, cell_type, max_points = cell
    grades = {s: book.grades[(s, notebook, grade_id)] for s in students if (s, notebook, grade_id) in book.grades}
    scores = {s: points for s, (points, pending) in grades.items() if not pending}
    pending = sorted(s for s, (_, waiting) in grades.items() if waiting)
    verdicts = {s: read.verdicts.get(grade_id, []) for (s, nb), read in autograded.items() if nb == notebook}
    names = outline.checks.get(grade_id) or [v["check"] for vs in verdicts.values() for v in vs]
    question = Question(assignment, notebook, grade_id, "test" if cell_type == "code" else "written",
                        outline.headings.get(grade_id, ""), list(dict.fromkeys(names)), max_points, scores, pending, [])
    if question.kind == "test":
        failing = [s for s, points in scores.items()
                   if not _full(points, max_points) or any(not v["passed"] for v in verdicts.get(s, []))]
        question.mistakes = _mistakes(grade_id, failing, verdicts)
    return question


def assignment_report(root: Path, assignment: str, db_url: str, failures: Mapping[str, str] | None,
                      similar: list | None) -> AssignmentReport:
    """The numbers of one assignment (see the module docstring for what counts)."""
    book = read_gradebook(db_url, assignment)
    notes = [] if book is not None else [f"{assignment} is not in the gradebook"]
    book = book or _Gradebook([], [], 0.0, {}, {})
    failed = dict(failures) if failures is not None else ungraded_submissions(root, assignment, book.totals)
    students = sorted(s for s in book.totals if s not in failed)
    autograded, flags, unread = _read_class(root, assignment, students, book.notebooks)
    outlines = {nb: source_outline(root, assignment, nb) for nb in book.notebooks}
    position = {(nb, gid): i for nb in book.notebooks for i, gid in enumerate(outlines[nb].order)}
    cells = sorted(book.cells, key=lambda c: (book.notebooks.index(c[0]), position.get(c[:2], len(position)), c[1]))
    questions = [_question(assignment, cell, outlines[cell[0]], students, book, autograded) for cell in cells]
    if similar is None:
        similar, why = _similar_pairs(root, assignment)
        notes += [why] if why else []
    pairs = sorted((p for p in similar if p.assignment == assignment), key=lambda p: -p.similarity)
    return AssignmentReport(assignment, book.max_total, {s: book.totals[s] for s in students}, questions, flags,
                            pairs, dict(sorted(failed.items())), notes + unread)


# --------------------------------------------------------------------------- plots


def _svg(figure) -> str:
    """The figure as an ``<svg>`` element for an HTML page: text as text (no font files), no XML prologue,
    no namespace URLs (the HTML parser gives inline SVG its namespace)."""
    import matplotlib
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)


def histogram_svg(values: list[float], max_points: float, title: str) -> str:
    """Inline SVG of how many students got each number of points (one bar per point when the maximum is
    at most 20, else 20 bins). Drawn with matplotlib's Figure, never pyplot: no window, no global state."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(4.2, 1.9), layout="constrained")
    axes = figure.add_subplot()
    top = max(max_points, max(values, default=0.0), 1.0)
    whole = top <= 20 and all(float(v).is_integer() for v in [*values, top])
    edges = [x - 0.5 for x in range(int(top) + 2)] if whole else [top * i / 20 for i in range(21)]
    axes.hist(values, bins=edges, color="#4878a8", edgecolor="white")
    if whole:
        axes.set_xticks(range(int(top) + 1))
    axes.set_xlabel("points")
    axes.set_ylabel("students")
    axes.set_title(title, fontsize=9)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.tick_params(labelsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _svg(figure)


# --------------------------------------------------------------------------- HTML


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1150px;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:2px solid #4878a8;padding-bottom:.2em;margin-top:2.2em}
h3{margin-top:1.8em}h4{margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top;
text-align:left}th{background:#eef2f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
details summary{cursor:pointer;color:#24527a}details{margin:.2em 0}
.muted{color:#666}.warn{color:#a33}.top li{margin:.3em 0}code,.ev{font-family:ui-monospace,monospace;font-size:.9em}
.ev{white-space:pre-wrap;word-break:break-word}.plots{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.students{columns:14em;margin:.3em 0 .6em 1em;padding:0}.side{overflow-x:auto;max-width:100%}
svg{max-width:100%;height:auto}td code{overflow-wrap:anywhere}table{max-width:100%}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _inline(text: str) -> str:
    """A heading from source/ as HTML: escaped, with its `code` spans set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _anchor(*parts: str) -> str:
    return "q-" + re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(parts))


def _passed(q: Question) -> str:
    return "—" if q.pass_rate is None else f"{_pct(q.pass_rate)} ({len(q.passed)} of {len(q.scores)})"


def _students(students: list[str], what: str = "students", summary: str = "") -> str:
    """The students as a collapsed list under ``summary`` (default: "<n> <what>")."""
    items = "".join(f"<li>{_e(s)}</li>" for s in students)
    what = what[:-1] if len(students) == 1 and what.endswith("s") else what
    summary = summary or f"{len(students)} {what}"
    return f"<details><summary>{_e(summary)}</summary><ul class=students>{items}</ul></details>"


def _table(header: list[str] | None, rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """A table of already escaped cells (no header row when ``header`` is None); columns in ``numeric``
    align right."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{cell}</td>"
                                     for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _top_html(result: ReportResult) -> str:
    top = top_mistakes(result, TOP_MISTAKES)
    if not top:
        return "<p class=muted>No named mistake was found in any graded submission.</p>"
    items = "".join(
        f"<li><b>{count} student{'s' if count != 1 else ''}</b>: {_e(cause)} "
        f"<span class=muted>({_e(assignment)}, <code>{_e(check)}</code>)</span>"
        f"{_students(students, summary='who')}</li>"
        for assignment, check, cause, count, students in top)
    return f"<ol class=top>{items}</ol>"


def _summary_html(a: AssignmentReport) -> str:
    totals = list(a.totals.values())
    pending = sum(len(q.pending) for q in a.written)
    rows = [["students graded", str(len(totals))],
            ["grading failed / not graded", str(len(a.failures))],
            ["mean total", f"{_num(statistics.fmean(totals) if totals else None)} / {_num(a.max_total)}"],
            ["median total", f"{_num(statistics.median(totals) if totals else None)} / {_num(a.max_total)}"],
            ["full marks", str(sum(_full(t, a.max_total) for t in totals))],
            ["written answers pending", str(pending)],
            ["students flagged for review", str(len({f.student for f in a.flags}))],
            ["similar pairs", str(len(a.similar))]]
    table = _table(None, rows, {1})
    plot = histogram_svg(totals, a.max_total, f"{a.name}: total points") if totals else ""
    return f'<div class=plots>{table}{plot}</div>'


def _exercise_rows(a: AssignmentReport) -> str:
    rows = []
    for q in a.tests:
        top = q.mistakes[0] if q.mistakes else None
        link = f'<a href="#{_anchor(a.name, q.notebook, q.grade_id)}">{_inline(q.label)}</a>'
        checks = ", ".join(f"<code>{_e(c)}</code>" for c in q.checks)
        rows.append([_e(q.notebook), link, checks, _num(q.max_points), str(len(q.scores)), _num(q.mean),
                     _num(q.median), _passed(q), f"{top.count}: {_e(top.cause)}" if top else ""])
    return _table(["notebook", "exercise", "checks", "points", "students", "mean", "median", "pass rate",
                   "most frequent failure"], rows, {3, 4, 5, 6, 7})


def similar_groups(pairs: list) -> list[list]:
    """The pairs grouped by notebook into groups of students linked by similar pairs (connected components),
    the largest group first; within a group the most similar pair first."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for p in pairs:
        parent[root((p.notebook, p.student_a))] = root((p.notebook, p.student_b))
    groups: dict[tuple[str, str], list] = {}
    for p in pairs:
        groups.setdefault(root((p.notebook, p.student_a)), []).append(p)
    ordered = [sorted(g, key=lambda p: -p.similarity) for g in groups.values()]
    return sorted(ordered, key=lambda g: (-len(g), -g[0].similarity, g[0].notebook))


def _similar_html(pairs: list) -> str:
    """One entry per group of linked students (a copied answer passed round shows as one group, not as every
    pair of it): who, the range of similarity, and the side-by-side view of its most similar pairs, up to
    :data:`MAX_PAIRS_SHOWN` views per assignment; the other pairs are listed."""
    def title(p) -> str:
        return (f"{_e(p.student_a)} and {_e(p.student_b)}: similarity {_pct(p.similarity)}, "
                f"{int(p.shared_tokens)} shared tokens")

    parts, views = [], 0
    for group in similar_groups(pairs):
        students = sorted({s for p in group for s in (p.student_a, p.student_b)})
        low, high = min(p.similarity for p in group), max(p.similarity for p in group)
        spread = _pct(high) if low == high else f"{_pct(low)}–{_pct(high)}"
        shown = group[:max(0, min(2, MAX_PAIRS_SHOWN - views))]
        views += len(shown)
        inner = "".join(f"<details><summary>{title(p)}</summary><div class=side>{p.side_by_side_html}</div></details>"
                        for p in shown)
        if group[len(shown):]:
            inner += _table(None, [[title(p)] for p in group[len(shown):]])
        parts.append(f"<details><summary>{_e(group[0].notebook)}: {len(students)} students, {len(group)} "
                     f"pair{'s' if len(group) != 1 else ''} at {spread} similarity: "
                     f"{_e(', '.join(students))}</summary>{inner}</details>")
    return "".join(parts)


def _review_html(a: AssignmentReport) -> str:
    parts = []
    if a.flags:
        rows = [[_e(f.student), _e(f.notebook), _e(f"{f.cell}:{f.line}" if f.line else f.cell)
                 + (f" ({_e(f.function)})" if f.function else ""),
                 f"<code>{_e(f.rule)}</code><br><span class=muted>{_e(RULES.get(f.rule, ''))}</span>",
                 f"<span class=ev>{_e(f.evidence)}</span>"] for f in a.flags]
        parts.append("<h4>Review flags</h4>" + _table(["student", "notebook", "where", "rule", "evidence"], rows))
    if a.similar:
        parts.append(f"<h4>Similar submissions</h4>{_similar_html(a.similar)}")
    if a.failures:
        rows = [[_e(student), f"<span class=ev>{_e(why[:FAILURE_CHARS])}</span>"]
                for student, why in a.failures.items()]
        parts.append("<h4>Grading failed</h4>" + _table(["student", "why"], rows))
    if not parts:
        return "<p class=muted>No student is flagged for review, no pair of submissions is similar, and every " \
               "submission was graded.</p>"
    return "".join(parts)


def _written_html(a: AssignmentReport) -> str:
    rows = [[_e(q.notebook), _inline(q.label), _num(q.max_points), str(len(q.scores)), str(len(q.pending)),
             _num(q.mean), _students(q.pending, "pending") if q.pending else ""] for q in a.written]
    return _table(["notebook", "question", "points", "graded", "pending", "mean of graded", "waiting"],
                  rows, {2, 3, 4, 5})


def _question_html(a: AssignmentReport, q: Question) -> str:
    checks = ", ".join(f"<code>{_e(c)}</code>" for c in q.checks)
    numbers = _table(None, [
        ["points", _num(q.max_points)], ["students", str(len(q.scores))], ["mean", _num(q.mean)],
        ["median", _num(q.median)], ["pass rate (full points)", _passed(q)]], {1})
    plot = histogram_svg(list(q.scores.values()), q.max_points, q.label.replace("`", "")) if q.scores else ""
    rows = [[str(m.count), _e(m.cause) if m.diagnosis == "named" else f"<i>{_e(m.cause)}</i>",
             f"<code>{_e(m.check)}</code>", _students(m.students)] for m in q.mistakes]
    mistakes = (_table(["students", "mistake", "check", "who"], rows, {0}) if rows
                else "<p class=muted>Every graded student passed.</p>")
    return (f'<h3 id="{_anchor(a.name, q.notebook, q.grade_id)}">{_inline(q.label)}</h3>'
            f"<p class=muted>{_e(q.notebook)} · <code>{_e(q.grade_id)}</code> · {checks}</p>"
            f"<div class=plots>{numbers}{plot}</div>{mistakes}")


def _assignment_html(a: AssignmentReport) -> str:
    parts = [f'<h2 id="{_anchor(a.name)}">{_e(a.name)}</h2>', _summary_html(a), "<h3>Exercises</h3>",
             _exercise_rows(a), "<h3>Students to look at</h3>", _review_html(a)]
    if a.written:
        parts += ["<h3>Written questions</h3>", _written_html(a)]
    if a.notes:
        parts.append("<details><summary>Notes</summary><ul>"
                     + "".join(f"<li>{_e(note)}</li>" for note in a.notes) + "</ul></details>")
    parts += [_question_html(a, q) for q in a.tests]
    return "".join(parts)


def render_html(result: ReportResult) -> str:
    """The whole page: no script, no URL, every text from a submission escaped."""
    contents = " · ".join(f'<a href="#{_anchor(a.name)}">{_e(a.name)}</a>' for a in result.assignments)
    body = "".join(_assignment_html(a) for a in result.assignments)
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>Class report</title><style>{_CSS}</style></head><body>"
            f"<h1>Class report</h1><p>{contents}</p>"
            f"<h2>Top mistakes of the class</h2>{_top_html(result)}{body}</body></html>")


# --------------------------------------------------------------------------- CSV


def question_rows(a: AssignmentReport) -> list[dict]:
    """One dict per graded cell of ``a``, keyed by :data:`CSV_COLUMNS`."""
    def fmt(value):
        return "" if value is None else round(value, 4)

    rows = []
    for q in a.questions:
        top = q.mistakes[0] if q.mistakes else None
        rows.append({
            "assignment": q.assignment, "notebook": q.notebook, "grade_id": q.grade_id, "kind": q.kind,
            "heading": q.heading, "checks": ";".join(q.checks), "max_points": q.max_points,
            "n_students": q.n_students, "n_pending": len(q.pending), "mean": fmt(q.mean), "median": fmt(q.median),
            "pass_rate": fmt(q.pass_rate), "n_failed": len(q.scores) - len(q.passed),
            "top_mistake": top.cause if top else "", "top_mistake_kind": top.diagnosis if top else "",
            "top_mistake_count": top.count if top else ""})
    return rows


def write_csv(path: Path, a: AssignmentReport) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(question_rows(a))


# --------------------------------------------------------------------------- entry points


def _gradebook_assignments(db_url: str) -> list[str]:
    from nbgrader.api import Gradebook
    with Gradebook(db_url) as gb:
        return sorted(a.name for a in gb.assignments)


def build_report(root: str | os.PathLike, assignments: Iterable[str] | None, *, db_url: str | None = None,
                 failures: Mapping[tuple[str, str], str] | None = None, similar: Iterable | None = None,
                 out_dir: str | os.PathLike | None = None) -> ReportResult:
    """Compute the class report of ``assignments`` (None or empty: every assignment of the gradebook) and
    write ``class_report.html`` and ``<assignment>_questions.csv`` into ``out_dir`` (default ``<root>/reports``).

    ``failures``: ``{(student, assignment): why}`` of the students whose grading failed (the parallel
    grader's); None: a student with a submission folder and no grade counts as not graded.
    ``similar``: the similar pairs (``SimilarPair``) of all these assignments; None: computed with
    utils/instructor/similarity.py; ``[]``: no similarity check.
    """
    root = Path(root)
    if db_url is None:
        if not (root / "gradebook.db").is_file():
            raise FileNotFoundError(f"{root / 'gradebook.db'} does not exist: grade first, or pass db_url")
        db_url = sqlite_gradebook_url(root)
    names = list(dict.fromkeys(assignments or [])) or _gradebook_assignments(db_url)
    pairs = None if similar is None else list(similar)
    reports = []
    for name in names:
        failed = None if failures is None else {s: why for (s, a), why in failures.items() if a == name}
        reports.append(assignment_report(root, name, db_url, failed, pairs))
    out = Path(out_dir) if out_dir is not None else root / "reports"
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out / REPORT_NAME, {}, reports)
    for report in reports:
        result.csv_paths[report.name] = out / f"{report.name}_questions.csv"
        write_csv(result.csv_paths[report.name], report)
    result.html_path.write_text(render_html(result), encoding="utf-8")
    return result


def summary_lines(result: ReportResult, n: int = 5) -> list[str]:
    """A few lines for the terminal: where the report is, and the class's top mistakes."""
    lines = [f"Class report: {result.html_path}"]
    for assignment, check, cause, count, _ in top_mistakes(result, n):
        lines.append(f"  {count:3d} student{'s' if count != 1 else ' '}  {assignment} {check}: {cause}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.class_report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*", metavar="assignment",
                        help="assignments to report on (default: every assignment of the gradebook)")
    parser.add_argument("--root", default=".", help="the course root (default: this folder)")
    parser.add_argument("--db-url", default=None, help="gradebook URL (default: <root>/gradebook.db)")
    parser.add_argument("--out", default=None, help="folder of the report (default: <root>/reports)")
    parser.add_argument("--no-similarity", action="store_true", help="do not compare submissions")
    args = parser.parse_args(argv)
    try:
        result = build_report(args.root, args.assignments, db_url=args.db_url, out_dir=args.out,
                              similar=[] if args.no_similarity else None)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print("\n".join(summary_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
