"""The rubric and model answer of a manually graded cell, shown to graders in the formgrader only.

Where they live: in the course's source notebook (``source/<assignment>/<notebook>.ipynb``, trusted),
inside the cell's solution region, the rubric in a mark-scheme block::

    ### BEGIN SOLUTION
    The model answer (Markdown) ...
    ### BEGIN MARK SCHEME
    - 1 point: ...
    - 1 point: ...
    ### END MARK SCHEME
    ### END SOLUTION

``nbgrader generate_assignment`` replaces the whole solution region with the text stub
(``ClearSolutions``), the mark scheme with it, so the release never holds either. (nbgrader's own
``ClearMarkScheme`` only accepts mark schemes in task cells; ours are solution cells, whose
solution region is what hides them.) The autograded notebook is built from the student's
submission, so the feedback, rendered from it, never holds them either.

The formgrader's page (``templates/formgrade/index.html.j2``) calls :class:`RubricForGraders` as a
Jinja filter (``c.HTMLExporter.filters`` in nbgrader_config.py) above each manually graded cell's
grading box. The feedback template never calls it, and it returns nothing for a page rendered by
``generate_feedback`` (whose resources carry nbgrader's ``"nbgrader"`` entry), so a template
mistake cannot show a rubric to a student.
"""
from __future__ import annotations

import os
import re

import nbformat
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from utils.grading.preprocessors.markdown_math_to_mathml import MarkdownMathToMathML

_SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(?P<body>.*?)^[ \t]*### END SOLUTION[ \t]*$",
                       re.DOTALL | re.MULTILINE)
MARK_SCHEME = re.compile(r"^[ \t]*### BEGIN MARK SCHEME[ \t]*\n(?P<body>.*?)^[ \t]*### END MARK SCHEME[ \t]*\n?",
                          re.DOTALL | re.MULTILINE)


def rubric_and_model_answer(cell_source: str) -> tuple[str, str]:
    """(rubric, model answer) of a source cell, as Markdown; each "" where the cell has none.

    The rubric is the text of the mark-scheme block(s); the model answer is the solution region
    without them.
    """
    rubric = "\n".join(m["body"].strip() for m in MARK_SCHEME.finditer(cell_source))
    region = "\n".join(m["body"] for m in _SOLUTION.finditer(cell_source))
    return rubric.strip(), MARK_SCHEME.sub("", region).strip()


def source_rubrics(source_notebook: str) -> dict[str, tuple[str, str]]:
    """grade_id -> (rubric, model answer) for every manually graded cell of a source notebook.

    Manually graded: a solution cell that is also a grade cell (a written answer, a free-response
    code cell), or a task cell.
    """
    nb = nbformat.read(source_notebook, as_version=4)
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if (meta.get("solution") and meta.get("grade")) or meta.get("task"):
            found[meta["grade_id"]] = rubric_and_model_answer(cell.source)
    return found


class RubricForGraders:
    """Jinja filter ``cell | rubric_for_graders(resources)``: the HTML box shown above a grading box.

    ``course_root``: the course folder whose ``source/`` holds the instructor's notebooks. The
    formgrader's resources name the assignment and notebook (``assignment_id``, ``notebook_id``).
    Returns "" for a cell that is not manually graded, a cell the source notebook does not have, a
    source without rubric and model answer, and any page rendered for a student (resources with
    ``"nbgrader"``, which generate_feedback sets and the formgrader does not).
    """

    def __init__(self, course_root: str, source_directory: str = "source"):
        self.course_root = course_root
        self.source_directory = source_directory

    def source_notebook(self, assignment: str, notebook: str) -> str:
        return os.path.join(self.course_root, self.source_directory, assignment, f"{notebook}.ipynb")

    def __call__(self, cell, resources) -> str:
        if not resources or "nbgrader" in resources or "submission_id" not in resources:
            return ""
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not ((meta.get("solution") and meta.get("grade")) or meta.get("task")):
            return ""
        path = self.source_notebook(resources.get("assignment_id", ""), resources.get("notebook_id", ""))
        if not os.path.isfile(path):
            return ""
        rubric, model_answer = source_rubrics(path).get(meta.get("grade_id"), ("", ""))
        if not rubric and not model_answer:
            return ""
        parts = ['<div class="course-rubric">',
                 '<div class="course-rubric-title">Rubric (graders only)</div>']
        if rubric:
            parts.append(f'<div class="course-rubric-body rendered_html">{self.render(rubric)}</div>')
        if model_answer:
            parts.append('<div class="course-rubric-heading">Model answer</div>')
            parts.append(f'<div class="course-model-answer rendered_html">{self.render(model_answer)}</div>')
        parts.append("</div>")
        return "\n".join(parts)

    def render(self, markdown: str) -> str:
        """The instructor's Markdown as HTML, formulas as MathML like the rest of the page."""
        text, _, _ = MarkdownMathToMathML().convert_markdown(markdown)
        return markdown2html_mistune(text)

