"""Benchmarks of the checks: how long a student waits for each ``check_*`` call; and of grading.

    python -m utils.instructor.bench              # every benchmark
    python -m utils.instructor.bench deformable   # one of them (names: see BENCHMARKS)
    python -m utils.instructor.bench grading      # sequential nbgrader vs the parallel grader

Timings are printed, never asserted (they depend on the machine). A benchmark is a
function ``() -> int`` (0 when every check it timed passed) registered in :data:`BENCHMARKS`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.sandbox import IN_SANDBOX_DIR

from .course import REPO_ROOT, assignments, build_submissions, generate_release, nbgrader, notebooks
from .parallel import StudentResult, startup_summary
from .solutions import NotebookSolutions

GOAL_SECONDS = 5.0   # the goal for one check_* call, visible or hidden


class BenchmarkUnavailable(Exception):
    """What a benchmark needs is missing; the message says what."""


def load_solution(notebook: Path, cells: dict[str, str] | None = None) -> dict:
    """The namespace after running the notebook's imports cell, then its solution cells in order.

    ``cells`` (grade_id -> code) replaces the notebook's solution code, e.g. to run a mutated cell.
    """
    if not notebook.is_file():
        raise BenchmarkUnavailable(
            f"{notebook.relative_to(REPO_ROOT) if notebook.is_relative_to(REPO_ROOT) else notebook} not found: "
            "this benchmark times the instructor solution in that notebook (nothing is embedded here); "
            "create the notebook first.")
    solutions = NotebookSolutions(notebook, {"__name__": f"solution_of_{notebook.stem}"}, imports=True)
    if not solutions.cells:
        raise BenchmarkUnavailable(f"{notebook} has no solution code cells (nbgrader.solution = true).")
    return solutions.run(cells)


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _import_time(module: str) -> str:
    if module in sys.modules:
        return f"import {module}: already imported"
    seconds, _ = _timed(lambda: importlib.import_module(module))
    return f"import {module}: {seconds:.2f} s"


def time_checks(checks: dict[str, Callable], functions: dict[str, Callable], out=sys.stdout) -> int:
    """Time ``check(function)`` and ``check(function, hidden=True)`` for each name; print a table.

    Returns the number of checks that did not pass (their feedback is printed).
    """
    from utils.checks.feedback import CheckFailure

    print(f"  goal: each check < {GOAL_SECONDS:g} s", file=out)
    print(f"  {'check':32} {'visible':>9} {'hidden':>9}", file=out)
    total, failures = 0.0, 0
    for name, check in checks.items():
        row = []
        for hidden in (False, True):
            shown = io.StringIO()
            try:
                with contextlib.redirect_stdout(shown):
                    seconds, _ = _timed(partial(check, functions[name], hidden=hidden))
            except CheckFailure as failure:
                failures += 1
                print(f"  {'check_' + name:32} FAILED (hidden={hidden}):{failure}", file=out)
                row.append(None)
                continue
            total += seconds
            row.append(seconds)
        cells = ["   failed" if s is None else f"{s:7.2f} s" for s in row]
        slow = [s for s in row if s is not None and s >= GOAL_SECONDS]
        note = f"   ← over the {GOAL_SECONDS:g} s goal" if slow else ""
        print(f"  {'check_' + name:32} {cells[0]:>9} {cells[1]:>9}{note}", file=out)
    print(f"  total: {total:.2f} s for {2 * len(checks)} check calls"
          + (f", {failures} failed" if failures else ""), file=out)
    return failures


# --------------------------------------------------------------------------- benchmarks

DEFORMABLE_NOTEBOOK = REPO_ROOT / "source" / "deformable_conv" / "deformable_conv.ipynb"


def bench_deformable() -> int:
    """The four deformable-convolution checks on the instructor's (nested-loop) solution."""
    notebook = DEFORMABLE_NOTEBOOK
    if not notebook.is_file():   # before importing torch: say what is missing at once
        load_solution(notebook)
    print(f"deformable: the instructor solution in {notebook.relative_to(REPO_ROOT)}")
    print(f"  {_import_time('torch')}, {_import_time('torchvision.ops')} (not counted below)")
    from utils import deformable_conv as deformable

    namespace = load_solution(notebook)
    names = list(deformable.EXERCISES)
    missing = [name for name in names if not callable(namespace.get(name))]
    if missing:
        raise BenchmarkUnavailable(f"{notebook.name} defines no function {', '.join(missing)}")
    checks = {name: getattr(deformable, f"check_{name}") for name in names}
    return time_checks(checks, {name: namespace[name] for name in names})


# --------------------------------------------------------------------------- grading a class

def _launcher_seconds(repeat: int = 3) -> tuple[float, float]:
    """Seconds to run the sandbox's resource-limit launcher (``in_sandbox/sandbox_launch.py ... -- true``)
    and a bare ``python -c pass``: the launcher's own imports are paid by every grading kernel."""

    def best(cmd):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return min(times)

    launcher = best([sys.executable, "-I", str(IN_SANDBOX_DIR / "sandbox_launch.py"), "--cpu", "60",
                     "--data", str(2**32), "--fsize", str(2**26), "--", "true"])
    return launcher, best([sys.executable, "-c", "pass"])


