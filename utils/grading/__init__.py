"""Grading infrastructure, by where the code runs.

* this folder — the trusted grader: nbgrader preprocessors and the process that starts sandboxed
  kernels (:mod:`~utils.grading.sandbox`, :mod:`~utils.grading.zygote`), reads what a kernel
  recorded and decides verdicts (:mod:`~utils.grading.trusted`). It may import nbgrader, the check
  core and the assignment packages. Everything a kernel wrote is untrusted input here.
* :mod:`utils.grading.in_kernel` — imported inside the student's (sandboxed) kernel: it runs the
  student's functions on the grading inputs and records the outputs. It may import the check core
  and numpy, never nbgrader and never the course secret.
* :mod:`utils.grading.in_sandbox` — run by path inside bubblewrap before a kernel starts, with
  ``python -I``: the standard library only, and nothing else of this package.
"""
