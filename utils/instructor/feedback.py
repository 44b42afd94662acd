"""Regenerate exactly the feedback pages whose grades changed since they were made.

    python -m utils.instructor.feedback ASSIGNMENT [--root DIR] [--db-url URL]

``nbgrader generate_feedback ASSIGNMENT`` skips a student whose feedback exists ("Skipping existing
assignment"), so after a grader scores a written answer in the formgrader the student's page keeps
"pending"; with ``--force`` it rewrites every page. Each feedback page carries the fingerprint of the
gradebook state it was made from (``<meta name="course-feedback-fingerprint">``, written by
:class:`~utils.grading.preprocessors.FeedbackGrades`: scores, comments, late penalty, the autograded
notebook). :func:`refresh_feedback` recomputes that fingerprint from the gradebook for each
autograded submission and regenerates the feedback of the students for whom a page is missing or
differs, with the course's nbgrader configuration (nbgrader_config.py), in this process.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

_META = re.compile(r"<meta\b[^>]*>", re.IGNORECASE)


class _MetaReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.content: dict[str, str] = {}

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and attrs.get("name"):
            self.content[attrs["name"]] = attrs.get("content") or ""


def page_fingerprint(page: Path) -> str | None:
    """The fingerprint a feedback page was made from, or None (no page, or a page made without one)."""
    from utils.grading.preprocessors.feedback_grades import FINGERPRINT_META
    if not page.is_file():
        return None
    reader = _MetaReader()   # the page's <meta> tags only: the rest is the student's notebook
    for tag in _META.findall(page.read_text(encoding="utf-8", errors="replace")):
        reader.feed(tag)
    return reader.content.get(FINGERPRINT_META)


def _feedback_app(root: Path, db_url: str | None):
    """nbgrader's generate_feedback app, configured from the course's nbgrader_config.py as on the command line."""
    from nbgrader.apps import GenerateFeedbackApp
    app = GenerateFeedbackApp()
    argv = ["--log-level=ERROR"] + ([f"--CourseDirectory.db_url={db_url}"] if db_url else [])
    with contextlib.chdir(root):   # nbgrader reads nbgrader_config.py from the working directory
        app.initialize(argv)
    return app


def stale_students(coursedir, assignment: str) -> list[str]:
    """Students with an autograded submission of ``assignment`` whose feedback is missing or out of date."""
    from nbgrader.api import Gradebook

    from utils.grading.preprocessors.feedback_grades import feedback_fingerprint
    stale = []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        for submission in gb.find_assignment(assignment).submissions:
            student = submission.student.id
            autograded = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
            feedback = Path(coursedir.format_path(coursedir.feedback_directory, student, assignment))
            if not autograded.is_dir():
                continue   # never autograded: nothing to give feedback on
            for notebook in submission.notebooks:
                made_from = page_fingerprint(feedback / f"{notebook.name}.html")
                now = feedback_fingerprint(gb, assignment, notebook.name, student,
                                           str(autograded / f"{notebook.name}.ipynb"))
                if made_from != now:
                    stale.append(student)
                    break
    return sorted(stale)


def refresh_feedback(root, assignment: str, db_url: str | None = None) -> list[str]:
    """Regenerate the feedback of each student of ``assignment`` whose grades changed since it was made.

    ``root``: the course folder (nbgrader_config.py); ``db_url``: the gradebook, when not the one
    nbgrader_config.py names. Returns the students whose feedback was regenerated, sorted. Raises
    RuntimeError naming the students nbgrader could not make feedback for (after trying them all).
    """
    from nbgrader.apps import generatefeedbackapp
    from nbgrader.converters import NbGraderException

    root = Path(root).resolve()
    app = _feedback_app(root, db_url)
    students = stale_students(app.coursedir, assignment)
    failed = []
    with contextlib.chdir(root):
        for student in students:
            app.coursedir.assignment_id = assignment
            app.coursedir.student_id = glob.escape(student)
            # the name nbgrader_patches.install() points at the course's SafeGenerateFeedback
            converter = generatefeedbackapp.GenerateFeedback(coursedir=app.coursedir, parent=app)
            converter.force = True
            try:
                converter.start()
            except NbGraderException as exc:
                failed.append(f"{student}: {exc}")
    app.coursedir.student_id = "*"
    if failed:
        raise RuntimeError("generate_feedback failed for " + "; ".join(failed))
    return students


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.feedback", description=__doc__.split("\n")[0])
    parser.add_argument("assignment")
    parser.add_argument("--root", default=os.getcwd(), help="course root (default: the current folder)")
    parser.add_argument("--db-url", default=None, help="gradebook URL (default: nbgrader_config.py)")
    args = parser.parse_args(argv)
    students = refresh_feedback(args.root, args.assignment, args.db_url)
    if students:
        print(f"feedback regenerated for {len(students)} student(s): {', '.join(students)}")
    else:
        print("all feedback is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
