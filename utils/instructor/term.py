"""The term's settings: due dates, extensions, the roster, and the gradebook export an LMS imports.

    python -m utils.instructor.term apply [--root DIR] [--db-url URL]
    python -m utils.instructor.term roster FILE.csv [--root DIR] [--db-url URL]
    python -m utils.instructor.term export [--to canvas.csv] [--assignment A ...] [--root DIR] [--db-url URL]
    python -m utils.instructor.term show [--root DIR] [--db-url URL]

Every setting of the term is a documented trait in ``nbgrader_config.py`` (the course's one configuration):
``c.Term.due_dates`` and ``c.Term.roster`` here, the late policy and the per-student extensions in
``c.LatePenalty`` (:mod:`utils.grading.late_penalty`), the export's columns in ``c.CanvasExportPlugin``
(:mod:`utils.instructor.lms_export`). nbgrader reads due dates and extensions from its gradebook, not from
its configuration, so ``apply`` writes them there, as ``nbgrader db assignment add A --duedate=...`` and
``Gradebook.grant_extension`` do: the formgrader then shows each due date, a submission's
``timestamp.txt`` from the exchange is measured against it when it is autograded, and the late policy
applies. Run ``apply`` again after changing the settings (a regrade recomputes the penalties).

``roster`` checks a CSV of students before handing it to ``nbgrader db student import``: columns ``id``,
``first_name``, ``last_name``, ``email`` and, optionally, ``lms_user_id`` (the student's number in the
LMS, the Canvas export's "SIS User ID"); ids are the students' JupyterHub user names, which nbgrader uses
as folder names (``submitted/<id>/``) and in glob patterns. Every problem of the file is listed at once, by
line, and nothing is imported while there is one.

From Python (what the JupyterHub deployment and its test call): :func:`apply_term`, :func:`import_roster`,
:func:`validate_roster`, :func:`utils.instructor.lms_export.export_lms` (also :func:`export_lms` here).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from traitlets import Dict, Unicode, validate
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

from utils.grading.late_penalty import LatePenalty, parse_due_date

from .course import assignments
from .lms_export import export_lms as export_lms

ROSTER_COLUMNS = ("id", "first_name", "last_name", "email")     # required, in this order in the example
ROSTER_OPTIONAL = ("lms_user_id",)
# A JupyterHub user name (lower case: JupyterHub lowers names), a Unix account and a folder name nbgrader
# globs over: no upper case, space, slash, wildcard or leading dot or dash.
STUDENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
STUDENT_ID_RULE = ("lower-case letters a-z, digits, '.', '_' and '-', starting with a letter or a digit, "
                   "at most 32 characters")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Term(Configurable):
    """The term's dates and roster, read from ``nbgrader_config.py`` (``c.Term...``)."""

    due_dates = Dict(key_trait=Unicode(), value_trait=Unicode(), help=(
        "Due date of each assignment, {assignment: '2027-02-15 23:59:00 Europe/Istanbul'}: date, time and an "
        "IANA time zone (or an ISO offset, '2027-02-15T23:59:00+03:00'). Written into the gradebook by "
        "`python -m utils.instructor.term apply`; a submission's exchange timestamp after it is late "
        "(c.LatePenalty). An assignment left out has no due date and is never late."
    )).tag(config=True)

    roster = Unicode("", help=(
        "The class roster, a CSV file (path relative to the course root) with columns id, first_name, "
        "last_name, email and optionally lms_user_id; `term apply` imports it (as `term roster FILE`). "
        "Empty: no roster is imported."
    )).tag(config=True)

    @validate("due_dates")
    def _valid_due_dates(self, proposal):
        for assignment, text in proposal["value"].items():
            parse_due_date(text, f"c.Term.due_dates[{assignment!r}]")
        return proposal["value"]


class RosterError(ValueError):
    """A roster file nbgrader should not import; the message lists every problem, one per line."""


@dataclass
class TermResult:
    """What :func:`apply_term` wrote: due dates (UTC), extensions granted, those waiting for a submission."""

    due_dates: dict[str, datetime.datetime] = field(default_factory=dict)
    extensions: list[tuple[str, str, datetime.datetime]] = field(default_factory=list)   # (a, student, due UTC)
    pending: list[tuple[str, str, datetime.datetime]] = field(default_factory=list)      # no submission yet
    cleared: list[tuple[str, str]] = field(default_factory=list)      # extensions no longer in the settings
    roster: list[str] = field(default_factory=list)                   # student ids imported

    def __str__(self) -> str:
        lines = [f"{a}: due {when:%Y-%m-%d %H:%M} UTC" for a, when in self.due_dates.items()]
        lines += [f"{a}: {s} has an extension to {when:%Y-%m-%d %H:%M} UTC" for a, s, when in self.extensions]
        lines += [f"{a}: {s}'s extension to {when:%Y-%m-%d %H:%M} UTC is applied when the submission is graded"
                  for a, s, when in self.pending]
        lines += [f"{a}: {s}'s extension removed (not in c.LatePenalty.extensions)" for a, s in self.cleared]
        if self.roster:
            lines.append(f"roster: {len(self.roster)} students imported")
        return "\n".join(lines) or "nothing to apply: c.Term.due_dates is empty"


