"""FeedbackGrades: what a student's feedback page says about grades still to be given by hand.

nbgrader's GetGrades writes each cell's score into the notebook for the feedback template; a
written answer nobody has graded yet has no score, and nbgrader's page shows it as "0.0 / 2.0" and
counts it as 0 in the total. This preprocessor runs after GetGrades in ``generate_feedback``
(``c.GenerateFeedback.preprocessors``) and adds, for the course's feedback template
(``templates/feedback/index.html.j2``):

* ``cell.metadata.nbgrader.pending`` (True) on each cell whose grade still needs a grader
  (``needs_manual_grade``): the page reads "pending (graded by hand)" with its points;
* ``resources["nbgrader"]["graded_score"]``: the score without the pending cells (and after the late
  penalty), ``["pending_points"]``: the points still to be graded, so the top reads
  "x / y, plus z points pending";
* ``resources["nbgrader"]["fingerprint"]``: :func:`feedback_fingerprint`, written into the page as
  ``<meta name="course-feedback-fingerprint">``; utils/instructor/feedback.py compares it with the
  gradebook to regenerate exactly the pages whose grades or comments changed since.
"""
from __future__ import annotations

import hashlib
import json
import os

from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

FINGERPRINT_META = "course-feedback-fingerprint"
FINGERPRINT_VERSION = 1   # raise when what a feedback page shows of the gradebook changes


def feedback_fingerprint(gradebook: Gradebook, assignment: str, notebook: str, student: str,
                         autograded_notebook: str) -> str:
    """A hash of everything a notebook's feedback page is made from.

    The gradebook's view of the submission (each grade's auto and manual score, extra credit, points
    and whether it needs a grader; each comment; the late penalty) and what the page shows of the
    autograded notebook (answers and outputs). Equal fingerprints: the page would come out the same.
    """
    submission = gradebook.find_submission_notebook(notebook, assignment, student)
    state = {
        "version": FINGERPRINT_VERSION,
        "grades": sorted([g.name, g.auto_score, g.manual_score, g.extra_credit, g.max_score, g.needs_manual_grade]
                         for g in submission.grades),
        "comments": sorted([c.name, c.auto_comment, c.manual_comment] for c in submission.comments),
        "late_penalty": submission.late_submission_penalty,
        "notebook": _notebook_digest(autograded_notebook),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _notebook_digest(path: str) -> str | None:
    """A hash of what the page shows of an autograded notebook: each cell's type, source, outputs and
    nbgrader metadata, and the review flags. Not the file's bytes: other metadata (kernel, timings) may
    differ between two gradings that give the same page, e.g. the parallel and the sequential grader."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        raw = f.read()
    try:
        nb = json.loads(raw)
        shown = [nb.get("metadata", {}).get("course_review_flags")] + [
            [c.get("cell_type"), c.get("source"), c.get("outputs"), c.get("metadata", {}).get("nbgrader")]
            for c in nb.get("cells", [])]
    except (ValueError, AttributeError):
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


class FeedbackGrades(NbGraderPreprocessor):
    """Marks pending manual grades, splits the total into graded and pending, and fingerprints the page."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        notebook_file = os.path.join(resources["metadata"]["path"], f"{info['notebook']}.ipynb")
        with Gradebook(info["db_url"]) as gb:
            submission = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            pending = {g.name: g for g in submission.grades if g.needs_manual_grade}
            info["fingerprint"] = feedback_fingerprint(gb, info["assignment"], info["notebook"], info["student"],
                                                       notebook_file)
            pending_score = sum(g.score for g in pending.values())
            info["pending_points"] = sum(g.max_score for g in pending.values())
        info["graded_score"] = info["score"] - pending_score
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id") in pending and (meta.get("grade") or meta.get("task")):
                meta["pending"] = True
        return nb, resources