def _scores(root: Path) -> dict:
    from nbgrader.api import Gradebook
    out = {}
    with Gradebook(sqlite_gradebook_url(root), "dl-architectures") as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                for nb in sub.notebooks:
                    out[(sub.student.id, assignment.name, nb.name)] = nb.code_score
    return out


def bench_grading() -> int:
    """Sequential ``nbgrader autograde`` + ``generate_feedback`` + ``export`` against the parallel grader.

    The parallel grader runs twice: with warm kernels (its default) and with ``--cold-kernels``
    (a new kernel per notebook, as nbgrader), which splits the speed-up into what parallelism
    and what warm kernels give.

    Environment: BENCH_GRADING_COPIES (replicas of each assignment's sample submissions under new
    student ids, default 1), BENCH_GRADING_WORKERS (default: CPUs), BENCH_GRADING_ASSIGNMENTS
    (comma-separated, default the whole course), BENCH_GRADING_COLD=0 skips the cold-kernel run,
    BENCH_GRADING_KEEP=1 keeps the temporary course.
    """
    copies = int(os.environ.get("BENCH_GRADING_COPIES", "1"))
    workers = int(os.environ.get("BENCH_GRADING_WORKERS", str(os.cpu_count() or 2)))
    names = [n for n in os.environ.get("BENCH_GRADING_ASSIGNMENTS", "").split(",") if n] or assignments(REPO_ROOT)
    if shutil.which("bwrap") is None:
        raise BenchmarkUnavailable("grading needs bubblewrap (`bwrap`); install the Debian package bubblewrap")
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    status = 0
    try:
        shutil.copytree(REPO_ROOT / "source", root / "source")
        shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        print(f"grading: {', '.join(names)}; {copies} cop{'y' if copies == 1 else 'ies'} of the sample "
              f"submissions; {workers} workers on {os.cpu_count()} CPUs; course in {root}")
        generate_release(root, names)
        n_students, n_notebooks = 0, 0
        for name in names:
            samples = list(build_submissions(name, root))
            for i in range(1, copies):
                for student in samples:
                    shutil.copytree(root / "submitted" / student / name, root / "submitted" / f"{student}_c{i}" / name)
            n_students += len(samples) * copies
            n_notebooks += len(samples) * copies * len(notebooks(name, root))
        print(f"  {n_students} submissions, {n_notebooks} notebooks")

        start = time.perf_counter()
        for name in names:
            proc = nbgrader("autograde", name, "--force", root=root, check=False)
            if proc.returncode:
                print(f"  sequential nbgrader autograde {name}: exit {proc.returncode}")
                status = 1
            nbgrader("generate_feedback", name, "--force", root=root, check=False)
        nbgrader("export", root=root, check=False)
        sequential = time.perf_counter() - start
        expected = _scores(root)

        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

        def parallel_run(label: str, *options: str):
            timings = root / f"parallel-timings-{label}.json"
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "utils.instructor.parallel", *names, "--workers",
                                   str(workers), "--timings", str(timings), "--quiet", *options],
                                  cwd=root, env=env, text=True, capture_output=True)
            seconds = time.perf_counter() - start
            if proc.returncode:
                print(f"  parallel grader ({label}): exit", proc.returncode, "\n" + proc.stdout[-2000:])
            results = [StudentResult(**r) for r in json.loads(timings.read_text())] if timings.exists() else []
            return seconds, results, proc.returncode == 0 and _scores(root) == expected

        runs = {"warm kernels": parallel_run("warm")}
        if os.environ.get("BENCH_GRADING_COLD", "1") != "0":
            runs["new kernels"] = parallel_run("cold", "--cold-kernels")
        status |= 0 if all(same for _, _, same in runs.values()) else 1

        print(f"  {'':40} {'seconds':>9} {'per student':>12} {'speed-up':>9}  grades identical")
        print(f"  {'sequential nbgrader (a new kernel each)':40} {sequential:9.1f} {sequential / n_students:11.2f}s")
        for label, (seconds, _, same) in runs.items():
            print(f"  {f'parallel, {workers} workers, {label}':40} {seconds:9.1f} {seconds / n_students:11.2f}s "
                  f"{sequential / seconds:8.2f}x  {'yes' if same else 'NO'}")
        print("  (goal: 3x sequential nbgrader)")
        for label, (_, results, _) in runs.items():
            print(f"  per notebook, mean ({label}): kernel start = until its first cell runs; "
                  "before first test = until its first test cell runs")
            for name, s in startup_summary(results).items():
                print(f"    {name:18} kernel start {s['kernel_start']:6.2f} s, before first test "
                      f"{s['before_first_test']:6.2f} s, notebook total {s['total']:6.2f} s "
                      f"({s['notebooks']:g} notebooks)")
        launcher, bare = _launcher_seconds()
        print(f"  of each kernel start, the sandbox launcher `utils/grading/in_sandbox/sandbox_launch.py` takes "
              f"{launcher:.2f} s (a bare `python -c pass`: {bare:.2f} s)")
    finally:
        if os.environ.get("BENCH_GRADING_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
    return status


# --------------------------------------------------------------------------- the trust boundary's protections

def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    return min(_timed(fn)[0] for _ in range(repeat))


def _warm_kernel_seconds(zygote, folders) -> float:
    """Fork a kernel from ``zygote`` in a fresh kernel folder and wait until it answers."""
    from jupyter_client import BlockingKernelClient
    from jupyter_client.connect import write_connection_file
    folder = folders.new(2**28, 2000)
    start = time.perf_counter()
    connection = str(folder.run / "kernel.json")
    write_connection_file(connection, transport="ipc", ip=str(folder.run / "kernel"))
    process = zygote.spawn(["-f", connection], env=dict(os.environ), cwd=str(folder.work),
                           keep=[str(folder.work), str(folder.run)],
                           limits={"cpu": 60, "data": 2**32, "fsize": 2**26})
    client = BlockingKernelClient()
    client.load_connection_file(connection)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        seconds = time.perf_counter() - start
        client.shutdown()
        process.wait(timeout=30)
    finally:
        client.stop_channels()
        zygote.kill_kernels()
        folder.remove()
    return seconds


def bench_protections() -> int:
    """What each protection of the grading trust boundary costs per notebook (one run, never asserted)."""
    import nbformat

    from utils.grading import cgroups
    from utils.grading.kernel_folder import KernelFolders
    from utils.grading.review_flags import notebook_checks, review_notebook
    from utils.grading.trusted import HiddenCases, cell_salt
    from utils.grading.zygote import KernelBudget, KernelZygote

    print(f"protections: cgroups here: {cgroups.availability()}")
    rows = []
    rows.append(("control group: create, join, remove", _best(
        lambda: (lambda g: g and g.remove())(cgroups.create(2**30, 256)))))
    folders = KernelFolders()
    try:
        submission = Path(tempfile.mkdtemp(prefix="bench-submission-"))
        for index in range(20):
            (submission / f"file{index}.txt").write_bytes(b"x" * 4096)

        def folder_cycle():
            folder = folders.new(2**28, 2000)
            folder.copy_student_files(submission)
            folder.write_inputs("test_cell", b"x" * 2**20)
            folder.remove()
        rows.append(("kernel folder: copy 20 files, write 1 MiB of inputs, remove", _best(folder_cycle)))
        print(f"  kernel folders: {'a bounded tmpfs' if folders.mounted else 'a plain folder (not root)'}")
        if shutil.which("bwrap"):
            zygote = KernelZygote(bwrap=shutil.which("bwrap"), notebook="bench.ipynb", blocked_modules=[],
                                  preload=["ipykernel.kernelapp", "numpy"], kernels_base=folders.base_dir(2**28, 2000),
                                  budget=KernelBudget(2**32, 256, 2**28))
            try:
                rows.append(("warm kernel: fork (own PID namespace, /proc, mounts) until ready",
                             min(_warm_kernel_seconds(zygote, folders) for _ in range(3))))
            finally:
                zygote.close()
        shutil.rmtree(submission, ignore_errors=True)
    finally:
        folders.close()
    for assignment, path in [(a, p) for a in assignments() for p in notebooks(a)]:
        key = f"{assignment}/{path.stem}"
        checks = notebook_checks(key)
        nb = nbformat.read(path, as_version=4)

        def own_cases(checks=checks):   # a new cache each time: nothing shared between students
            cases = HiddenCases()
            for check in checks:
                for memo in cases.cases(check, cell_salt("bench secret", "a student", check))[1]:
                    memo.reference()
        rows.append((f"{key}: hidden inputs and references drawn for one student ({len(checks)} checks)",
                     _best(own_cases, repeat=2)))
        rows.append((f"{key}: review of the submitted code", _best(
            lambda nb=nb, key=key, checks=checks: review_notebook(
                nb, student="s", notebook=key, check_names=checks, instructor_sources=frozenset()))))
        try:
            from utils.grading.preprocessors import SanitizeUntrustedHTML
            rows.append((f"{key}: sanitising its markdown and outputs", _best(
                lambda nb=nb: SanitizeUntrustedHTML().preprocess(nbformat.from_dict(nb), {}))))
        except ImportError:
            pass
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"  {name:{width}}  {seconds * 1000:8.1f} ms")
    return 0


BENCHMARKS: dict[str, Callable[[], int]] = {
    "deformable": bench_deformable,
    "grading": bench_grading,
    "protections": bench_protections,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.bench",
                                     description="Time each check on the instructor solution (never asserted).")
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    status = 0
    for name in args.names or list(BENCHMARKS):
        try:
            status |= 1 if BENCHMARKS[name]() else 0
        except BenchmarkUnavailable as why:
            print(f"bench {name}: {why}", file=sys.stderr)
            status |= 2
    return status


if __name__ == "__main__":
    sys.exit(main())
