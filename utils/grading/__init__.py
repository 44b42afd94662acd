"""Grading infrastructure, by where the code runs.

* this folder — the trusted grader, run by nbgrader (nbgrader_config.py) and the parallel grader.
  It may import nbgrader, the check core and the assignment packages; everything a kernel wrote
  is untrusted input here.

  - :mod:`~utils.grading.preprocessors`: the nbgrader preprocessors, one per module;
  - :mod:`~utils.grading.trusted`: what the trusted-grading preprocessors share (the checks a
    test cell calls, the course secret, the hidden cases); :mod:`~utils.grading.recorded_outputs`
    reads what a kernel recorded;
  - :mod:`~utils.grading.sandbox`: the bubblewrap sandbox of a kernel; :mod:`~utils.grading.zygote`:
    warm kernels forked in that sandbox; :mod:`~utils.grading.kernel_manager` starts a kernel either way;
  - :mod:`~utils.grading.submission_repair` and :mod:`~utils.grading.nbgrader_patches`: unreadable
    and renamed notebooks, and the one place nbgrader's own code is patched;
    :mod:`~utils.grading.submission_intake` takes a submission in (links, special and oversized
    files refused) and :mod:`~utils.grading.safe_files` reads and writes without following links;
  - :mod:`~utils.grading.preflight` checks, before a batch, that a grading kernel imports the check
    package the grader uses; :mod:`~utils.grading.batch_report` ends the batch with each
    submission's status (graded, or failed and why), through the Autograde converter nbgrader runs;
  - :mod:`~utils.grading.gradebook`: the course's gradebook URL;
  - :mod:`~utils.grading.review_flags`: submitted code an instructor should review (routes around
    the from-scratch rule, reads of grading files), with the line as evidence;
  - :mod:`~utils.grading.rubric`: the rubric and model answer of a written question, shown to graders
    in the formgrader and never in feedback; ``templates/``: the feedback and formgrader pages.
* :mod:`utils.grading.in_kernel` — imported inside the student's (sandboxed) kernel: it runs the
  student's functions on the grading inputs and records the outputs. It may import the check core
  and numpy, never nbgrader and never the course secret.
* :mod:`utils.grading.in_sandbox` — run by path inside bubblewrap before a kernel starts, with
  ``python -I``: the standard library only, and nothing else of this package.

Imports go one way: preprocessors → kernel_manager → zygote → sandbox.
"""
