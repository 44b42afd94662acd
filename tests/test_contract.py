"""The contract every registered exercise keeps, in the spirit of torchvision's ``RoIOpTester``.

For every exercise of :mod:`utils.checks.registry`, with the instructor's solution read from its source
notebook (the ``imports`` cell, then every solution cell, in order):

a. the solution passes its check, visible and hidden, also under a grading secret;
b. every catalogued mistake is rejected by a visible case and diagnosed as itself (named, with its hint,
   at the first case it changes, the details stating the tolerance or the expected shape), and again on
   the hidden cases under a grading secret, as the grader runs them;
c. mistake names are unique, and no two mistakes give the same output on every (hidden) case;
d. the check (passing, hidden, under a secret, on a stub, diagnosing each mistake) leaves numpy's,
   Python's and torch's global random generators and torch's thread count untouched, and a pass shows ✓;
e. the release notebook's stub (a function, a class whose ``__init__`` raises NotImplementedError, a dict
   of answers left as None) gets "<function> is not implemented yet" and how to start;
f. the registry and the notebooks agree: each notebook calls exactly the checks registered for it;
g. the exercise declares the input space its cases must cover (``Exercise.covers``), and some case covers
   each declared property;
h. a failure sends the student to a section of the notebook that exists (``Exercise.section``);
i. no hint, mistake name or headline hands over the solution: none shares a run of code with the
   instructor's solution cells;
j. a mistake outside the catalogue (the whole result doubled) is rejected and described ("× 2"), or named
   only by a catalogued mistake that gives that very output on every case.

Registering an exercise (and calling its check from a test cell of its notebook) is all it takes to be
covered. Where an exercise does not keep a clause yet, :data:`KNOWN_GAPS` says so, in one place.
"""
from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.checks.adapters import to_numpy
from utils.checks.compare import agrees
from utils.checks.exercise import CaseMemo, Exercise, Produced, case_label, evaluate
from utils.checks.feedback import NotImplementedYet, Report
from utils.checks.registry import CHECK_MODULES, MODULE_OF_CHECK, check_function, checks_in
from utils.checks.registry import exercise as find_exercise
from utils.checks.seeding import grading_salt
from utils.instructor.course import REPO_ROOT
from utils.instructor.solutions import NotebookSolutions, solution_region

GRADING_SECRET = "a course secret of the contract test"

# (clause, exercise) -> why that exercise does not keep that clause yet. Each runs as
# xfail(strict=True): once its owner fixes the exercise, the test passes and the entry must go.
KNOWN_GAPS: dict[tuple[str, str], str] = {}

CLAUSES = ("solution", "mistakes", "names", "distinct", "rng", "stub", "notebook", "covers", "section", "hints",
           "described")


def registered(clause: str) -> list:
    """One parameter per registered exercise, in registry order, with its known gap marked."""
    assert clause in CLAUSES
    params = []
    for check_name in MODULE_OF_CHECK:
        name = check_name[len("check_"):]
        gap = KNOWN_GAPS.get((clause, name))
        marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
        params.append(pytest.param(check_name, id=name, marks=marks))
    return params


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tiny models: one thread is faster


def test_known_gaps_name_registered_exercises():
    for clause, name in KNOWN_GAPS:
        assert clause in CLAUSES and f"check_{name}" in MODULE_OF_CHECK, (clause, name)


# --------------------------------------------------------------------------- the notebooks

def source_path(notebook: str) -> Path:
    return REPO_ROOT / "source" / f"{notebook}.ipynb"


def notebook_of(check_name: str) -> str:
    return CHECK_MODULES[MODULE_OF_CHECK[check_name]].notebook


