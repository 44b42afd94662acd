"""nbgrader configuration for the deep-learning architectures course.

Run every nbgrader command from this folder (the course root).
"""
import os

import nbgrader
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteKernelspec,
    SaveAutoGrades,
)

import utils.grading
from utils.grading import nbgrader_patches
from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.late_penalty import LatePenalty
from utils.grading.preprocessors import (
    ApplyTrustedVerdicts,
    ContinueAfterErrors,
    FeedbackGrades,
    FilterHarmlessStderr,
    MarkdownMathToMathML,
    OverwriteCellsInPlace,
    PrepareTrustedTests,
    RestoreGradeCells,
    SandboxedExecute,
    SanitizeUntrustedHTML,
)
from utils.grading.rubric import RubricForGraders

c = get_config()  # provided by nbgrader

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "dl-architectures"
c.CourseDirectory.root = ROOT
c.CourseDirectory.db_url = sqlite_gradebook_url(ROOT)

# Files a student adds are not copied into autograded/: a submitted utils.py or utils/
# would otherwise shadow the installed checks in the grading kernel.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
    "utils.py", "utils", "*.pth", "sitecustomize.py", "usercustomize.py",
]

# What a student sees in place of the instructor's solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Run All in the student's JupyterLab goes on past an unfinished exercise (its error still counts).
c.GenerateAssignment.preprocessors = [
    *GenerateAssignment.class_traits()["preprocessors"].default(), ContinueAfterErrors]

# Grading runs each student's kernel in a bubblewrap sandbox (SandboxedExecute) and decides
# verdicts outside it (PrepareTrustedTests, ApplyTrustedVerdicts; utils/grading/trusted.py): the
# kernel only records what the student's code returns on inputs drawn with a course secret;
# references and points are computed here.
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreGradeCells,      # edited test-cell metadata is reset to the source version
    OverwriteCellsInPlace,  # deleted test cells are graded from the source version
    CheckCellMetadata,
]
c.OverwriteCellsInPlace.add_missing_cells = True

c.Autograde.autograde_preprocessors = [
    PrepareTrustedTests,
    SandboxedExecute,
    FilterHarmlessStderr,   # library warnings on stderr would zero a correct test cell
    ApplyTrustedVerdicts,
    SanitizeUntrustedHTML,  # no HTML or script of the submission runs where the notebook is shown
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.Autograde.create_student = True
# ClearMetadataPreprocessor is off (nbconvert's default); should it be turned on, it keeps the review
# flags the grader writes into each autograded notebook (utils/grading/review_flags.py).
c.ClearMetadataPreprocessor.preserve_nb_metadata_mask = {("language_info", "name"), "course_review_flags"}

# The term (python -m utils.instructor.term apply writes due dates and extensions into the gradebook, where
# nbgrader reads them; `term roster FILE.csv` imports the students; `term export` the Canvas-style CSV).
# Due dates: date, time and time zone, e.g. {"deformable_conv": "2027-02-15 23:59:00 Europe/Istanbul"}.
c.Term.due_dates = {}
c.Term.roster = ""   # e.g. "roster.csv" (id, first_name, last_name, email[, lms_user_id]) in the course root
# Late policy (utils/grading/late_penalty.py), applied by AssignLatePenalties above to a notebook submitted after
# the student's due date (the exchange's timestamp.txt): 10 % of its score per started day, at most 50 %, none
# within 15 minutes. Extensions: {assignment: {student id: that student's due date}}.
c.AssignLatePenalties.plugin_class = LatePenalty
c.LatePenalty.percent_per_day = 10.0
c.LatePenalty.max_percent = 50.0
c.LatePenalty.grace_minutes = 15.0
c.LatePenalty.extensions = {}

# Rendering a submission (formgrader, generate_feedback) sanitises again, whatever the autograded
# notebook holds. SanitizeUntrustedHTML in their HTML exporter: Markdown cells (nbgrader's formgrade
# and feedback templates render them unsanitised even with sanitize_html), attachments, outputs,
# metadata. sanitize_html: nbconvert bleaches text/html and text/markdown outputs and writes no
# application/javascript or widget scripts.
# MarkdownMathToMathML then writes the formulas of Markdown cells as MathML, which browsers draw
# with no script and no network (after the sanitiser, which would show that MathML as text).
c.HTMLExporter.preprocessors = [SanitizeUntrustedHTML, MarkdownMathToMathML]
c.HTMLExporter.sanitize_html = True
# Templates: generate_feedback uses the template "feedback", the formgrader "formgrade". Our folders
# of the same names come first (both apps take this setting over their own; feedback/index.html.j2 is
# the course's own page) and put offline_page between them and nbconvert's classic: its mathjax.html.j2
# replaces the macro that loads MathJax from a CDN with the page's styles (MathML, output lines that
# wrap). nbgrader's folder stays second.
NBGRADER_TEMPLATES = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates")
c.HTMLExporter.extra_template_basedirs = [
    os.path.join(os.path.dirname(utils.grading.__file__), "templates"),
    NBGRADER_TEMPLATES,
]
# The formgrader's page is nbgrader's (reached as 'formgrade/index.html.j2' from this path) with, above each
# manually graded cell's grading box, the rubric and model answer of the course's source notebook (graders
# only: utils/grading/rubric.py; the feedback template never calls the filter, and it refuses feedback pages).
c.HTMLExporter.extra_template_paths = [NBGRADER_TEMPLATES]
c.HTMLExporter.filters = {"rubric_for_graders": RubricForGraders(ROOT)}
# The feedback page (templates/feedback, the course's own) reads a grade still to be given by hand as
# "pending", totals "x / y, plus z points pending", and carries the fingerprint of the grades it was made
# from, for `python -m utils.instructor.feedback ASSIGNMENT` (regenerates the pages whose grades changed).
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, FeedbackGrades]

# Loop-based student code (the deformable convolution in nested Python loops) takes seconds
# per test cell; a runaway cell is interrupted after this many seconds.
c.SandboxedExecute.timeout = 180
c.SandboxedExecute.interrupt_on_timeout = True
c.SandboxedExecute.notebook_time_limit = 1800    # wall-clock seconds per notebook, all cells together
c.SandboxedExecute.cpu_time_limit = 900          # CPU seconds per notebook
# Budgets of a kernel as a whole (all its processes; cgroups where the machine allows, see README):
c.SandboxedExecute.memory_limit_mb = 6144        # memory, its /tmp, /dev/shm and folder files included
c.SandboxedExecute.max_processes = 256           # processes and threads at once
c.SandboxedExecute.disk_limit_mb = 256           # what it may hold in its working folder
c.SandboxedExecute.file_count_limit = 2000       # files and folders in its working folder
c.SandboxedExecute.tmp_size_mb = 512             # its /tmp, and its /dev/shm
c.SandboxedExecute.cell_output_limit_kb = 512    # output kept per cell
# Notebooks graded "from scratch": these libraries, and the course's own NumPy reference of the
# notebook (complete answers with their mistake switches off), cannot be imported by the grading kernel.
c.SandboxedExecute.from_scratch = {
    "deformable_conv/deformable_conv": ["torch", "torchvision", "utils.deformable_conv.computations"],
    "cnn/cnn_layers": ["torch", "torchvision", "utils.cnn.layers.computations"],
}

# Unreadable (invalid JSON) and renamed notebooks are graded with a note instead of dropped.
nbgrader_patches.install()
