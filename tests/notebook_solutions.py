"""The instructor's solutions of a source notebook, for the checker tests.

The reader lives in :mod:`utils.instructor.solutions`; the tests import it from here
as ``from notebook_solutions import NotebookSolutions`` (pytest puts tests/ on sys.path).
"""
from utils.instructor.solutions import NotebookSolutions as NotebookSolutions
from utils.instructor.solutions import solution_region as solution_region
