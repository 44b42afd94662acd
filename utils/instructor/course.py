"""Course-level operations shared by the demo, the release script and the tests.

Everything runs nbgrader through its command line, exactly as an instructor does,
from a course root that holds nbgrader_config.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from .samples import SampleMistake, mistakes_for
from .solutions import solution_cells as solution_cells  # the solution reader's home; re-exported here
from .solutions import solution_code as solution_code

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT_ORDER = ["deformable_conv", "cnn", "rnn", "attention", "vit"]


def assignments(root: Path = REPO_ROOT) -> list[str]:
    """Assignments that have a source folder, in syllabus order."""
    present = [p.name for p in (root / "source").iterdir() if p.is_dir() and list(p.glob("*.ipynb"))]
    return [a for a in ASSIGNMENT_ORDER if a in present] + sorted(set(present) - set(ASSIGNMENT_ORDER))


def notebooks(assignment: str, root: Path = REPO_ROOT) -> list[Path]:
    return sorted((root / "source" / assignment).glob("*.ipynb"))


def nbgrader(*args: str, root: Path = REPO_ROOT, check: bool = True, quiet: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in the course root with this environment's executables on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=quiet, timeout=timeout)
    if check and proc.returncode != 0:
        tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).splitlines()[-30:])
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{tail}")
    return proc


def generate_release(root: Path = REPO_ROOT, names: list[str] | None = None, db_url: str | None = None) -> None:
    """``nbgrader generate_assignment`` for every assignment: source/ → release/ (into ``db_url``'s gradebook
    if given, else the course's)."""
    extra = [f"--CourseDirectory.db_url={db_url}"] if db_url else []
    for name in names or assignments(root):
        nbgrader("generate_assignment", name, "--force", *extra, root=root)


def nbgrader_metadata(grade_id: str, solution: bool = False, locked: bool = False,
                      points: float | None = None) -> dict:
    """A cell's ``metadata`` as nbgrader writes it: an answer (``solution``), a locked cell, or a graded one
    (``points``)."""
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def fill_solutions(release_nb, answers: dict[str, str]):
    """A copy of a release notebook whose solution cells hold ``answers`` (grade_id -> source)."""
    nb = nbformat.from_dict(json.loads(json.dumps(release_nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and gid in answers:
            cell.source = answers[gid]
    return nb


def apply_mistake(answers: dict[str, str], mistake: SampleMistake) -> dict[str, str]:
    if mistake.cell not in answers:
        raise KeyError(f"sample {mistake.student}: no solution cell {mistake.cell!r} in {mistake.notebook}.ipynb")
    code = answers[mistake.cell]
    for old, new in mistake.replace:
        if code.count(old) != 1:
            raise ValueError(f"sample {mistake.student}: {old!r} occurs {code.count(old)} times in cell "
                             f"{mistake.cell!r}, expected exactly once")
        code = code.replace(old, new)
    return {**answers, mistake.cell: code}


def sample_mistakes(assignment: str, per_notebook: int | None = None) -> list[SampleMistake]:
    """The assignment's sample mistakes; with ``per_notebook``, only the first ones of each notebook."""
    chosen, count = [], {}
    for mistake in mistakes_for(assignment):
        count[mistake.notebook] = count.get(mistake.notebook, 0) + 1
        if per_notebook is None or count[mistake.notebook] <= per_notebook:
            chosen.append(mistake)
    return chosen


def sample_students(assignment: str, per_notebook: int | None = None) -> list[str]:
    return ["solution", "untouched"] + [m.student for m in sample_mistakes(assignment, per_notebook)]


def build_submissions(assignment: str, root: Path = REPO_ROOT,
                      mistakes_per_notebook: int | None = None) -> dict[str, SampleMistake | None]:
    """Write submitted/<student>/<assignment>/ for the solution, the untouched release and each mistake.

    Returns student id -> the mistake it carries (None for solution and untouched).
    """
    built: dict[str, SampleMistake | None] = {}
    mistakes = sample_mistakes(assignment, mistakes_per_notebook)
    for student in sample_students(assignment, mistakes_per_notebook):
        folder = root / "submitted" / student / assignment
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        mistake = next((m for m in mistakes if m.student == student), None)
        for source_nb in notebooks(assignment, root):
            release_nb = nbformat.read(root / "release" / assignment / source_nb.name, as_version=4)
            if student == "untouched":
                nb = release_nb
            else:
                answers = solution_cells(source_nb)
                if mistake is not None and mistake.notebook == source_nb.stem:
                    answers = apply_mistake(answers, mistake)
                nb = fill_solutions(release_nb, answers)
            nbformat.write(nb, folder / source_nb.name)
        built[student] = mistake
    return built
