"""No silent zeros: the preflight before a batch, and each submission's status after it.

A grading kernel that cannot import the checks, or that imports another copy of them, used to give
every student 0 ("this test did not run to the end") while ``nbgrader autograde`` exited 0. Here:

* the preflight (utils/grading/preflight.py) passes on the course, and from a copy of the course
  for a new term, whose own ``utils/`` the kernel then imports;
* it stops ``nbgrader autograde`` before any student, with both paths named, when the kernel
  imports another ``utils`` than the grader; and it names a library the kernel cannot import;
* the batch ends with a table (utils/grading/batch_report.py): a student whose kernel dies in every
  cell is FAILED, the others graded, and the exit status is 1.

One small course with the deformable_conv assignment (the fastest) serves every end-to-end test.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

import utils
from utils.grading import preflight
from utils.grading.batch_report import SILENT_ZERO, NotebookStatus, error_summary, format_table, grading_problem
from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.preprocessors import SandboxedExecute
from utils.instructor.course import REPO_ROOT, build_submissions, generate_release, nbgrader

ASSIGNMENT = NOTEBOOK = "deformable_conv"
FROM_SCRATCH = {f"{ASSIGNMENT}/{NOTEBOOK}": ["torch", "torchvision"]}
KILLER = "kills_kernel"
PACKAGE = Path(utils.__file__).resolve().parent


def new_course(root: Path) -> Path:
    """A course with the assignment released and three submissions: the solution, the release, a kernel killer."""
    shutil.copytree(REPO_ROOT / "source" / ASSIGNMENT, root / "source" / ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    generate_release(root, [ASSIGNMENT])
    build_submissions(ASSIGNMENT, root, 0)   # solution, untouched
    nb = nbformat.read(root / "submitted" / "solution" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os\nos._exit(3)"))   # every cell after it: not run
    (root / "submitted" / KILLER / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(nb, root / "submitted" / KILLER / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    return root


def copy_course(course: Path, target: Path, students: list[str]) -> Path:
    """The course's source, release, configuration, gradebook (no grades) and some submissions, elsewhere."""
    target.mkdir(parents=True)
    for name in ("source", "release"):
        shutil.copytree(course / name, target / name)
    for name in ("nbgrader_config.py", "gradebook.db"):
        shutil.copy2(course / name, target / name)
    for student in students:
        shutil.copytree(course / "submitted" / student, target / "submitted" / student)
    with Gradebook(sqlite_gradebook_url(target)) as gb:
        for student in [s.id for s in gb.students]:
            gb.remove_student(student)   # and its submissions and grades
    return target


def code_scores(root: Path) -> dict[str, float]:
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        return {s.student.id: float(s.code_score) for s in gb.assignment_submissions(ASSIGNMENT)}


def execute(**settings) -> SandboxedExecute:
    """SandboxedExecute as nbgrader_config.py configures it for this assignment."""
    return SandboxedExecute(config=Config({"SandboxedExecute": {"from_scratch": FROM_SCRATCH, **settings}}))


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return new_course(tmp_path_factory.mktemp("preflight") / "course")


@pytest.fixture(scope="module")
def batch(course):
    """``nbgrader autograde`` of the three submissions: (process, output)."""
    proc = nbgrader("autograde", ASSIGNMENT, "--force", root=course, check=False, timeout=900)
    return proc, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- the preflight itself


def test_preflight_passes_on_the_course_and_reports_what_the_kernel_imported(course):
    results = preflight.check_assignments(CourseDirectory(root=str(course)), [ASSIGNMENT], execute())
    assert [r.notebook for r in results] == [f"{ASSIGNMENT}/{NOTEBOOK}"]
    seen = results[0].modules
    assert Path(seen["utils"]["file"]).resolve() == PACKAGE / "__init__.py"
    assert Path(seen["utils.deformable_conv"]["file"]).resolve().is_relative_to(PACKAGE)
    assert {"utils.grading.in_kernel.recording", "utils.checks.registry", "ipykernel.kernelapp", "numpy"} <= set(seen)
    assert seen["numpy"]["version"]
    assert "torch" not in seen   # graded from scratch: not a library this kernel may import
    # the same notebook in the same sandbox is checked once per process
    again = preflight.check_assignments(CourseDirectory(root=str(course)), [ASSIGNMENT], execute())
    assert again[0] is results[0]