def course_config(root: Path) -> Config:
    """The configuration ``nbgrader_config.py`` of the course at ``root`` holds, as nbgrader loads it."""
    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def gradebook_url(root: Path, config: Config, db_url: str | None = None) -> tuple[str, str]:
    """(gradebook URL, course id): ``db_url`` if given, else the course's ``CourseDirectory.db_url``."""
    coursedir = CourseDirectory(config=config)
    return db_url or coursedir.db_url or f"sqlite:///{Path(root) / 'gradebook.db'}", coursedir.course_id


def apply_term(root: str | Path, *, db_url: str | None = None,
               due_dates: dict[str, str] | None = None) -> TermResult:
    """Write the term's settings of the course at ``root`` into its gradebook; return what was written.

    Imports ``c.Term.roster`` when set (:func:`import_roster`), sets each assignment's due date
    (``c.Term.due_dates``, with ``due_dates`` given here taking precedence, same form) as
    ``nbgrader db assignment add`` does, and sets the extension of every submission already in the gradebook
    of those assignments to ``c.LatePenalty.extensions`` (removing one no longer listed). Raises ValueError,
    with every problem, for an assignment without ``source/<assignment>/`` or an extension earlier than the
    assignment's due date; nothing is written then.
    """
    root = Path(root)
    config = course_config(root)
    term, policy = Term(config=config), LatePenalty(config=config)
    url, course_id = gradebook_url(root, config, db_url)

    texts = {**term.due_dates, **(due_dates or {})}
    known = assignments(root) if (root / "source").is_dir() else []
    problems = [f"c.Term.due_dates names {a!r}, which has no folder source/{a}/ (assignments: "
                f"{', '.join(known) or 'none'})" for a in texts if a not in known]
    dates = {a: parse_due_date(t, f"due date of {a!r}") for a, t in texts.items()}
    wanted: dict[str, dict[str, datetime.datetime]] = {}
    for a, students in policy.extensions.items():
        if a not in dates:
            problems.append(f"c.LatePenalty.extensions names {a!r}, which has no due date in c.Term.due_dates")
            continue
        for student, text in students.items():
            when = parse_due_date(text, f"c.LatePenalty.extensions[{a!r}][{student!r}]")
            if when < dates[a]:
                problems.append(f"c.LatePenalty.extensions[{a!r}][{student!r}] = {text!r} is before the "
                                f"assignment's due date {texts[a]!r}: an extension only adds time")
            wanted.setdefault(a, {})[student] = when
    if problems:
        raise ValueError("the term's settings were not applied:\n  " + "\n  ".join(problems))

    result = TermResult(due_dates=dates)
    if term.roster:
        result.roster = import_roster(root, root / term.roster, db_url=url)
    with Gradebook(url, course_id) as gb:
        for a, when in dates.items():
            gb.update_or_create_assignment(a, duedate=when)
            submitted = {}
            for submission in gb.find_assignment(a).submissions:
                submitted[submission.student_id] = submission
            for student, due in sorted(wanted.get(a, {}).items()):
                if student in submitted:
                    gb.grant_extension(a, student, minutes=(due - when).total_seconds() / 60)
                    result.extensions.append((a, student, due))
                else:
                    result.pending.append((a, student, due))
            for student, submission in sorted(submitted.items()):
                if submission.extension is not None and student not in wanted.get(a, {}):
                    gb.grant_extension(a, student)    # no time given: nbgrader removes the extension
                    result.cleared.append((a, student))
    return result


def validate_roster(csv_path: str | Path) -> list[dict[str, str]]:
    """The rows of the roster ``csv_path``, stripped, after checking it; raises RosterError listing every problem.

    Rules: a header with the columns id, first_name, last_name, email (and optionally lms_user_id; no
    other); at least one student; every id present, unique and a valid user name (:data:`STUDENT_ID_RULE`);
    an email, when given, of the form name@host.domain; an lms_user_id, when given, unique. A UTF-8 byte order
    mark (spreadsheets write one) is allowed.
    """
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise RosterError(f"roster {path.name}: cannot be read as UTF-8 text ({err})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    problems = []
    missing = [c for c in ROSTER_COLUMNS if c not in header]
    unknown = [c for c in header if c not in ROSTER_COLUMNS + ROSTER_OPTIONAL]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}; the header is {', '.join(header) or 'empty'} "
                        f"and must hold {', '.join(ROSTER_COLUMNS)} (and optionally {', '.join(ROSTER_OPTIONAL)})")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}: nbgrader keeps only "
                        f"{', '.join(ROSTER_COLUMNS + ROSTER_OPTIONAL)}")
    if problems:
        raise RosterError(f"roster {path.name}:\n  " + "\n  ".join(problems))
    reader.fieldnames = header
    rows, first_line, first_lms = [], {}, {}
    for row in reader:
        line = reader.line_num
        if None in row:
            problems.append(f"line {line}: more values than the header's {len(header)} columns")
        row = {k: (row.get(k) or "").strip() for k in header}
        sid = row["id"]
        if not sid:
            problems.append(f"line {line}: no id")
        elif not STUDENT_ID.fullmatch(sid):
            problems.append(f"line {line}: id {sid!r} cannot be a student's user and folder name: "
                            f"use {STUDENT_ID_RULE}")
        elif sid in first_line:
            problems.append(f"line {line}: id {sid!r} is already on line {first_line[sid]}")
        else:
            first_line[sid] = line
        if row["email"] and not EMAIL.fullmatch(row["email"]):
            problems.append(f"line {line}: email {row['email']!r} is not of the form name@host.domain")
        lms = row.get("lms_user_id", "")
        if lms and lms in first_lms:
            problems.append(f"line {line}: lms_user_id {lms!r} is already on line {first_lms[lms]}")
        elif lms:
            first_lms[lms] = line
        rows.append(row)
    if not rows and not problems:
        problems.append("no students: the file has a header and no rows")
    if problems:
        raise RosterError(f"roster {path.name}: {len(problems)} problem(s), nothing imported:\n  "
                          + "\n  ".join(problems))
    return rows


