"""``progress()``: every exercise of the notebook with its points and its current state.

The last cell of each notebook calls it; a student may call it at any point. It reads the
notebook's saved file for the graded cells and their points, reruns each check's visible cases on
the answers defined in the kernel, and shows one table:

    Exercise                         Points  State
    Exercise 1: patchify                  1  ✓ passes
    Exercise 2: patch_embed_linear        1  ✗ case 2 of 4 — Likely cause: ...
    Exercise 3: patch_embed_conv          1  … not implemented yet
    Question (graded by hand)             2  ✎ not answered yet

Outside a notebook frontend (Validate, autograde, nbval) it says so in one line and runs nothing,
so validating a notebook does not run every check twice.
"""
from __future__ import annotations

import html
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from utils.checks.feedback import COLOURS, CheckFailure, NotImplementedYet, in_notebook_frontend, quiet
from utils.checks.registry import check_function, checks_in

# A notebook is read only up to this size: it is the student's own file, but not necessarily a sane one.
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
ANSWER_STUB = "YOUR ANSWER HERE"
CODE_STUB = "raise NotImplementedError()"


@dataclass
class Row:
    title: str          # "Exercise 2 (1 point): patch_embed_linear"
    points: float
    state: str          # "pass", "fail", "todo", "manual", "missing"
    detail: str = ""    # the one-line cause


@dataclass
class Progress:
    """What :func:`progress` shows: plain text in a terminal, a table in JupyterLab."""

    notebook: str
    rows: list[Row]

    @property
    def earned(self) -> float:
        return sum(row.points for row in self.rows if row.state == "pass")

    @property
    def auto_points(self) -> float:
        return sum(row.points for row in self.rows if row.state != "manual")

    @property
    def manual_points(self) -> float:
        return sum(row.points for row in self.rows if row.state == "manual")

    def summary(self) -> str:
        passed = sum(row.state == "pass" for row in self.rows)
        checked = sum(row.state != "manual" for row in self.rows)
        text = (f"{passed} of {checked} checked exercises pass their visible cases: "
                f"{_points(self.earned)} of {_points(self.auto_points)} points")
        if self.manual_points:
            text += f"; {_points(self.manual_points)} more for written answers, graded by hand"
        return text + ". Grading adds hidden cases."

    def text(self) -> str:
        width = max([len(row.title) for row in self.rows] + [8])
        lines = [f"Progress in {self.notebook}", f"{'Exercise':<{width}}  Points  State"]
        for row in self.rows:
            lines.append(f"{row.title:<{width}}  {_points(row.points):>6}  {_SYMBOL[row.state]} {_state_text(row)}")
        lines.append(self.summary())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        cells = "".join(
            f'<tr><td style="{_TD}">{html.escape(row.title)}</td>'
            f'<td style="{_TD};text-align:right">{_points(row.points)}</td>'
            f'<td style="{_TD};color:{_STATE_COLOUR[row.state]}"><b>{_SYMBOL[row.state]}</b> '
            f"{html.escape(_state_text(row))}</td></tr>"
            for row in self.rows)
        return (f'<div class="course-progress" style="font-family:var(--jp-ui-font-family,sans-serif);'
                f'white-space:normal;word-break:normal;overflow-wrap:normal">'
                f"<div style='font-weight:bold;margin-bottom:4px'>Progress in {html.escape(self.notebook)}</div>"
                f'<table style="border-collapse:collapse"><thead><tr>'
                f'<th style="{_TH}">Exercise</th><th style="{_TH};text-align:right">Points</th>'
                f'<th style="{_TH}">State</th></tr></thead><tbody>{cells}</tbody></table>'
                f"<div style='margin-top:4px'>{html.escape(self.summary())}</div></div>")


_SYMBOL = {"pass": "✓", "fail": "✗", "todo": "…", "manual": "✎", "missing": "?"}
_STATE_COLOUR = {"pass": COLOURS["pass"], "fail": COLOURS["fail"], "todo": COLOURS["todo"],
                 "manual": "inherit", "missing": COLOURS["todo"]}
