"""Grade a large class fast: ``nbgrader autograde`` sharded over Dask workers.

    python -m utils.instructor.parallel ASSIGNMENT [ASSIGNMENT ...]
        [--workers N]            local worker processes (default: the number of CPUs)
        [--scheduler ADDR]       a running Dask scheduler, e.g. tcp://10.0.0.5:8786, instead of a local cluster
        [--shard-size K]         students per task (default: about four tasks per worker, at most 16)
        [--student GLOB[,GLOB]]  only these students (glob patterns, like nbgrader's --student)
        [--db-url URL]           gradebook (default: nbgrader_config.py), e.g. postgresql://user@host/db
        [--root DIR]             course root (default: the current folder, like nbgrader)
        [--cold-kernels]         start every kernel anew, as nbgrader does (default: warm kernels)
        [--no-feedback] [--no-export] [--no-report] [--to grades.csv] [--timings FILE.json] [--verbose]

Run it from the course root, as nbgrader. For each assignment it does what
``nbgrader autograde <a> --force``, ``nbgrader generate_feedback <a> --force`` and
``nbgrader export`` do, with the same nbgrader configuration (nbgrader_config.py: the
sandboxed, recording-only kernel and the trusted verdicts), so grades, feedback and the CSV
are those of the sequential commands. What changes:

* students are split into shards; each shard is one Dask task, graded **in-process** by a
  long-lived worker that has loaded nbgrader, the course configuration and the trusted
  grader (torch references) once, so start-up is paid once per worker, not per student;
* each worker forks the students' kernels from a warm, sandboxed zygote per notebook that has
  imported the notebook's libraries once (``c.SandboxedExecute.warm_kernels``, utils/grading/zygote.py):
  every notebook still gets its own kernel process and its own view of the file system, but
  not its own torch import;
* before any shard starts, the coordinating process checks that a grading kernel imports the
  check package this grader uses and each notebook's libraries (utils/grading/preflight.py); if not,
  it stops with the reason and exit status 2, and no student is graded;
* a student whose submission breaks grading is retried once for a locked database, then
  reported at the end, and never stops the batch (nbgrader itself aborts on some errors);
* the batch prints a progress bar, then one line, then one line per submission that needs a person
  and nothing for the others: a submission that could not be graded (utils/grading/batch_report.py:
  a kernel that stopped before the end, or a notebook whose test cells all recorded nothing, the
  signature of a grading problem, not of an answer) and one flagged for review; ``--verbose`` adds
  every student's status table and the timings; the exit status is 1 when any student could not be
  graded;
* then it writes the class report (utils/instructor/class_report.py: what the class got wrong, per
  exercise, and who to look at) to reports/class_report.html and prints its path and the top mistakes;
* the gradebook is prepared before the shards start (tables, course, students), so concurrent
  shards only write their own submissions: SQLite (``?timeout=60``, writers wait) for one
  machine, PostgreSQL through ``--db-url`` / ``CourseDirectory.db_url`` for many graders.

With ``--scheduler`` every worker must see the course root at the same path (shared file
system) and have this environment (nbgrader, the course package, bubblewrap) installed; each
worker process should have one thread (``dask worker ADDR --nthreads 1``) because grading
changes the process's working directory. The preflight checks the coordinating machine; a worker
whose environment differs shows up as FAILED students in the table, not as zeros.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import glob
import json
import logging
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------- results


@dataclass
class StudentResult:
    student: str
    assignment: str
    ok: bool
    seconds: float
    error: str = ""
    attempts: int = 1
    # per notebook: {"notebook", "kernel_start", "before_first_test", "total"} in seconds, and
    # "warm": whether a zygote forked its kernel
    notebooks: list[dict] = field(default_factory=list)
    worker: str = ""          # host:pid of the worker process
    started: float = 0.0      # wall clock (time.time()) when grading this student began and ended
    finished: float = 0.0
    # per notebook: utils.grading.batch_report.NotebookStatus as a dict (graded, or failed and why)
    statuses: list[dict] = field(default_factory=list)
    # the worker lost while it held this student's shard (the student was graded again from scratch on `worker`)
    lost_worker: str = ""


# --------------------------------------------------------------------------- worker side

_APPS: dict = {}   # (root, db_url, warm) -> (autograde app, feedback app), one per worker process
_TIMINGS: list[dict] = []


def _record_timing(timing: dict) -> None:
    """``SandboxedExecute.timing_hook`` of this worker: keeps each notebook's timings."""
    _TIMINGS.append(timing)