def test_preflight_names_a_library_the_kernel_cannot_import(tmp_path):
    source = REPO_ROOT / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    nb = nbformat.read(source, as_version=4)
    imports = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "imports")
    imports.source += "\nimport course_library_not_installed"
    (tmp_path / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(nb, tmp_path / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    with pytest.raises(preflight.PreflightError) as failed:
        preflight.check_assignments(CourseDirectory(root=str(tmp_path)), [ASSIGNMENT], execute())
    message = str(failed.value)
    assert "could not import course_library_not_installed (ModuleNotFoundError" in message
    assert "install it into the environment" in message and "no student was graded" in message


def test_a_kernel_without_the_check_package_is_explained():
    probe = preflight.Probe(notebook=f"{ASSIGNMENT}/{NOTEBOOK}", python="/env/bin/python",
                            modules=("utils", "numpy"), blocked=(), sandboxed=True)
    report = {"modules": {"utils": {"error": "ModuleNotFoundError: No module named 'utils'"},
                          "numpy": {"file": None}},
              "sys_path": ["", "/env/lib/python3.11"]}
    with pytest.raises(preflight.PreflightError) as failed:
        preflight.compare(probe, report)
    message = str(failed.value)
    assert "could not import utils (ModuleNotFoundError: No module named 'utils')" in message
    assert str(PACKAGE / "__init__.py") in message and "/env/lib/python3.11" in message
    assert "pip install -e" in message


def test_a_library_the_notebook_must_not_use_must_stay_blocked():
    probe = preflight.Probe(notebook=f"{ASSIGNMENT}/{NOTEBOOK}", python="/env/bin/python", modules=(),
                            blocked=("torch",), sandboxed=True)
    with pytest.raises(preflight.PreflightError, match="could import torch from /env/torch/__init__.py"):
        preflight.compare(probe, {"modules": {}, "blocked": {"torch": {"file": "/env/torch/__init__.py"}}})
    preflight.compare(probe, {"modules": {}, "blocked": {"torch": {"error": "ImportError: graded from scratch"}}})


# --------------------------------------------------------------------------- grading status


def _test_cell(*outputs):
    cell = nbformat.v4.new_code_cell("check_x(x)", outputs=list(outputs))
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": f"t{id(cell)}", "points": 1}
    return cell


def _error(ename, evalue, *traceback):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=list(traceback) or [evalue])


NOT_RUN = _error("CheckFailure", "this test did not run to the end, so no answer could be graded",
                 "✗ this test did not run to the end, so no answer could be graded",
                 "  The kernel reported ModuleNotFoundError: No module named 'utils'", "  Hint: run your notebook")
PASSED = nbformat.v4.new_output("stream", name="stdout", text="✓ x matches the reference on all 6 cases\n")


def test_a_notebook_whose_tests_all_recorded_nothing_is_not_graded():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import numpy"), _test_cell(NOT_RUN),
                                         _test_cell(NOT_RUN)])
    problem = grading_problem(nb)
    assert problem.startswith(SILENT_ZERO) and "No module named 'utils'" in problem


def test_a_wrong_or_unfinished_answer_is_graded():
    wrong = _error("CheckFailure", "x does not match the reference", "✗ x does not match the reference")
    assert grading_problem(nbformat.v4.new_notebook(cells=[_test_cell(PASSED), _test_cell(NOT_RUN)])) == ""
    assert grading_problem(nbformat.v4.new_notebook(cells=[_test_cell(wrong), _test_cell(wrong)])) == ""
    student_cell = nbformat.v4.new_code_cell("raise RuntimeError", outputs=[NOT_RUN])   # not a test cell
    assert grading_problem(nbformat.v4.new_notebook(cells=[student_cell, _test_cell(PASSED)])) == ""


def test_a_kernel_that_stopped_half_way_is_not_graded():
    died = _error("KernelDied", "the kernel was killed (out of memory?)")
    cells = [_test_cell(PASSED), nbformat.v4.new_code_cell("x = big()", outputs=[died]), _test_cell(NOT_RUN)]
    problem = grading_problem(nbformat.v4.new_notebook(cells=cells))
    assert "the kernel stopped before the end of the notebook (the kernel was killed (out of memory?))" in problem


