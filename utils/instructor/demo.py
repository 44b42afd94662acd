"""The main job: the whole nbgrader cycle on sample submissions, then a score table and the class report.

    python -m utils.instructor.demo [assignment ...] [--sequential]

1. regenerate release/ from source/ (nbgrader generate_assignment);
2. write submitted/<student>/<assignment>/: the instructor solution, the untouched
   release, and one submission per typical mistake (utils/instructor/samples/);
3. grade them with the course's parallel grader (utils/instructor/parallel.py: autograde,
   feedback and export on a local Dask cluster); with ``--sequential``, with nbgrader's own
   commands one after the other (``nbgrader autograde``, ``generate_feedback``, ``export``),
   which the end-to-end tests use;
4. write the class report (utils/instructor/class_report.py) to reports/class_report.html;
5. print a per-student score table from the gradebook and check what each sample
   must get: the solution full marks, the untouched release 0, each mistake a partial
   score whose feedback names the mistake.
"""
from __future__ import annotations

import html
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url

from .course import REPO_ROOT, assignments, build_submissions, generate_release, nbgrader, notebooks
from .samples import SampleMistake


@dataclass
class Outcome:
    student: str
    assignment: str
    code_score: float
    max_code_score: float
    written_score: str
    max_written_score: float
    expectation: str
    met: bool


def feedback_text(root: Path, student: str, assignment: str) -> str:
    """All feedback HTML of one submission as plain text."""
    texts = []
    for path in sorted((root / "feedback" / student / assignment).glob("*.html")):
        raw = re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))
        texts.append(html.unescape(raw))
    return "\n".join(texts)


def judge(root: Path, assignment: str, built: dict[str, SampleMistake | None]) -> list[Outcome]:
    outcomes = []
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        for student, mistake in built.items():
            sub = gb.find_submission(assignment, student)
            score, best = float(sub.code_score), float(sub.max_code_score)
            if student == "solution":
                expectation, met = "full marks", abs(score - best) < 1e-9
            elif student == "untouched":
                expectation, met = "0", score == 0
            else:
                named = mistake.diagnosis in feedback_text(root, student, assignment)
                expectation = f"partial, feedback names: {mistake.diagnosis}"
                met = 0 < score < best and named
            written = "pending" if sub.needs_manual_grade else f"{float(sub.written_score):g}"
            outcomes.append(Outcome(student, assignment, score, best, written,
                                    float(sub.max_written_score), expectation, met))
    return outcomes


def grade_sequentially(assignment: str, root: Path = REPO_ROOT) -> None:
    """nbgrader's own commands, one after the other, for every submission of ``assignment``."""
    proc = nbgrader("autograde", assignment, "--force", root=root, check=False)
    if proc.returncode != 0:
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line]
        print("  nbgrader autograde reported errors:\n  " + "\n  ".join(errors[-10:]), flush=True)
    nbgrader("generate_feedback", assignment, "--force", root=root)


def print_table(outcomes: list[Outcome]) -> None:
    header = f"{'student':34} {'assignment':16} {'auto score':>11}  {'written':>15}  expected"
    print(header)
    print("-" * len(header))
    for o in outcomes:
        written = f"{o.written_score} /{o.max_written_score:g}" if o.max_written_score else "—"
        mark = "✓" if o.met else "✗"
        print(f"{o.student:34} {o.assignment:16} {o.code_score:>5g} /{o.max_code_score:<4g}  {written:>15}  "
              f"{mark} {o.expectation}")


@dataclass
class DemoRun:
    outcomes: list[Outcome]
    report: object                # the class report (utils.instructor.class_report.ReportResult)
    failures: dict[tuple[str, str], str]   # (student, assignment) -> why it could not be graded


def run(root: Path, names: list[str], mistakes_per_notebook: int | None = None, parallel: bool = True) -> DemoRun:
    """Release, sample submissions, grading (feedback and export included) and the class report for ``names``.

    ``mistakes_per_notebook`` limits the sample mistakes (all of them by default).
    """
    print(f"Regenerating release/ for {', '.join(names)} ...", flush=True)
    generate_release(root, names)
    built = {name: build_submissions(name, root, mistakes_per_notebook) for name in names}
    failures: dict[tuple[str, str], str] = {}
    if parallel:
        from .parallel import grade as grade_in_parallel
        from .parallel import grading_failures
        failures = grading_failures(grade_in_parallel(root, names, export_to=str(root / "grades.csv")))
    else:
        for name in names:
            n_notebooks = len(notebooks(name, root))
            print(f"Autograding {name} ({n_notebooks} notebook{'s' if n_notebooks != 1 else ''}) ...", flush=True)
            grade_sequentially(name, root)
        nbgrader("export", root=root)
    outcomes = [o for name in names for o in judge(root, name, built[name])]
    from .class_report import build_report
    report = build_report(root, names, failures=failures)
    return DemoRun(outcomes, report, failures)


def main(argv: list[str]) -> int:
    root = REPO_ROOT
    sequential = "--sequential" in argv
    names = [a for a in argv if a != "--sequential"] or assignments(root)
    start = time.perf_counter()
    demo = run(root, names, parallel=not sequential)
    outcomes = demo.outcomes
    print(f"\nScores from the gradebook ({root / 'gradebook.db'}); grades exported to grades.csv; "
          f"feedback in feedback/<student>/<assignment>/.\n")
    print_table(outcomes)
    failed = [o for o in outcomes if not o.met]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} submissions graded as expected "
          f"in {time.perf_counter() - start:.0f} s.")
    from .class_report import summary_lines
    print("\n".join(summary_lines(demo.report)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
