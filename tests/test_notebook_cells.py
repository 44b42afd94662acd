"""Demo and figure cells wait for the answers they use; every notebook ends with its progress overview.

A locked code cell that is not a test and uses a name defined in a solution cell (directly, or through
state that an earlier demo cell made from answers) must run that code under ``if ready(...):`` naming
every such answer, so that a student who has not written it yet sees one line instead of a traceback.
The cells are read with ``ast``; no notebook is executed.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import linecache
from pathlib import Path

import pytest

from utils import ready
from utils.notebook.ready import section_of

ROOT = Path(__file__).resolve().parents[1]
SOURCE_NOTEBOOKS = sorted((ROOT / "source").glob("*/*.ipynb"))
NOT_RUN = "# Not run by the autograder (nothing graded depends on this cell)."
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
NEW_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
              ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _meta(cell: dict) -> dict:
    return cell["metadata"].get("nbgrader", {})


def _parse(source: str) -> ast.Module:
    # IPython magics and shell lines are not Python
    return ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))


def _top_level_names(tree: ast.AST) -> set[str]:
    """Names a cell leaves in the kernel: assignments, loop targets, definitions, imports (not locals)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        if isinstance(node, NEW_SCOPES):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _bound(node: ast.AST) -> set[str]:
    """Every name the statement binds itself, locals and arguments included."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    names |= {n.arg for n in ast.walk(node) if isinstance(n, ast.arg)}
    names |= {n.name for n in ast.walk(node) if isinstance(n, DEFINITIONS)}
    names |= {(a.asname or a.name).split(".")[0] for n in ast.walk(node)
              if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    return names


def _loaded(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _ready_arguments(statement: ast.stmt) -> set[str] | None:
    """The names of ``if ready("a", "b"):``; None for any other statement."""
    if isinstance(statement, ast.If) and isinstance(statement.test, ast.Call) \
            and isinstance(statement.test.func, ast.Name) and statement.test.func.id == "ready":
        return {a.value for a in statement.test.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return None


def unguarded_answers(cells: list[dict]) -> list[str]:
    """One message per locked non-test code cell statement that uses answers without ``if ready(...)``.

    ``made_from[name]`` holds the answers a kernel name was made from: a function whose body calls an
    answer, or a value assigned inside ``if ready(...)``. Using it needs the same answers.
    """
    answers: set[str] = set()
    for cell in cells:
        if cell["cell_type"] == "code" and _meta(cell).get("solution"):
            answers |= _top_level_names(_parse(_source(cell)))

    problems = []
    made_from: dict[str, set[str]] = {}
    for cell in cells:
        meta = _meta(cell)
        if cell["cell_type"] != "code" or meta.get("solution") or meta.get("grade"):
            continue
        for statement in _parse(_source(cell)).body:
            outside = _loaded(statement) - _bound(statement)
            needs = (outside & answers).union(*(made_from.get(name, set()) for name in outside))
            guarded_by = _ready_arguments(statement)
            where = f"cell {meta.get('grade_id')!r}, line {statement.lineno}"
            if needs and not isinstance(statement, DEFINITIONS):
                if guarded_by is None:
                    problems.append(f"{where} uses {sorted(needs)} outside `if ready(...)`")
                elif needs - guarded_by:
                    problems.append(f"{where}: `ready(...)` does not name {sorted(needs - guarded_by)}")
            made = needs | (guarded_by or set())
            for name in _top_level_names(statement):
                if made:
                    made_from[name] = made
                else:
                    made_from.pop(name, None)
    return problems


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.stem)
def test_demo_cells_wait_for_the_answers_they_use(path):
    problems = unguarded_answers(_cells(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def _cell(source: str, *, solution: bool = False, grade: bool = False, gid: str = "c") -> dict:
    return {"cell_type": "code", "source": source,
            "metadata": {"nbgrader": {"solution": solution, "grade": grade, "locked": not solution, "grade_id": gid}}}


def test_the_rule_finds_direct_and_indirect_uses():
    answer = _cell("def f(x):\n    raise NotImplementedError()", solution=True)
    test = _cell("check_f(f)", grade=True)
    assert unguarded_answers([answer, test]) == []
    assert unguarded_answers([answer, _cell("print(f(1))")]) == ["cell 'c', line 1 uses ['f'] outside `if ready(...)`"]
    assert unguarded_answers([answer, _cell('if ready("g"):\n    print(f(1))')]) == \
        ["cell 'c', line 1: `ready(...)` does not name ['f']"]
    # state made under ready("f") carries f to the next cell; state made without answers does not
    made = _cell('table = {1: 2}\nif ready("f"):\n    y = f(1)\n\ndef twice():\n    return 2 * f(1)', gid="made")
    assert unguarded_answers([answer, made, _cell("print(table)", gid="uses")]) == []
    assert unguarded_answers([answer, made, _cell("print(y)", gid="uses")]) == \
        ["cell 'uses', line 1 uses ['f'] outside `if ready(...)`"]
    assert unguarded_answers([answer, made, _cell("print(twice())", gid="uses")]) == \
        ["cell 'uses', line 1 uses ['f'] outside `if ready(...)`"]
    # a name bound again without answers is clean again, a loop variable included
    assert unguarded_answers([answer, made, _cell("y = 3\nprint(y)\nfor y in range(2):\n    print(y)")]) == []


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_the_progress_overview(path):
    cells = _cells(path)
    intro, last = cells[-2], cells[-1]
    assert intro["cell_type"] == "markdown" and _source(intro).startswith("## Your progress\n")
    assert last["cell_type"] == "code" and _source(last) == NOT_RUN + "\nprogress()"
    meta = _meta(last)
    assert meta["grade_id"] == "progress" and meta["locked"] and not meta["grade"] and not meta["solution"]
    imports = next(_source(c) for c in cells if _meta(c).get("grade_id") == "imports")
    imported = {a.name for n in ast.walk(_parse(imports)) if isinstance(n, ast.ImportFrom) and n.module == "utils"
                for a in n.names}
    assert {"progress", "ready"} <= imported


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.stem)
def test_hand_graded_answers_say_their_points(path):
    cells = _cells(path)
    for index, cell in enumerate(cells):
        meta = _meta(cell)
        if cell["cell_type"] == "markdown" and meta.get("solution") and meta.get("grade"):
            points = meta["points"]
            heading = "".join(_source(c) for c in cells[max(0, index - 2):index])
            label = f"({points:g} point{'s' if points != 1 else ''}, graded by hand)"
            assert label in heading, f"{path.name}: the question before {meta['grade_id']!r} should say {label}"


def _run_cell(namespace: dict, source: str, filename: str) -> None:
    """Run ``source`` as a notebook cell would: its text stays readable through ``linecache``."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)