def import_roster(root: str | Path, csv_path: str | Path, *, db_url: str | None = None) -> list[str]:
    """Check the roster ``csv_path`` (:func:`validate_roster`) and import it into the gradebook of the course at
    ``root`` with ``nbgrader db student import``; returns the student ids in the file's order.

    A student already in the gradebook is updated (names, email, lms_user_id); one missing from the file is
    kept. nbgrader reads a clean copy of the file (stripped values, no byte order mark).
    """
    from nbgrader.apps.dbapp import DbStudentImportApp

    root = Path(root)
    rows = validate_roster(csv_path)
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "roster.csv"
        with open(clean, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        _run_app(DbStudentImportApp, root, [str(clean)], db_url)
    return [row["id"] for row in rows]


def _run_app(app_class, root: Path, argv: list[str], db_url: str | None) -> None:
    """An nbgrader app run in this process from the course root, as its command would be."""
    app = app_class()
    with contextlib.chdir(root):     # nbgrader reads nbgrader_config.py from the working directory
        app.initialize(["--log-level=ERROR", *([f"--CourseDirectory.db_url={db_url}"] if db_url else []), *argv])
        app.start()


def describe_term(root: str | Path, *, db_url: str | None = None) -> str:
    """The term as the gradebook holds it: each assignment's due date and extensions, the late policy, students."""
    root = Path(root)
    config = course_config(root)
    policy = LatePenalty(config=config)
    url, course_id = gradebook_url(root, config, db_url)
    lines = [f"late policy: {policy.percent_per_day:g} % of a notebook's score per started day late, at most "
             f"{policy.max_percent:g} %, none within {policy.grace_minutes:g} minutes of the due date"]
    with Gradebook(url, course_id) as gb:
        for a in gb.assignments:
            due = f"due {a.duedate:%Y-%m-%d %H:%M} UTC" if a.duedate else "no due date"
            lines.append(f"{a.name}: {due}, {len(a.submissions)} submissions")
            for s in a.submissions:
                if s.extension is not None:
                    lines.append(f"  {s.student_id}: extension to {s.duedate:%Y-%m-%d %H:%M} UTC")
        students = gb.students
        lines.append(f"{len(students)} students, {sum(1 for s in students if s.email)} with an email")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.instructor.term",
        description="The term's settings (c.Term, c.LatePenalty in nbgrader_config.py) into the gradebook; the "
                    "roster; the export an LMS imports.")
    parser.add_argument("--root", default=".", help="course root holding nbgrader_config.py (default: here)")
    parser.add_argument("--db-url", default=None, help="gradebook URL (default: CourseDirectory.db_url)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("apply", help="write c.Term.due_dates, c.LatePenalty.extensions (and c.Term.roster, if set) "
                                 "into the gradebook")
    roster = sub.add_parser("roster", help="check a roster CSV (id, first_name, last_name, email[, lms_user_id]) "
                                           "and import it with `nbgrader db student import`")
    roster.add_argument("csv", help="the roster file")
    export = sub.add_parser("export", help="write the Canvas-style gradebook CSV (utils/instructor/lms_export.py)")
    export.add_argument("--to", default="canvas_grades.csv", help="CSV file to write (default canvas_grades.csv)")
    export.add_argument("--assignment", nargs="*", default=None, help="only these assignments (default: all)")
    sub.add_parser("show", help="print the due dates, extensions, late policy and students the gradebook holds")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        if args.command == "apply":
            print(apply_term(root, db_url=args.db_url))
        elif args.command == "roster":
            ids = import_roster(root, Path(args.csv).resolve(), db_url=args.db_url)
            print(f"imported {len(ids)} students: {', '.join(ids)}")
        elif args.command == "export":
            print(f"wrote {export_lms(root, Path(args.to).resolve(), db_url=args.db_url, assignments=args.assignment)}")
        else:
            print(describe_term(root, db_url=args.db_url))
    except (ValueError, MissingEntry) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
