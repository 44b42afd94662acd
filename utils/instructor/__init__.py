"""Instructor tools, run by the instructor or CI on the course root (trusted side).

* :mod:`~utils.instructor.release` — ``make release``: ``nbgrader generate_assignment`` for every assignment;
* :mod:`~utils.instructor.demo` — ``make demo``: sample submissions graded end to end, a score table;
* :mod:`~utils.instructor.parallel` — grading a class on Dask workers;
* :mod:`~utils.instructor.class_report` — what the class got wrong, per exercise, and who to look at;
  :mod:`~utils.instructor.similarity` — similar answer code between submissions (copydetect);
* :mod:`~utils.instructor.feedback` — feedback regenerated where a grade changed since it was made;
* :mod:`~utils.instructor.bench` and :mod:`~utils.instructor.grading_overhead` — ``make bench``;
* :mod:`~utils.instructor.lab` — JupyterLab for students or instructors (``jupyter/`` holds their settings);
  :mod:`~utils.instructor.student_lab` — the student's Assignment List where no exchange exists;
* :mod:`~utils.instructor.pgserver` — a throwaway PostgreSQL gradebook on loopback;
* :mod:`~utils.instructor.review_flags` — the students flagged for review in an assignment, with evidence;
* :mod:`~utils.instructor.course` and :mod:`~utils.instructor.solutions` — the course's notebooks,
  nbgrader commands and the instructor's solution code; :mod:`~utils.instructor.samples` — the sample
  mistakes the demo submits.

May import everything in :mod:`utils`, nbgrader and the grading extras; never imported by the
check core, an assignment package or the code that runs in a student's kernel.
"""