def _config_argv(db_url: str | None, log_level: str = "ERROR") -> list[str]:
    """Command-line options for nbgrader apps: the gradebook override and a quiet log."""
    return [f"--log-level={log_level}"] + ([f"--CourseDirectory.db_url={db_url}"] if db_url else [])


def _apps(root: str, db_url: str | None, warm_kernels: bool = True):
    """nbgrader's autograde and generate_feedback apps, configured as on the command line, cached."""
    key = (root, db_url, warm_kernels)
    if key not in _APPS:
        from nbgrader.apps import AutogradeApp, GenerateFeedbackApp
        from traitlets.config import Config
        if root not in sys.path:
            sys.path.insert(0, root)
        autograde_app, feedback_app = AutogradeApp(), GenerateFeedbackApp()
        with contextlib.chdir(root):   # nbgrader reads nbgrader_config.py from the working directory
            for app in (autograde_app, feedback_app):
                app.initialize(_config_argv(db_url) + [f"--SandboxedExecute.warm_kernels={warm_kernels}"])
        autograde_app.update_config(Config({"SandboxedExecute": {"timing_hook": _record_timing},
                                            # the coordinator ran the preflight and reports for the batch
                                            "ReportingAutograde": {"preflight": False, "report": False}}))
        _APPS[key] = (autograde_app, feedback_app)
    return _APPS[key]


def _convert(app, converter_cls, assignment: str, student: str) -> tuple[list[str], list[dict]]:
    """Run one nbgrader converter for one student in this process.

    Returns the errors nbgrader logged ([] when it succeeded: nbgrader reports a failed submission
    by raising NbGraderException at the end of ``convert_notebooks``), and the status of each
    notebook when the converter keeps them (ReportingAutograde).
    """
    from nbgrader.converters import NbGraderException

    from utils.grading.batch_report import ErrorRecords
    handler = ErrorRecords()
    app.log.addHandler(handler)
    try:
        app.coursedir.assignment_id = assignment
        app.coursedir.student_id = glob.escape(student)
        converter = converter_cls(coursedir=app.coursedir, parent=app)
        converter.force = True
        try:
            converter.start()
            errors = []
        except NbGraderException as exc:
            errors = handler.messages or [str(exc)]
        except Exception:   # one student's failure never stops the shard
            errors = handler.messages + [traceback.format_exc()]
        return errors, [asdict(s) for s in getattr(converter, "statuses", [])]
    finally:
        app.log.removeHandler(handler)
        app.coursedir.student_id = "*"


def _summary(messages: list[str]) -> str:
    useful = [m for m in messages if not m.startswith("Please see the error log")]
    text = "\n".join(useful or messages).strip()
    return text[-4000:]