_TD = "text-align:left;vertical-align:top;padding:2px 10px;border-top:1px solid #ddd;white-space:normal"
_TH = "text-align:left;padding:2px 10px;border-bottom:2px solid #999"


def _points(value: float) -> str:
    return f"{value:g}"


def _state_text(row: Row) -> str:
    words = {"pass": "passes", "fail": "fails", "todo": "not implemented yet", "manual": "",
             "missing": "not run yet"}[row.state]
    return f"{words}: {row.detail}" if words and row.detail else (words or row.detail)


def progress(notebook: str | os.PathLike | None = None) -> Progress | None:
    """Rerun every check of ``notebook`` (default: the one this kernel belongs to) and return the table.

    Outside a notebook frontend it prints one line and returns None, unless ``notebook`` is given.
    """
    namespace = sys._getframe(1).f_globals
    if notebook is None:
        if not in_notebook_frontend():
            print("progress(): the overview is shown in JupyterLab; nothing is rerun here.")
            return None
        notebook = _this_notebook(namespace)
        if notebook is None:
            print("progress(): cannot tell which notebook this kernel runs; pass its path, "
                  "e.g. progress('vit.ipynb').")
            return None
    path = Path(notebook)
    return Progress(path.name, [_row(cell, title, namespace) for cell, title in graded_cells(path)])


def _this_notebook(namespace: dict) -> Path | None:
    """The notebook file of this kernel's session (a path relative to the server's root, or absolute)."""
    session = namespace.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
    for candidate in (Path(session), Path.cwd() / Path(session).name):
        if session and candidate.suffix == ".ipynb" and candidate.is_file():
            return candidate
    return None


def graded_cells(path: Path) -> list[tuple[dict, str]]:
    """``(cell, title)`` for each graded cell of the saved notebook, the title from the heading above it."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{path.name} is {path.stat().st_size / 2**20:.0f} MiB; "
                         f"progress() reads notebooks up to {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    found, heading = [], ""
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "markdown" and not meta.get("solution"):   # not a student's answer
            for line in _source(cell).splitlines():
                if line.startswith("#"):
                    heading = _POINTS_NOTE.sub("", line.lstrip("#").replace("`", "")).strip()
        if meta.get("grade"):
            found.append((cell, heading or meta.get("grade_id", "")))
    return found


# "(2 points)", "(2 points, graded by hand)": the table has a column for points
_POINTS_NOTE = re.compile(r"\s*\([^()]*\bpoints?\b[^()]*\)")


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _row(cell: dict, title: str, namespace: dict) -> Row:
    meta = cell["metadata"]["nbgrader"]
    points = float(meta.get("points", 0) or 0)
    source = _source(cell)
    if meta.get("solution"):                    # answered in the cell itself: graded by hand
        answered = ANSWER_STUB not in source and CODE_STUB not in source and source.strip()
        return Row(title, points, "manual", "answered (graded by hand)" if answered
                   else "not answered yet (graded by hand)")
    checks = checks_in(source)
    if not checks:
        return Row(title, points, "manual", "graded by hand")
    for check_name, argument in checks:
        row = _run(title, points, check_name, argument, namespace)
        if row.state != "pass":
            return row
    return row


def _run(title: str, points: float, check_name: str, argument: str, namespace: dict) -> Row:
    try:
        answer = eval(argument, namespace)      # the test cell's own argument, in the student's kernel
    except NameError:
        return Row(title, points, "missing", f"run the cell that defines {argument} first")
    check = check_function(check_name)
    try:
        with quiet():
            check(answer)
    except NotImplementedYet:
        return Row(title, points, "todo")
    except CheckFailure as failure:
        return Row(title, points, "fail", one_line_cause(failure.report))
    except Exception as error:                  # a crash of the check itself: say so, do not hide it
        return Row(title, points, "fail", f"the check raised {type(error).__name__}: {error}")
    return Row(title, points, "pass")


def one_line_cause(report) -> str:
    """The case and the most telling line of a failure report."""
    case = report.case.split(":", 1)[0] if report.case else ""
    cause = (f"likely {report.likely_cause}" if report.likely_cause
             else next(iter(report.pattern + report.details), report.headline))
    return f"{case.lower()}: {cause}" if case else cause
