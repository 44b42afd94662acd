"""nbgrader configuration for the deep-learning architectures course.

Run every nbgrader command from this folder (the course root).
"""
import os

c = get_config()  # noqa: F821 - provided by nbgrader

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "dl-architectures"
c.CourseDirectory.root = ROOT
# Waits up to 60 s on a locked gradebook instead of failing at once.
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "gradebook.db") + "?timeout=60"

# Files a student adds are not copied into autograded/: a submitted utils.py or utils/
# would otherwise shadow the installed checks in the grading kernel.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
    "utils.py", "utils", "*.pth", "sitecustomize.py", "usercustomize.py",
]

# What a student sees in place of the instructor's solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Loop-based student code (the deformable convolution in nested Python loops) takes seconds
# per test cell; a whole notebook must still finish for a class of hundreds.
c.Execute.timeout = 180
c.Execute.interrupt_on_timeout = True

# Library warnings on stderr would zero a correct test cell: filter them before grading.
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern,  # noqa: E402
                                    LimitOutput, SaveAutoGrades)

from utils.nbgrader_ext import FilterHarmlessStderr  # noqa: E402

c.Autograde.autograde_preprocessors = [
    Execute,
    FilterHarmlessStderr,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.Autograde.create_student = True