def grade_shard(root: str, assignment: str, students: list[str], db_url: str | None = None,
                feedback: bool = True, retries: int = 1, warm_kernels: bool = True) -> list[dict]:
    """Autograde (and generate feedback for) ``students`` of ``assignment`` in this process."""
    from utils.grading.batch_report import ReportingAutograde
    from utils.grading.submission_repair import SafeGenerateFeedback
    autograde_app, feedback_app = _apps(root, db_url, warm_kernels)
    worker = f"{os.uname().nodename}:{os.getpid()}"
    results = []
    for student in students:
        start, started = time.perf_counter(), time.time()
        attempts, errors = 0, []
        while attempts <= retries:
            attempts += 1
            del _TIMINGS[:]
            errors, statuses = _convert(autograde_app, ReportingAutograde, assignment, student)
            locked = any("database is locked" in e or "could not serialize" in e for e in errors)
            if not errors or not locked:
                break
        timings = list(_TIMINGS)
        if not errors and feedback:   # also for a notebook graded with a problem: its feedback says what
            errors = [f"generate_feedback: {e}" for e in
                      _convert(feedback_app, SafeGenerateFeedback, assignment, student)[0]]
        problems = [f"{s['notebook']}: {s['why']}" for s in statuses if not s["graded"]]
        results.append(asdict(StudentResult(
            student=student, assignment=assignment, ok=not errors and not problems,
            seconds=time.perf_counter() - start, error=_summary(errors) or "\n".join(problems), attempts=attempts,
            notebooks=timings, worker=worker, started=started, finished=time.time(), statuses=statuses)))
    return results


# --------------------------------------------------------------------------- coordinator side


def course_settings(root: Path, db_url: str | None = None):
    """The course's ``CourseDirectory`` (gradebook, course id, folders) as nbgrader would configure it."""
    from nbgrader.apps import AutogradeApp
    app = AutogradeApp()
    with contextlib.chdir(root):
        app.initialize(_config_argv(db_url))
    return app.coursedir


def find_students(coursedir, assignment: str, patterns: list[str] | None = None) -> list[str]:
    """Students with a submitted/<student>/<assignment>/ folder, sorted (nbgrader's order)."""
    pattern = coursedir.format_path(coursedir.submitted_directory, "*", assignment)
    prefix, _, suffix = coursedir.format_path(coursedir.submitted_directory, "\0", assignment).partition("\0")
    students = []
    for folder in sorted(glob.glob(pattern)):
        if not os.path.isdir(folder):
            continue
        student = folder[len(prefix):len(folder) - len(suffix)] if suffix else folder[len(prefix):]
        if patterns and not any(fnmatch.fnmatchcase(student, p) for p in patterns):
            continue
        students.append(student)
    exclude = set(filter(None, (coursedir.student_id_exclude or "").split(",")))
    return [s for s in students if s not in exclude]


def prepare_gradebook(coursedir, assignments: list[str], students: list[str]) -> None:
    """Create the tables, the course and every student before the shards start writing.

    Concurrent first writes (table creation, the course row, the same student graded for two
    assignments at once) would race; afterwards each shard only writes its own submissions.
    """
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        for assignment in assignments:
            try:
                gb.find_assignment(assignment)
            except MissingEntry:
                raise SystemExit(f"assignment {assignment!r} is not in the gradebook {coursedir.db_url}: "
                                 f"run `nbgrader generate_assignment {assignment}` first") from None
        for student in sorted(set(students)):
            try:
                gb.find_student(student)
            except MissingEntry:
                gb.update_or_create_student(student)


def shard(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def default_shard_size(n_students: int, n_workers: int) -> int:
    return max(1, min(16, math.ceil(n_students / max(1, 4 * n_workers))))


def export_csv(root: Path, db_url: str | None, to: str) -> None:
    """``nbgrader export --to <to>`` in this process."""
    from nbgrader.apps import ExportApp
    app = ExportApp()
    with contextlib.chdir(root):
        app.initialize(_config_argv(db_url) + [f"--ExportPlugin.to={to}"])
        app.start()


def preflight(root: Path, assignments: list[str], db_url: str | None = None, warm_kernels: bool = True) -> list:
    """Check, once for the batch, that a grading kernel of each notebook imports what this grader uses.

    Raises :class:`~utils.grading.preflight.PreflightError`, with the reason, when one would not;
    returns each notebook's :class:`~utils.grading.preflight.PreflightResult` otherwise.
    """
    from nbgrader.apps import AutogradeApp

    from utils.grading.batch_report import ReportingAutograde
    app = AutogradeApp()
    with contextlib.chdir(root):   # nbgrader reads nbgrader_config.py from the working directory
        app.initialize(_config_argv(db_url) + [f"--SandboxedExecute.warm_kernels={warm_kernels}"])
    converter = ReportingAutograde(coursedir=app.coursedir, parent=app)
    if not converter.preflight:   # c.ReportingAutograde.preflight in nbgrader_config.py
        return []
    return converter.run_preflight(assignments)


def start_client(workers: int | None, scheduler: str | None, quiet: bool = True):
    from distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           memory_limit=0, dashboard_address=None,
                           silence_logs=logging.ERROR if quiet else logging.WARNING)
    return Client(cluster), cluster


