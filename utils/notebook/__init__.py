"""What a student's notebook calls besides the checks; runs in the student's kernel.

* :func:`~utils.notebook.ready.ready` — a demo or figure cell asks whether the answers it uses are written;
* :func:`~utils.notebook.progress.progress` — every exercise of the notebook with its points and its state.

May import the check core (``utils.checks``) and the standard library; never nbgrader, ``utils.grading``
or the instructor tools, and never torch (the NumPy notebooks use these too).
"""
from utils.notebook.progress import progress
from utils.notebook.ready import ready

__all__ = ["progress", "ready"]