def _release_cell(assignment: str, notebook: str, grade_id: str) -> str:
    cells = _cells(ROOT / "release" / assignment / f"{notebook}.ipynb")
    return next(_source(c) for c in cells if _meta(c).get("grade_id") == grade_id)


def _ask(namespace: dict, *names: str) -> tuple[bool, str]:
    namespace["ready"] = ready
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _run_cell(namespace, f"answer = ready{names!r}", "<demo cell>")
    return namespace["answer"], out.getvalue()


def test_ready_waits_for_the_release_stub_of_vit():
    from collections import OrderedDict

    import torch
    import torch.nn as nn

    importlib.import_module("utils.vit")                      # the notebook's imports load the exercise's module
    namespace = {"torch": torch, "nn": nn, "OrderedDict": OrderedDict}
    _run_cell(namespace, _release_cell("vit", "vit", "ViT"), "<release vit: ViT>")
    answer, printed = _ask(namespace, "ViT")
    section = section_of("ViT")
    assert answer is False
    assert section
    assert printed == f"⏸ Finish `ViT` first (section “{section}” above): this cell uses it.\n"


def test_ready_names_the_answers_still_missing_in_a_numpy_notebook():
    import numpy as np

    importlib.import_module("utils.deformable_conv")
    namespace = {"np": np}
    _run_cell(namespace, _release_cell("deformable_conv", "deformable_conv", "bilinear_interpolate"),
              "<release deformable: bilinear_interpolate>")
    answer, printed = _ask(namespace, "bilinear_interpolate", "deform_conv2d")
    assert answer is False
    assert printed.count("\n") == 1 and "`deform_conv2d`" in printed and printed.startswith("⏸ Run the cell")
    # a written answer is ready
    _run_cell(namespace, "def bilinear_interpolate(a_l, q_y, q_x):\n    return 0.0\n", "<answer>")
    assert _ask(namespace, "bilinear_interpolate") == (True, "")