def grade(root: Path, assignments: list[str], *, workers: int | None = None, scheduler: str | None = None,
          shard_size: int | None = None, students: list[str] | None = None, db_url: str | None = None,
          feedback: bool = True, export_to: str | None = "grades.csv", progress: bool = True,
          warm_kernels: bool = True, client=None, check_kernel: bool = True,
          on_shard=None) -> list[StudentResult]:
    """Grade ``assignments`` of the course at ``root`` on Dask; returns one result per student.

    With ``check_kernel``, the preflight (:func:`preflight`) runs first and its PreflightError
    stops the batch before any student is graded. ``on_shard(results)``, when given, is called with
    each shard's results as they arrive.

    A worker lost in the middle of the batch (a crash, a machine gone) loses no student: Dask gives
    its shards to the other workers (``distributed.scheduler.allowed-failures`` times at most), which
    grade them again from scratch (``--force``: nbgrader replaces the autograded folder and updates
    the gradebook's submission), and their results carry ``lost_worker``.
    """
    from distributed import as_completed
    root = Path(root).resolve()
    coursedir = course_settings(root, db_url)
    jobs = {a: find_students(coursedir, a, students) for a in assignments}
    prepare_gradebook(coursedir, assignments, [s for ss in jobs.values() for s in ss])
    if check_kernel:
        start = time.perf_counter()
        checked = preflight(root, [a for a in assignments if jobs[a]], db_url, warm_kernels)
        if progress and checked:
            print(f"Preflight passed for {len(checked)} notebook(s) in {time.perf_counter() - start:.1f} s: grading "
                  f"kernels import utils from {checked[0].modules['utils']['file']}, as this grader.", file=sys.stderr)
    own_client = client is None
    cluster = None
    if own_client:
        client, cluster = start_client(workers, scheduler)
    results: list[StudentResult] = []
    try:
        n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})) or (workers or 1))
        total = sum(len(s) for s in jobs.values())
        size = shard_size or default_shard_size(total, n_workers)
        futures = {}
        for assignment, names in jobs.items():
            for part in shard(names, size):
                future = client.submit(grade_shard, str(root), assignment, part, db_url, feedback,
                                       warm_kernels=warm_kernels, pure=False, retries=0)
                futures[future] = (assignment, part)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="student", desc=f"grading {', '.join(assignments)}", file=sys.stderr)
        for future in as_completed(list(futures)):
            assignment, part = futures[future]
            try:
                shard_results = [StudentResult(**r) for r in future.result()]
            except Exception as exc:   # e.g. workers kept dying on this shard (KilledWorker): not the batch
                why = f"the grading task failed ({type(exc).__name__}: {exc})"
                shard_results = [StudentResult(s, assignment, False, 0.0, why) for s in part]
            # read: a worker lost later must not make Dask grade these students again behind our back
            future.release()
            results += shard_results
            if on_shard is not None:
                on_shard(shard_results)
            if bar is not None:
                bar.update(len(part))
                failed = sum(not r.ok for r in results)
                if failed:
                    bar.set_postfix(errors=failed)
        if bar is not None:
            bar.close()
        lost = lost_workers(client, {future.key: job for future, job in futures.items()})
        for r in results:
            r.lost_worker = lost.get((r.assignment, r.student), "")
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
    if export_to:
        export_csv(root, db_url, export_to)
    order = {(a, s): i for i, (a, s) in enumerate((a, s) for a in assignments for s in jobs[a])}
    return sorted(results, key=lambda r: order.get((r.assignment, r.student), 0))


