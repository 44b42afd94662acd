"""The instructor's solutions of a source notebook, run for the checker tests.

``NotebookSolutions(path, base)`` reads the notebook's solution *code* cells once (the written answers in
markdown solution cells are left out):

- ``sources``: grade_id -> the cell as the notebook holds it, ``### BEGIN/END SOLUTION`` markers included;
- ``cells``: grade_id -> the instructor's code, by :func:`utils.instructor.course.solution_code`;
- ``edit(name, (old, new), ...)``: that code after a student's edits, each ``old`` found in the solution
  region (with ``once=True``, as a sample mistake must be: exactly once in the cell, inside the region);
- ``build(name)`` / ``mutate(name, (old, new), ...)``: the object a cell defines, run in a copy of ``base``;
- ``run()`` / ``run(apply(sample))``: the namespace after all the cells, e.g. with a sample mistake applied.

With ``imports=True`` the base namespace also holds what the notebook's ``imports`` cell defines.
Imported as ``from notebook_solutions import NotebookSolutions`` (pytest puts tests/ on sys.path).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import nbformat

from utils.instructor.course import _SOLUTION_BLOCK, solution_code


def solution_region(source: str) -> str:
    """What a student writes: the text between the BEGIN/END SOLUTION markers of a cell."""
    return "".join(_SOLUTION_BLOCK.findall(source))


class NotebookSolutions:
    def __init__(self, path: Path, base: Mapping | None = None, *, imports: bool = False):
        self.path = Path(path)
        nb = nbformat.read(self.path, as_version=4)
        graded = [(c.metadata["nbgrader"], c.source) for c in nb.cells
                  if c.cell_type == "code" and "nbgrader" in c.metadata]
        self.sources = {meta["grade_id"]: source for meta, source in graded if meta.get("solution")}
        self.cells = {name: solution_code(source) for name, source in self.sources.items()}
        self.base = dict(base or {})
        if imports:
            self._exec("imports", next(source for meta, source in graded if meta.get("grade_id") == "imports"),
                       self.base)

    def _exec(self, name: str, code: str, namespace: dict) -> dict:
        exec(compile(code, f"<{self.path.name}:{name}>", "exec"), namespace)   # noqa: S102 - our own notebook
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

    def run(self, cells: Mapping[str, str] | None = None) -> dict:
        """The namespace after running ``cells`` (default: every solution cell), in order, in a copy of base."""
        namespace = dict(self.base)
        for name, code in (self.cells if cells is None else cells).items():
            self._exec(name, code, namespace)
        return namespace
