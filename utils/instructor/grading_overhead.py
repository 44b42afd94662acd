"""What trusted grading costs: the same submissions graded with and without the sandbox and
the out-of-kernel verdicts.

    python -m utils.instructor.grading_overhead [assignment] [--students N]

Four runs of ``nbgrader autograde`` on one set of sample submissions (solution, untouched and
the sample mistakes, repeated up to N students) in a temporary course:

* plain      nbgrader's own way: the test cells run the checks inside an unsandboxed kernel;
* sandbox    the kernel in bubblewrap, verdicts still inside it (torch stays importable: the
             in-kernel checks need it, so from-scratch notebooks lose that protection here);
* verdicts   verdicts outside the kernel, no sandbox;
* trusted    both (the course's configuration).

It prints seconds per student for each and the overhead relative to ``plain``, and checks that
all four give the same scores to the honest samples (they must: only the tricks differ).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url

from .course import REPO_ROOT, build_submissions, generate_release, nbgrader

MODES = {
    "plain": ["--SandboxedExecute.sandbox=False", "--PrepareTrustedTests.enabled=False",
              "--ApplyTrustedVerdicts.enabled=False"],
    "sandbox": ["--PrepareTrustedTests.enabled=False", "--ApplyTrustedVerdicts.enabled=False"],
    "verdicts": ["--SandboxedExecute.sandbox=False"],
    "trusted": [],
}


def _scores(root: Path, assignment: str) -> dict[str, float]:
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        return {s.student.id: float(s.code_score) for s in gb.assignment_submissions(assignment)}


def _replicate(root: Path, assignment: str, students: int) -> list[str]:
    built = list(build_submissions(assignment, root))
    names = list(built)
    copy = 0
    while len(names) < students:
        source = built[copy % len(built)]
        name = f"{source}_copy{copy // len(built) + 1}"
        shutil.copytree(root / "submitted" / source, root / "submitted" / name)
        names.append(name)
        copy += 1
    return names[:max(students, len(built))]


def measure(assignment: str, students: int) -> dict[str, tuple[float, dict[str, float]]]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO_ROOT / "source" / assignment, root / "source" / assignment)
        shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        generate_release(root, [assignment])
        names = _replicate(root, assignment, students)
        config = (root / "nbgrader_config.py").read_text()
        for mode, options in MODES.items():
            extra = "\nc.SandboxedExecute.from_scratch = {}\n" if mode == "sandbox" else ""
            (root / "nbgrader_config.py").write_text(config + extra)
            start = time.perf_counter()
            nbgrader("autograde", assignment, "--force", *options, root=root, check=False)
            seconds = time.perf_counter() - start
            results[mode] = (seconds / len(names), _scores(root, assignment))
            print(f"  {mode:9} {seconds:7.1f} s for {len(names)} students", flush=True)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", nargs="?", default="deformable_conv")
    parser.add_argument("--students", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"Grading {args.assignment}: the same submissions in four configurations")
    results = measure(args.assignment, args.students)
    base = results["plain"][0]
    print(f"\n  {'mode':9} {'s/student':>10} {'vs plain':>9}")
    for mode, (per_student, _) in results.items():
        print(f"  {mode:9} {per_student:10.2f} {per_student / base:8.2f}×")
    honest = {s for s in results["plain"][1] if s.startswith("solution") or s.startswith("untouched")}
    differ = [m for m, (_, scores) in results.items()
              if {s: scores[s] for s in honest} != {s: results["plain"][1][s] for s in honest}]
    if differ:
        print(f"\nscores of the solution/untouched samples differ in: {', '.join(differ)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