def lost_workers(client, shards: dict) -> dict[tuple[str, str], str]:
    """(assignment, student) -> address of the worker that held the student's shard when it was lost.

    ``shards`` maps each task's key to its (assignment, students). The scheduler logs every worker it
    removes with the tasks it was running or holding (event "remove-worker"); those tasks ran again.
    """
    lost = {}
    for _, event in client.get_events("all"):
        if isinstance(event, dict) and event.get("action") == "remove-worker":
            for key in [*event.get("processing-tasks", ()), *event.get("lost-computed-tasks", ())]:
                if key in shards:
                    assignment, part = shards[key]
                    lost.update({(assignment, student): event["worker"] for student in part})
    return lost


def startup_summary(results: list[StudentResult]) -> dict[str, dict[str, float]]:
    """Per assignment: mean seconds per notebook to start the kernel and to reach the first test."""
    out: dict[str, dict[str, float]] = {}
    for assignment in dict.fromkeys(r.assignment for r in results):
        rows = [nb for r in results if r.assignment == assignment for nb in r.notebooks]
        if rows:
            out[assignment] = {key: sum(nb[key] for nb in rows) / len(rows)
                               for key in ("kernel_start", "before_first_test", "total")}
            out[assignment]["warm"] = sum(bool(nb.get("warm")) for nb in rows)
            out[assignment]["notebooks"] = len(rows)
    return out


def status_rows(result: StudentResult) -> list:
    """The rows of one student in the status table (utils.grading.batch_report.format_table)."""
    from utils.grading.batch_report import NotebookStatus
    rows = [NotebookStatus(**s) for s in result.statuses]
    if not result.ok and all(row.graded for row in rows):   # e.g. a lost worker, or generate_feedback failed
        lines = result.error.strip().splitlines()
        rows.append(NotebookStatus(result.student, result.assignment, "", False,
                                   (lines[-1] if lines else "unknown error")[:300]))
    return rows or [NotebookStatus(result.student, result.assignment, "", True)]


def grading_failures(results: list[StudentResult]) -> dict[tuple[str, str], str]:
    """(student, assignment) -> the last line of why it could not be graded, for the class report."""
    return {(r.student, r.assignment): (r.error.strip().splitlines() or ["unknown error"])[-1]
            for r in results if not r.ok}


def flagged_students(root: Path, assignments: list[str]) -> dict[tuple[str, str], list[str]]:
    """(student, assignment) -> the rules of the review flags in the student's graded notebooks."""
    from .review_flags import collect
    flagged: dict[tuple[str, str], list[str]] = {}
    for assignment in assignments:
        for flag in collect(root, assignment)[0]:
            flagged.setdefault((flag.student, assignment), []).append(flag.rule)
    return flagged


def attention_lines(results: list[StudentResult], flagged: dict[tuple[str, str], list[str]]) -> list[str]:
    """One line per submission that needs a person: could not be graded, or flagged for review."""
    from .review_flags import _printable
    lines = []
    for r in results:
        who = f"{_printable(r.student)}/{r.assignment}"
        if not r.ok:
            why = r.error.strip().splitlines()
            lines.append(f"✗ {who}: not graded: {_printable((why[-1] if why else 'unknown error')[:300])}")
        rules = flagged.get((r.student, r.assignment))
        if rules:
            lines.append(f"⚑ {who}: flagged for review ({len(rules)} flag{'s' if len(rules) != 1 else ''}: "
                         f"{', '.join(sorted(set(rules)))}); `python -m utils.instructor.review_flags "
                         f"{r.assignment}` shows the lines")
    return lines


