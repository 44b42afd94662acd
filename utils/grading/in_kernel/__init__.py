"""Code that runs inside the student's grading kernel (untrusted territory).

It records what the student's functions return on the grading inputs; the verdict is decided
outside the kernel by :mod:`utils.grading.trusted`. May import the check core and numpy; never
nbgrader, the grading secret or :mod:`utils.grading` itself.
"""
