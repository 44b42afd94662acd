"""List the students flagged for review in one assignment, with the evidence.

    python -m utils.instructor.review_flags ASSIGNMENT [--root DIR]

While grading, the trusted grader reads each submitted notebook's code and flags lines that can get
around the from-scratch rule or read the grader's files (:mod:`utils.grading.review_flags`); the
flags are kept in the autograded notebook's metadata. This prints them as a table, one line per
flag: student, notebook, where (cell and line), rule, and the line itself. Flags are evidence for
a person to judge, not grades.

The autograded folders were written by grading kernels' notebooks, so they are read defensively:
links are never followed, only regular files up to :data:`MAX_NOTEBOOK_BYTES` are opened, and the
student's text is printed with control characters escaped (no terminal escape sequences).
"""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

from utils.grading.review_flags import RULES, ReviewFlag, stored_flags

MAX_NOTEBOOK_BYTES = 64 * 2**20   # larger autograded notebooks are reported, not read


def _printable(text: str) -> str:
    """``text`` with every control or non-printable character escaped (\\x1b, \\u202e, ...)."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError:
        return []


def _read_notebook(path: Path) -> tuple[dict | None, str]:
    """The notebook's JSON, or ``(None, why not)``; a link or a special file is never opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return None, f"not read ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"
        if info.st_size > MAX_NOTEBOOK_BYTES:
            return None, f"{info.st_size:,} bytes (more than {MAX_NOTEBOOK_BYTES:,}): not read"
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_NOTEBOOK_BYTES + 1)
    finally:
        os.close(fd)
    try:
        nb = json.loads(data)
    except ValueError:
        return None, "not valid JSON"
    return (nb, "") if isinstance(nb, dict) else (None, "not a notebook")


def collect(root: Path, assignment: str) -> tuple[list[ReviewFlag], list[str]]:
    """Every flag of ``assignment`` under ``root/autograded``, and a note for each notebook not read."""
    flags, notes = [], []
    for student in _entries(Path(root) / "autograded"):
        if not student.is_dir(follow_symlinks=False):
            continue
        folder = Path(student.path) / assignment
        if folder.is_symlink() or not folder.is_dir():
            continue
        for entry in _entries(folder):
            if not entry.name.endswith(".ipynb"):
                continue
            if not entry.is_file(follow_symlinks=False):
                notes.append(f"{_printable(student.name)}/{_printable(entry.name)}: a link or not a file, not read")
                continue
            nb, why = _read_notebook(Path(entry.path))
            if nb is None:
                notes.append(f"{_printable(student.name)}/{_printable(entry.name)}: {why}")
                continue
            # who and which notebook come from where the file is, never from what it says
            flags += [replace(flag, student=student.name, notebook=f"{assignment}/{entry.name[:-len('.ipynb')]}")
                      for flag in stored_flags(nb.get("metadata", {}))]
    return flags, notes


def table(flags: list[ReviewFlag]) -> str:
    """One line per flag, columns aligned: student, notebook, where, rule, evidence."""
    rows = [("student", "notebook", "where", "rule", "evidence")]
    for flag in sorted(flags, key=lambda f: (f.student, f.notebook, f.cell_index, f.line, f.rule)):
        where = f"{flag.cell}:{flag.line}" if flag.line else flag.cell
        if flag.function:
            where += f" ({flag.function})"
        rows.append(tuple(_printable(value) for value in (flag.student, flag.notebook, where, flag.rule,
                                                          flag.evidence)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row[:4], widths, strict=True))
                     + "  " + row[4] for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.review_flags", description=__doc__.split("\n")[0])
    parser.add_argument("assignment", help="the assignment, as in autograded/<student>/<assignment>/")
    parser.add_argument("--root", default=".", help="the course root (holds autograded/); default: this folder")
    args = parser.parse_args(argv)
    flags, notes = collect(Path(args.root), args.assignment)
    students = sorted({flag.student for flag in flags})
    if flags:
        print(table(flags))
        print()
        rules = sorted({flag.rule for flag in flags})
        print("Rules: " + "; ".join(f"{rule}: {RULES.get(rule, '?')}" for rule in rules))
    print(f"{len(students)} student(s) flagged for review in {_printable(args.assignment)}, {len(flags)} flag(s)"
          + (": " + ", ".join(_printable(s) for s in students) if students else "."))
    for note in notes:
        print(f"Note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
