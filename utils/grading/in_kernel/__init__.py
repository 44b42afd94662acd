"""Code that runs inside the student's grading kernel (untrusted territory).

It records what the student's functions return on the grading inputs; the verdict is decided
outside the kernel (:mod:`utils.grading.preprocessors.apply_trusted_verdicts`). May import the
check core and numpy; never nbgrader, the grading secret or the rest of :mod:`utils.grading`.
"""