def report(results: list[StudentResult], seconds: float, out=sys.stdout, root: Path | None = None,
           verbose: bool = False) -> int:
    """Print one line for the batch and one per submission that needs attention (nothing for the others);
    with ``verbose`` also the timings and every student's status. The exit status: 1 when any failed."""
    from utils.grading.batch_report import format_table
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    print(f"\nGraded {len(ok)} of {len(results)} submissions in {seconds:.1f} s"
          + (f" ({seconds / len(results):.2f} s per submission)" if results else "") + ".", file=out)
    lost = sorted({r.lost_worker for r in results if r.lost_worker})
    if lost:
        regraded = sum(bool(r.lost_worker) for r in results)
        held = (f"{regraded} students {'it' if len(lost) == 1 else 'they'} held were" if regraded > 1
                else f"student {'it' if len(lost) == 1 else 'they'} held was")
        print(f"  ⚠ {len(lost)} worker{'s' if len(lost) > 1 else ''} lost during the batch ({', '.join(lost)}): "
              f"the {held} graded from scratch on the other workers.", file=out)
    flagged = flagged_students(root, sorted({r.assignment for r in results})) if root is not None else {}
    for line in attention_lines(results, flagged):
        print(f"  {line}", file=out)
    if verbose:
        for assignment, s in startup_summary(results).items():
            print(f"  {assignment}: per notebook {s['kernel_start']:.2f} s to start the kernel, "
                  f"{s['before_first_test']:.2f} s before the first test, {s['total']:.2f} s in all "
                  f"({s['notebooks']:g} notebooks, {s['warm']:g} with a warm kernel)", file=out)
        if results:
            print("\nGrading status:\n" + format_table([row for r in results for row in status_rows(r)]), file=out)
        for r in failed:
            for line in r.error.strip().splitlines()[:-1][-8:]:
                print(f"      {r.student}/{r.assignment}: {line[:300]}", file=out)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.instructor.parallel",
        description="Autograde, generate feedback and export in parallel on Dask (same nbgrader configuration).")
    parser.add_argument("assignments", nargs="+", metavar="assignment")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: number of CPUs); ignored with --scheduler")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    parser.add_argument("--shard-size", type=int, default=None, help="students per task")
    parser.add_argument("--student", default=None, help="comma-separated glob patterns of student ids")
    parser.add_argument("--db-url", default=None, help="gradebook URL (default: CourseDirectory.db_url)")
    parser.add_argument("--root", default=".", help="course root (default: current folder)")
    parser.add_argument("--cold-kernels", action="store_true",
                        help="start every grading kernel anew, as nbgrader does, instead of forking it "
                             "from a warm zygote")
    parser.add_argument("--no-feedback", action="store_true", help="skip generate_feedback")
    parser.add_argument("--no-export", action="store_true", help="skip the CSV export")
    parser.add_argument("--to", default="grades.csv", help="CSV file of the export (default grades.csv)")
    parser.add_argument("--timings", default=None, help="write per-student results and timings to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true",
                        help="skip the class report (reports/class_report.html, utils/instructor/class_report.py)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the timings and every student's grading status")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"{root} has no nbgrader_config.py: run from the course root or pass --root")
    from utils.grading.preflight import PreflightError
    start = time.perf_counter()
    try:
        results = grade(root, args.assignments, workers=args.workers, scheduler=args.scheduler,
                        shard_size=args.shard_size,
                        students=[p for p in (args.student or "").split(",") if p] or None,
                        db_url=args.db_url, feedback=not args.no_feedback,
                        export_to=None if args.no_export else args.to, progress=not args.quiet,
                        warm_kernels=not args.cold_kernels)
    except PreflightError:   # the grader has logged why; no student was graded
        return 2
    seconds = time.perf_counter() - start
    if args.timings:
        Path(args.timings).write_text(json.dumps([asdict(r) for r in results], indent=1))
    status = report(results, seconds, root=root, verbose=args.verbose)
    if not args.no_report and results:
        from .class_report import build_report, summary_lines
        report_result = build_report(root, args.assignments, db_url=args.db_url, failures=grading_failures(results))
        print("\n".join(summary_lines(report_result)))
    return status


if __name__ == "__main__":
    # Run the module's own copy, so that Dask sends grade_shard to workers by reference
    # (functions of __main__ would be pickled by value, with a fresh cache per task).
    from utils.instructor.parallel import main as _main
    sys.exit(_main())