def test_the_table_counts_submissions_and_says_why():
    rows = [NotebookStatus("ann", "a", "nb1", True), NotebookStatus("ann", "a", "nb2", False, "why not"),
            NotebookStatus("bob", "a", "nb1", True), NotebookStatus("bob", "a", "nb2", True)]
    table = format_table(rows).splitlines()
    assert table[0].split() == ["student", "assignment", "notebook", "status"]
    assert table[2].split()[:4] == ["ann", "a", "nb2", "FAILED:"] and table[2].endswith("why not")
    assert table[-1] == "1 of 2 submissions graded; 1 could not be graded (FAILED above)."
    traceback = "Traceback (most recent call last):\n  File x\nnbgrader.X: No assignment 'a'"
    assert error_summary(["No assignment 'a'", "There was an error processing assignment: a", traceback]) == \
        "No assignment 'a'"


# --------------------------------------------------------------------------- nbgrader autograde


def test_autograde_ends_with_a_status_table_and_fails_when_a_student_was_not_graded(course, batch):
    proc, output = batch
    assert proc.returncode == 1, output[-3000:]
    assert f"Preflight {ASSIGNMENT}/{NOTEBOOK}.ipynb: the grading kernel imports utils from " \
           f"{PACKAGE / '__init__.py'}" in output
    table = output[output.index("Grading status:"):]
    rows = {line.split()[0]: line for line in table.splitlines()[2:5]}
    assert rows.keys() == {KILLER, "solution", "untouched"}, table[:2000]
    assert f"FAILED: {SILENT_ZERO}" in rows[KILLER] and "exited with status 3" in rows[KILLER]
    assert rows["solution"].split()[-1] == rows["untouched"].split()[-1] == "graded"
    assert "2 of 3 submissions graded; 1 could not be graded" in table
    assert f"1 submission(s) could not be graded: {KILLER}/{ASSIGNMENT}" in table
    scores = code_scores(course)
    with Gradebook(sqlite_gradebook_url(course)) as gb:
        best = float(gb.find_assignment(ASSIGNMENT).max_code_score)
    assert scores == {"solution": best, "untouched": 0.0, KILLER: 0.0}


def test_autograde_stops_before_any_student_when_the_kernel_imports_another_utils(course, tmp_path):
    """The grader imports the course folder's utils/, which differs from the one its kernel imports."""
    copy = copy_course(course, tmp_path / "next_term", ["solution"])
    (copy / "utils").mkdir()
    (copy / "utils" / "__init__.py").write_text(
        '"""This term\'s copy of the checks: it differs from the installed one."""\n'
        'COURSE_TERM = "next term"\n'
        f"__path__.append({str(PACKAGE)!r})\n"
        f"exec(compile(open({str(PACKAGE / '__init__.py')!r}).read(), __file__, 'exec'))\n")
    proc = nbgrader("autograde", ASSIGNMENT, "--force", root=copy, check=False, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert f"Preflight failed for {ASSIGNMENT}/{NOTEBOOK}.ipynb" in output
    assert f"the kernel imported utils from:  {PACKAGE / '__init__.py'}" in output
    assert f"this grader uses utils from:     {copy / 'utils' / '__init__.py'}" in output
    assert f"pip install -e {copy}" in output and "no student was graded" in output
    assert not (copy / "autograded").exists()
    with Gradebook(sqlite_gradebook_url(copy)) as gb, pytest.raises(MissingEntry):
        gb.find_submission(ASSIGNMENT, "solution")


def test_a_copy_of_the_course_for_a_new_term_grades_with_its_own_checks(course, tmp_path):
    copy = copy_course(course, tmp_path / "new_term", ["solution"])
    shutil.copytree(PACKAGE, copy / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    proc = nbgrader("autograde", ASSIGNMENT, "--force", root=copy, check=False, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert f"the grading kernel imports utils from {copy / 'utils' / '__init__.py'}, as this grader" in output
    with Gradebook(sqlite_gradebook_url(copy)) as gb:
        best = float(gb.find_assignment(ASSIGNMENT).max_code_score)
    assert code_scores(copy) == {"solution": best}
