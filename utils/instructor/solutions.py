"""The instructor's solutions in a source notebook: the one reader of the ``### BEGIN/END SOLUTION`` markers.

A solution cell holds the student's template with the instructor's answer between marker lines;
nbgrader's ``generate_assignment`` replaces that region with a stub. Here:

- :func:`solution_code`: a cell's code as the instructor runs it (the marker lines removed);
- :func:`solution_region`: what a student writes (the text between the markers);
- :func:`solution_cells`: grade_id -> instructor answer, for every solution cell of a notebook;
- :class:`NotebookSolutions`: a notebook's solution code cells, run (optionally after a student's
  edits) in a namespace, for the tests and the benchmarks.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import nbformat

from utils.grading.rubric import MARK_SCHEME

SOLUTION_BLOCK = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION[ \t]*\n?",
                            re.DOTALL | re.MULTILINE)


def solution_code(cell_source: str) -> str:
    """The instructor's answer: the cell with the BEGIN/END SOLUTION marker lines and the graders' mark
    scheme (rubric) removed."""
    return MARK_SCHEME.sub("", SOLUTION_BLOCK.sub(lambda m: m.group(1), cell_source))


def solution_region(cell_source: str) -> str:
    """What a student writes: the text between the BEGIN/END SOLUTION markers of a cell, without the
    graders' mark scheme."""
    return MARK_SCHEME.sub("", "".join(SOLUTION_BLOCK.findall(cell_source)))


def solution_cells(source_notebook: Path) -> dict[str, str]:
    """grade_id -> instructor answer (code or written), for every solution cell of a source notebook, in order."""
    nb = nbformat.read(source_notebook, as_version=4)
    return {meta["grade_id"]: solution_code(cell.source) for cell, meta in _nbgrader_cells(nb)
            if meta.get("solution")}


def _nbgrader_cells(nb) -> list[tuple[nbformat.NotebookNode, dict]]:
    return [(cell, cell.metadata["nbgrader"]) for cell in nb.cells if "nbgrader" in cell.metadata]


class NotebookSolutions:
    """The solution *code* cells of a source notebook, read once.

    - ``sources``: grade_id -> the cell as the notebook holds it, BEGIN/END SOLUTION markers included;
    - ``cells``: grade_id -> the instructor's code (:func:`solution_code`);
    - ``edit(name, (old, new), ...)``: that code after a student's edits, each ``old`` found in the solution
      region (with ``once=True``, as a sample mistake must be: exactly once in the cell, inside the region);
    - ``build(name)`` / ``mutate(name, (old, new), ...)``: the object a cell defines, run in a copy of ``base``;
    - ``run()`` / ``run(apply(sample))``: the namespace after all the cells, e.g. with a sample mistake applied.

    With ``imports=True`` the base namespace also holds what the notebook's ``imports`` cell defines.
    """

    def __init__(self, path: Path, base: Mapping | None = None, *, imports: bool = False):
        self.path = Path(path)
        nb = nbformat.read(self.path, as_version=4)
        code_cells = [(meta, cell.source) for cell, meta in _nbgrader_cells(nb) if cell.cell_type == "code"]
        self.sources = {meta["grade_id"]: source for meta, source in code_cells if meta.get("solution")}
        self.cells = {name: solution_code(source) for name, source in self.sources.items()}
        self.base = dict(base or {})
        if imports:
            self._exec("imports", next(source for meta, source in code_cells if meta.get("grade_id") == "imports"),
                       self.base)

    def _exec(self, name: str, code: str, namespace: dict) -> dict:
        exec(compile(code, f"<{self.path.name}:{name}>", "exec"), namespace)   # the course's own notebook
        return namespace

    def edit(self, name: str, *pairs: tuple[str, str], once: bool = False) -> str:
        """The instructor code of cell ``name`` with each ``old`` replaced by ``new``, one pair after the other."""
        source = self.sources[name]
        for old, new in pairs:
            region = solution_region(source)
            if once:
                assert source.count(old) == 1 and region.count(old) == 1, \
                    f"{old!r} must occur exactly once in {name}, inside its solution"
            else:
                assert old in region, f"{old!r} not in the solution of {name}"
            source = source.replace(old, new)
        return solution_code(source)

    def build(self, name: str, code: str | None = None, namespace: Mapping | None = None):
        """What cell ``name`` (or ``code`` in its place) defines as ``name``, run in a copy of ``namespace``
        (default: the base namespace)."""
        run_in = dict(self.base if namespace is None else namespace)
        return self._exec(name, self.cells[name] if code is None else code, run_in)[name]

    def mutate(self, name: str, *pairs: tuple[str, str], once: bool = False, namespace: Mapping | None = None):
        """``build`` of the cell after a student's edits (see ``edit``)."""
        return self.build(name, self.edit(name, *pairs, once=once), namespace)

    def apply(self, sample) -> dict[str, str]:
        """The cells with a sample mistake (``utils.instructor.samples``) applied to its cell."""
        return {**self.cells, sample.cell: self.edit(sample.cell, *sample.replace, once=True)}

    def run(self, cells: Mapping[str, str] | None = None, *, unanswered_ok: bool = False) -> dict:
        """The namespace after running ``cells`` (default: every solution cell), in order, in a copy of base.

        With ``unanswered_ok`` (a release notebook's stubs), a cell that raises NotImplementedError keeps
        what it defined before the raise (e.g. a dict of answers left as None) and the next cell runs.
        """
        namespace = dict(self.base)
        for name, code in (self.cells if cells is None else cells).items():
            try:
                self._exec(name, code, namespace)
            except NotImplementedError:
                if not unanswered_ok:
                    raise
        return namespace
