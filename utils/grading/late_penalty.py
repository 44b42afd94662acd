"""The course's late policy: a share of a late notebook's score per started day, capped, after a grace period.

nbgrader decides lateness and this plugin decides its cost. ``nbgrader collect`` keeps the exchange's
``timestamp.txt`` with each submission; ``nbgrader autograde`` stores it as the submission's timestamp and,
in its last preprocessors, runs :class:`nbgrader.preprocessors.AssignLatePenalties` once per notebook. That
preprocessor computes ``SubmittedAssignment.total_seconds_late`` (timestamp minus the assignment's due date
plus the student's extension, 0 without a timestamp or a due date) and, only when it is positive, asks the
plugin for a penalty, which it clips to [0, notebook score] and stores as the notebook's
``late_submission_penalty``. The formgrader, ``nbgrader export`` and the LMS export
(:mod:`utils.instructor.lms_export`) subtract it. Wired in ``nbgrader_config.py``::

    c.AssignLatePenalties.plugin_class = LatePenalty
    c.LatePenalty.percent_per_day = 10     # of the notebook's score, per started day late
    c.LatePenalty.max_percent = 50         # never more than this
    c.LatePenalty.grace_minutes = 15       # up to this late: no penalty (a slow upload, a clock)
    c.LatePenalty.extensions = {"deformable_conv": {"bob": "2027-02-17 23:59:00 Europe/Istanbul"}}

Rule: ``late`` seconds after the student's due date, ``late <= grace`` costs nothing, otherwise the penalty
is ``score * min(max_percent, percent_per_day * ceil(late / 86400)) / 100`` — the grace period only
forgives, it never moves the due date (61 minutes late is one started day).

**Extensions** are nbgrader's own: ``SubmittedAssignment.extension``, a time added to the assignment's due
date for one student, which every lateness in nbgrader uses (the formgrader, the exports). nbgrader offers no
page to grant one and keeps it on the submission row, which only exists once a submission is autograded, so
the course states them here, as the student's own due date: ``python -m utils.instructor.term apply``
writes them onto the submissions already in the gradebook, and this plugin writes them onto a submission
graded later, before deciding its penalty. An extension shorter than the student's lateness still leaves
them late, counted from their own due date.

Note that nbgrader computes the penalty when it autogrades, from the notebook's score at that moment (a
written answer not graded yet counts 0). Regrading after hand grading (the parallel grader always does,
keeping the TA's grades) computes it again from the full score.
"""
from __future__ import annotations

import datetime
import math

from dateutil.tz import gettz
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.utils import parse_utc
from traitlets import Dict, Float, validate

DAY_SECONDS = 24 * 3600


def parse_due_date(text: str, what: str = "due date") -> datetime.datetime:
    """``text`` as nbgrader stores a due date: a naive datetime in UTC.

    ``text`` must name its time zone, as ``"2027-02-15 23:59:00 Europe/Istanbul"`` (nbgrader's own
    form: date, time, IANA zone name or ``UTC``) or with an offset, ``"2027-02-15T23:59:00+03:00"``;
    a time without a zone would silently be read as UTC. Raises ValueError naming ``what``.
    """
    parts = str(text).split()
    if len(parts) == 3 and (parts[2].lstrip("+-").isdigit() or gettz(parts[2]) is None):
        raise ValueError(f"{what} {text!r}: unknown time zone {parts[2]!r}; use an IANA name such as "
                         "'Europe/Istanbul' or 'UTC', or an offset in ISO form, '2027-02-15T23:59:00+03:00'")
    try:
        when = parse_utc(text) if len(parts) == 3 else datetime.datetime.fromisoformat(str(text))
    except (ValueError, OverflowError) as err:
        raise ValueError(f"{what} {text!r} is not a date and time such as "
                         f"'2027-02-15 23:59:00 Europe/Istanbul' ({err})") from None
    if len(parts) != 3:
        if when.tzinfo is None:
            raise ValueError(f"{what} {text!r} has no time zone; write it as "
                             "'2027-02-15 23:59:00 Europe/Istanbul' or '2027-02-15T23:59:00+03:00'")
        when = parse_utc(when)
    return when


class LatePenalty(LateSubmissionPlugin):
    """A share of the notebook's score per started day late, capped, after a grace period (module docstring).

    nbgrader's ``penalty_method`` setting of the base class is not used.
    """

    percent_per_day = Float(10.0, min=0.0, max=100.0, help=(
        "Percent of a late notebook's score taken off per started day (24 hours) after the student's due date."
    )).tag(config=True)

    max_percent = Float(50.0, min=0.0, max=100.0, help=(
        "The most a late notebook loses, in percent of its score, however late (100: it may reach zero)."
    )).tag(config=True)

    grace_minutes = Float(15.0, min=0.0, help=(
        "A notebook at most this many minutes late loses nothing; past it, lateness counts from the due date."
    )).tag(config=True)

    extensions = Dict(key_trait=None, value_trait=Dict(), help=(
        "Per-student extensions: {assignment: {student id: that student's due date}}, each date in the form of "
        "c.Term.due_dates ('2027-02-17 23:59:00 Europe/Istanbul'). Stored as nbgrader's "
        "SubmittedAssignment.extension (the student's date minus the assignment's) by "
        "`python -m utils.instructor.term apply` and, for a submission graded later, by this plugin."
    )).tag(config=True)

    @validate("extensions")
    def _valid_extensions(self, proposal):
        for assignment, students in proposal["value"].items():
            for student, text in students.items():
                parse_due_date(text, f"c.LatePenalty.extensions[{assignment!r}][{student!r}]")
        return proposal["value"]

    def percent(self, seconds_late: float) -> float:
        """Percent of the score taken off a notebook ``seconds_late`` seconds after the student's due date."""
        if seconds_late <= self.grace_minutes * 60:
            return 0.0
        return min(self.max_percent, self.percent_per_day * math.ceil(seconds_late / DAY_SECONDS))

    def extension_for(self, assignment: str, student: str, duedate: datetime.datetime) -> datetime.timedelta | None:
        """The extension this setting grants ``student`` on ``assignment`` (due ``duedate``, UTC), or None."""
        text = self.extensions.get(assignment, {}).get(student)
        if text is None or duedate is None:
            return None
        return parse_due_date(text) - duedate

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        """The points a notebook scoring ``score`` loses, ``total_seconds_late`` seconds late (nbgrader's count).

        Called by AssignLatePenalties, which sets ``assignment_id`` and an open ``gradebook`` on itself (this
        plugin's parent) before asking; there the student's extension of :attr:`extensions` is written onto
        the submission first and the lateness counted again from it.
        """
        seconds_late = total_seconds_late
        parent = self.parent
        gradebook, assignment = getattr(parent, "gradebook", None), getattr(parent, "assignment_id", None)
        if gradebook is not None and assignment is not None:
            submission = gradebook.find_submission(assignment, student_id)
            extension = self.extension_for(assignment, student_id, submission.assignment.duedate)
            if extension is not None and extension != submission.extension:
                submission.extension = extension   # committed by AssignLatePenalties with the penalty
                self.log.info("Extension for %s on %s: due %s UTC", student_id, assignment, submission.duedate)
            seconds_late = submission.total_seconds_late
        percent = self.percent(seconds_late)
        penalty = round(score * percent / 100.0, 6)
        self.log.info("%s: %.0f s late, %g %% of %g points: penalty %g (c.LatePenalty: %g %% per started day, "
                         "at most %g %%, %g min grace)", student_id, seconds_late, percent, score, penalty,
                         self.percent_per_day, self.max_percent, self.grace_minutes)
        return penalty