def graded_test_cells(path: Path) -> list[tuple[str, str]]:
    """``(grade_id, source)`` of each autograded test cell of a notebook."""
    cells = []
    for cell in json.loads(path.read_text())["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("grade") and not meta.get("solution"):
            cells.append((meta["grade_id"], "".join(cell["source"])))
    return cells


@functools.cache
def calls_in(notebook: str) -> dict[str, str]:
    """check name -> the argument its notebook's test cells pass it (the student's object)."""
    return {name: argument for _, source in graded_test_cells(source_path(notebook))
            for name, argument in checks_in(source)}


def _run_keeping_threads(run):
    threads = torch.get_num_threads()   # an imports cell may set it for the notebook's kernel
    try:
        return run()
    finally:
        torch.set_num_threads(threads)


@functools.cache
def solution_namespace(notebook: str) -> dict:
    """What the notebook defines after its imports cell and every instructor solution cell."""
    return _run_keeping_threads(lambda: NotebookSolutions(source_path(notebook), imports=True).run())


@functools.cache
def stub_namespace(notebook: str) -> dict:
    """What the untouched release notebook defines: its imports cell, then each solution cell as the student
    receives it (a cell that raises NotImplementedError at top level still defines what comes before the raise,
    e.g. a dict of answers left as None)."""
    release = NotebookSolutions(REPO_ROOT / "release" / f"{notebook}.ipynb", imports=True)
    return _run_keeping_threads(lambda: release.run(unanswered_ok=True))


def student_object(check_name: str, namespace: dict):
    """What the notebook's test cell passes to ``check_name``, looked up in ``namespace``."""
    notebook = notebook_of(check_name)
    argument = calls_in(notebook).get(check_name)
    assert argument is not None, f"no test cell of {notebook}.ipynb calls {check_name}"
    return eval(argument, namespace)


# --------------------------------------------------------------------------- cases, references, mistakes

@functools.cache
def case_memos(check_name: str, hidden: bool, secret: str) -> tuple[list, list[CaseMemo]]:
    """An exercise's cases and their memos (reference and mistake outputs, computed once).

    Use the memos of a ``secret`` only inside ``grading_salt(secret)``: they compute lazily.
    """
    exercise = find_exercise(check_name)
    with grading_salt(secret):
        cases = exercise.make_cases(hidden)
    return cases, [CaseMemo(exercise, case) for case in cases]


def mistake_array(memo: CaseMemo, index: int) -> np.ndarray | None:
    """Mistake ``index``'s output on the memo's case as an array; None where the mistake does not apply."""
    return to_numpy(memo.mistake(index))


def changes_answer(memo: CaseMemo, index: int, exercise: Exercise) -> bool:
    wrong = mistake_array(memo, index)
    return wrong is not None and not agrees(wrong, memo.reference(), exercise.tolerance)


def diagnosis_problem(check_name: str, index: int, hidden: bool, secret: str) -> str:
    """'' when a student making mistake ``index`` (and nothing else) is told exactly that; else what goes wrong."""
    exercise = find_exercise(check_name)
    mistake = exercise.mistakes[index]
    cases, memos = case_memos(check_name, hidden, secret)
    with grading_salt(secret):
        first = next((n for n, memo in enumerate(memos) if changes_answer(memo, index, exercise)), None)
        if first is None:
            return "no case exposes it (its output equals the reference, or it cannot be formed, on every case)"

        def student(number, case, label):   # the mistake where it applies, the right answer elsewhere
            wrong = memos[number].mistake(index)
            return Produced(value=wrong if to_numpy(wrong) is not None else memos[number].reference())

        verdict = evaluate(exercise, cases, student, memos)
        expected_shape = np.asarray(memos[first].reference()).shape
    label = case_label(first + 1, len(cases))
    if not isinstance(verdict, Report):
        return f"{label} changes the answer, yet the check passes"
    problems = []
    if not verdict.case.startswith(f"{label}:"):
        problems.append(f"rejected at {verdict.case!r}, expected at {label}")
    if verdict.likely_cause != mistake.name:
        problems.append(f"diagnosed as {verdict.likely_cause or 'no known mistake'!r}")
    elif verdict.hint != mistake.hint:
        problems.append(f"shown the hint {verdict.hint!r}")
    states = (exercise.tolerance.describe(), f"expected {expected_shape}",
              *([f"expected {expected_shape[0]}."] if len(expected_shape) == 1 else []),
              *([f"expected {expected_shape[1:]}."] if len(expected_shape) > 1 else []))   # per part
    if exercise.tolerance.exact:   # whole numbers: the expected value itself, no tolerance
        states = ("expected ",)
    if not exercise.reveal_expected:   # answers by hand: which one is wrong, never the right value
        states = ("yours ", "Yours ")
    if not any(text in line for line in verdict.details for text in states):
        problems.append(f"the details {verdict.details} state neither the tolerance nor the expected shape")
    return "; ".join(problems)


# --------------------------------------------------------------------------- a. the solution passes

@pytest.mark.parametrize("check_name", registered("solution"))
def test_the_solution_passes(check_name):
    check = check_function(check_name)
    solution = student_object(check_name, solution_namespace(notebook_of(check_name)))
    check(solution, hidden=False)
    check(solution, hidden=True)
    with grading_salt(GRADING_SECRET):
        check(solution, hidden=True)


# --------------------------------------------------------------------------- b. each mistake is diagnosed

@pytest.mark.parametrize("check_name", registered("mistakes"))
def test_each_mistake_is_exposed_by_a_visible_case_and_diagnosed_as_itself(check_name):
    exercise = find_exercise(check_name)
    problems = []
    for index, mistake in enumerate(exercise.mistakes):
        for hidden, secret, where in ((False, "", "visible cases"),
                                      (True, GRADING_SECRET, "hidden cases under a grading secret")):
            problem = diagnosis_problem(check_name, index, hidden, secret)
            if problem:
                problems.append(f"mistake {mistake.name!r}, {where}: {problem}")
                break
    assert not problems, f"{exercise.function}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- c. mistakes are distinct

@pytest.mark.parametrize("check_name", registered("names"))
def test_mistake_names_are_unique(check_name):
    exercise = find_exercise(check_name)
    names = [mistake.name for mistake in exercise.mistakes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"{exercise.function}: more than one mistake is named {repeated}"


@pytest.mark.parametrize("check_name", registered("distinct"))
def test_no_two_mistakes_give_the_same_output_on_every_case(check_name):
    exercise = find_exercise(check_name)
    _, memos = case_memos(check_name, True, GRADING_SECRET)
    with grading_salt(GRADING_SECRET):
        outputs = [[mistake_array(memo, index) for memo in memos] for index in range(len(exercise.mistakes))]

    def same(a, b) -> bool:
        return (a is None and b is None) or (a is not None and b is not None and agrees(a, b, exercise.tolerance))

    twins = [(i, j) for i in range(len(outputs)) for j in range(i + 1, len(outputs))
             if all(same(a, b) for a, b in zip(outputs[i], outputs[j], strict=True))]
    assert not twins, f"{exercise.function}: these mistakes give the same output on every case: " + "; ".join(
        f"#{i} {exercise.mistakes[i].name!r} and #{j} {exercise.mistakes[j].name!r}" for i, j in twins)


# --------------------------------------------------------------------------- d. global RNGs untouched

def rng_states():
    return np.random.get_state(), random.getstate(), torch.get_rng_state()


@pytest.mark.parametrize("check_name", registered("rng"))
def test_the_check_leaves_the_global_rngs_untouched(check_name, capsys):
    """Passing runs (visible, hidden, under a secret), a stub's run and a diagnosis of every mistake
    (with fresh memos, so each mistake's output is computed here) leave the global generators as they were."""
    check = check_function(check_name)
    exercise = find_exercise(check_name)
    solution = student_object(check_name, solution_namespace(notebook_of(check_name)))
    stub = student_object(check_name, stub_namespace(notebook_of(check_name)))
    np.random.seed(1234567)
    random.seed(7654321)
    torch.manual_seed(2468)
    np.random.random(3), random.random(), torch.rand(3)   # not a freshly seeded state either
    np_before, py_before, torch_before = rng_states()
    threads = torch.get_num_threads()
    check(solution)
    check(solution, hidden=True)
    with grading_salt(GRADING_SECRET):
        check(solution, hidden=True)
    with pytest.raises(NotImplementedYet):
        check(stub)
    cases = exercise.make_cases(True)
    for index in range(len(exercise.mistakes)):
        memos = [CaseMemo(exercise, case) for case in cases]

        def student(number, case, label, index=index, memos=memos):
            wrong = memos[number].mistake(index)
            return Produced(value=wrong if to_numpy(wrong) is not None else memos[number].reference())
        evaluate(exercise, cases, student, memos)
    np_after, py_after, torch_after = rng_states()
    (np_kind, np_keys, *np_rest), (kind, keys, *rest) = np_before, np_after   # keys: the Mersenne Twister's
    assert (kind, rest) == (np_kind, np_rest) and np.array_equal(keys, np_keys), \
        "numpy's global RNG (np.random) changed"
    assert py_after == py_before, "Python's random module changed"
    assert torch.equal(torch_after, torch_before), "torch's global CPU generator changed"
    assert torch.get_num_threads() == threads, "torch's thread count changed"
    shown = capsys.readouterr().out
    assert shown.count("✓ ") == 3, f"each passing run shows one ✓ line:\n{shown}"


# --------------------------------------------------------------------------- e. a stub is not implemented yet

@pytest.mark.parametrize("check_name", registered("stub"))
def test_a_stub_is_not_implemented_yet(check_name):
    check = check_function(check_name)
    function = find_exercise(check_name).function
    stub = student_object(check_name, stub_namespace(notebook_of(check_name)))
    for hidden in (False, True):
        with pytest.raises(NotImplementedYet) as info:
            check(stub, hidden=hidden)
        assert f"{function} is not implemented yet" in str(info.value)
        assert "replace `raise NotImplementedError()`" in str(info.value)


# --------------------------------------------------------------------------- f. registry and notebooks agree

@pytest.mark.parametrize("check_name", registered("notebook"))
def test_its_notebook_calls_the_check(check_name):
    notebook = notebook_of(check_name)
    assert source_path(notebook).is_file(), f"the registry names {notebook}, which is not in source/"
    assert check_name in calls_in(notebook), f"no test cell of {notebook}.ipynb calls {check_name}"


def test_every_check_a_source_notebook_calls_is_registered_for_it():
    called = set()
    registered_notebooks = {entry.notebook for entry in CHECK_MODULES.values()}
    for path in sorted((REPO_ROOT / "source").glob("*/*.ipynb")):
        notebook = path.relative_to(REPO_ROOT / "source").with_suffix("").as_posix()
        for grade_id, source in graded_test_cells(path):
            found = checks_in(source)
            assert found, f"{path.name}: test cell {grade_id} calls no registered check"
            called.update(name for name, _ in found)
        if graded_test_cells(path):
            assert notebook in registered_notebooks, f"{notebook}.ipynb has test cells but no check module"
        for name in calls_in(notebook):
            assert notebook_of(name) == notebook, f"{notebook}.ipynb calls {name}, registered for {notebook_of(name)}"
    assert called <= set(MODULE_OF_CHECK)
    assert len(called) >= 20


# --------------------------------------------------------------------------- g. the input space is covered

@pytest.mark.parametrize("check_name", registered("covers"))
def test_the_cases_cover_the_declared_input_space(check_name):
    exercise = find_exercise(check_name)
    assert exercise.covers, f"{exercise.function} declares no input space (Exercise.covers)"
    cases, _ = case_memos(check_name, True, GRADING_SECRET)
    uncovered = [name for name, holds in exercise.covers.items() if not any(holds(case) for case in cases)]
    assert not uncovered, f"{exercise.function}: no case covers {uncovered}"


# --------------------------------------------------------------------------- h. the section exists

def headings(notebook: str) -> list[str]:
    nb = json.loads(source_path(notebook).read_text())
    return [line.lstrip("#").strip() for cell in nb["cells"] if cell["cell_type"] == "markdown"
            for line in "".join(cell["source"]).splitlines() if line.startswith("#")]


@pytest.mark.parametrize("check_name", registered("section"))
def test_a_failure_points_to_a_section_of_the_notebook(check_name):
    exercise = find_exercise(check_name)
    assert exercise.section, f"{exercise.function} names no notebook section (Exercise.section)"
    found = [h for h in headings(notebook_of(check_name)) if exercise.section in h]
    assert len(found) == 1, f"{exercise.function}: section {exercise.section!r} is in {len(found)} headings " \
                            f"of {notebook_of(check_name)}.ipynb, expected exactly one"


# --------------------------------------------------------------------------- i. hints do not give the code away

CODE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?|\S")
LEAK_TOKENS = 7   # a run this long shared with the solution (with an operator in it) is code, not a hint


def code_runs(code: str, n: int) -> set[tuple[str, ...]]:
    tokens = CODE_TOKEN.findall(code)
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def leaked_code(text: str, runs: set[tuple[str, ...]], n: int = LEAK_TOKENS) -> str:
    """The first run of ``n`` tokens of ``text`` that is also in the solution and holds an operator ('' if none):
    dotted names alone ("torch.nn.functional.conv2d") are vocabulary, not code."""
    tokens = CODE_TOKEN.findall(text)
    for i in range(len(tokens) - n + 1):
        run = tuple(tokens[i:i + n])
        if run in runs and any(t in "=+-*/@([" for t in run):
            return " ".join(run)
    return ""


@functools.cache
def solution_code_runs(notebook: str) -> frozenset:
    runs = set()
    for source in NotebookSolutions(source_path(notebook)).sources.values():
        runs |= code_runs(solution_region(source), LEAK_TOKENS)
    return frozenset(runs)


@pytest.mark.parametrize("check_name", registered("hints"))
def test_no_hint_hands_over_the_solution_code(check_name):
    exercise = find_exercise(check_name)
    runs = solution_code_runs(notebook_of(check_name))
    texts = {"the exercise's hint": exercise.hint, "its reference name": exercise.reference_name,
             **{f"the hint for {name}": hint for name, hint in exercise.exception_hints.items()}}
    for mistake in exercise.mistakes:
        texts[f"mistake {mistake.name!r}"] = mistake.name
        texts[f"the hint of {mistake.name!r}"] = mistake.hint
    leaks = {where: code for where, text in texts.items() if (code := leaked_code(text, runs))}
    assert not leaks, f"{exercise.function}: the solution's code is in " + "; ".join(
        f"{where}: {code!r}" for where, code in leaks.items())


# --------------------------------------------------------------------------- j. an unknown mistake is described

@pytest.mark.parametrize("check_name", registered("described"))
def test_a_mistake_outside_the_catalogue_is_described_not_misnamed(check_name):
    exercise = find_exercise(check_name)
    cases, memos = case_memos(check_name, True, GRADING_SECRET)
    with grading_salt(GRADING_SECRET):
        doubled = [2 * np.asarray(memo.reference(), dtype=np.float64) for memo in memos]
        verdict = evaluate(exercise, cases, lambda number, case, label: Produced(value=doubled[number]), memos)
        assert isinstance(verdict, Report), f"{exercise.function}: twice the reference passes every case"
        if verdict.likely_cause:
            index = next(i for i, m in enumerate(exercise.mistakes) if m.name == verdict.likely_cause)
            for number, memo in enumerate(memos):
                wrong = mistake_array(memo, index)
                assert wrong is None or agrees(doubled[number], wrong, exercise.tolerance), \
                    f"{exercise.function}: named {verdict.likely_cause!r}, which does not give case {number + 1}"
        elif exercise.reveal_expected:
            assert any("× 2" in line for line in verdict.pattern), \
                f"{exercise.function}: the doubled result is not described as such:\n{verdict.text()}"
