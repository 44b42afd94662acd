"""The parallel grader on a Dask cluster started as a real one is, losing a worker in the middle of the batch.

The cluster is ``dask scheduler`` and two ``dask worker --nthreads 1`` processes on 127.0.0.1
(utils/instructor/dask_cluster.py), the gradebook a throwaway PostgreSQL server
(utils/instructor/pgserver.py). Two of the deformable_conv assignment's sample submissions (the
solution and its first sample mistake) are graded one student per task, so each worker grades one at
the same time. The mistake's first answer cell also waits SLOW_STUDENT_S seconds (a slow submission),
so its grading surely outlasts the solution's; as soon as the solution's result is in, the other worker
is killed with SIGKILL, once the student it grades is half-written (its autograded folder and its
submission in the gradebook exist). A batch over before the kill fails the test.
SIGKILL, not SIGTERM, because it is the case that can lose work: the worker gets no chance to finish
the student it is grading or to hand anything back (a crash, the OOM killer, a machine gone), and it
is gone at once, so the rerun of its task never overlaps the dead worker's own writes. (On SIGTERM a
worker closes gracefully and the scheduler reruns its tasks as well.)

Every student must then be graded exactly once in the results and in the gradebook, by the surviving
worker for the killed worker's students, the quiet report must say a worker was lost, and every
score must equal nbgrader's own sequential ``autograde`` of the same submissions with the same
grading secret (into SQLite), graded first in the same test. Skipped only when the PostgreSQL server
binaries are missing.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from distributed import Client
from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor import parallel
from utils.instructor.course import REPO_ROOT, build_submissions, generate_release, nbgrader
from utils.instructor.dask_cluster import loopback_cluster

ASSIGNMENT = "deformable_conv"
COURSE_ID = "dl-architectures"
SLOW_STUDENT_S = 20   # how much longer the mistake's grading takes than the solution's


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` now (children, their children, ...)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().split(")")[-1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        children = [p for p, parent in parents.items() if parent == current and p not in found]
        found.update(children)
        todo += children
    return found


def wait_until_gone(pids: set[int], seconds: float = 15) -> set[int]:
    deadline = time.monotonic() + seconds
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def scores(db_url: str, students: list[str]) -> dict:
    """student -> (the number of its submissions, {notebook: (code score, {cell: (auto score, max score)})})."""
    out = {}
    with Gradebook(db_url, COURSE_ID) as gb:
        submissions = [s for s in gb.find_assignment(ASSIGNMENT).submissions]
        for student in students:
            notebooks = {nb.name: (nb.code_score, {g.name: (g.auto_score, g.max_score) for g in nb.grades})
                         for nb in gb.find_submission(ASSIGNMENT, student).notebooks}
            out[student] = (sum(s.student.id == student for s in submissions), notebooks)
    return out


def slow_down(submission: Path, seconds: float) -> None:
    """Make the first answer cell of each notebook in ``submission`` wait ``seconds`` before its code."""
    for path in sorted(submission.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
        cell.source = f"import time\ntime.sleep({seconds})\n" + cell.source
        nbformat.write(nb, path)


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- the helper alone


def test_the_command_line_starts_and_stops_a_loopback_cluster(tmp_path):
    folder = tmp_path / "cluster"
    cli = [sys.executable, "-m", "utils.instructor.dask_cluster"]
    start = subprocess.run([*cli, "start", "--workers", "2", "--dir", str(folder)],
                           text=True, capture_output=True, timeout=180)
    assert start.returncode == 0, start.stderr[-3000:]
    address = start.stdout.strip()
    try:
        assert address.startswith("tcp://127.0.0.1:"), start.stdout
        with Client(address, timeout="10s") as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        assert sorted(w["name"] for w in workers.values()) == ["worker-0", "worker-1"]
        assert all(w["nthreads"] == 1 and a.startswith("tcp://127.0.0.1:") for a, w in workers.items()), workers
        pids = set(json.loads((folder / "cluster.json").read_text())["pids"].values())
        below = set().union(*(descendants(p) for p in pids))   # the nannies' worker processes
        assert len(pids) == 3 and len(below) >= 2, (pids, below)
    finally:
        stop = subprocess.run([*cli, "stop", "--dir", str(folder)], text=True, capture_output=True, timeout=120)
    assert stop.returncode == 0, stop.stderr[-3000:]
    assert "stopped worker-0, worker-1, scheduler" in stop.stderr
    assert not wait_until_gone(pids | below), "processes of the cluster still run after stop"
    assert not (folder / "cluster.json").exists()


# --------------------------------------------------------------------------- a worker lost mid-batch


def test_a_worker_killed_mid_batch_loses_no_student(postgres, tmp_path):
    t0 = time.perf_counter()
    # a course with the assignment released and two sample submissions (one slow), graded by nbgrader in sequence
    sequential = tmp_path / "sequential"
    shutil.copytree(REPO_ROOT / "source" / ASSIGNMENT, sequential / "source" / ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", sequential / "nbgrader_config.py")
    generate_release(sequential, [ASSIGNMENT])
    build_submissions(ASSIGNMENT, sequential, 1)
    shutil.rmtree(sequential / "submitted" / "untouched")   # two students: one per worker, graded at once
    students = sorted(p.name for p in (sequential / "submitted").iterdir())
    assert len(students) == 2 and "solution" in students, students
    slow = next(s for s in students if s != "solution")
    slow_down(sequential / "submitted" / slow / ASSIGNMENT, SLOW_STUDENT_S)
    nbgrader("autograde", ASSIGNMENT, "--force", root=sequential, timeout=600)
    expected = scores(sqlite_gradebook_url(sequential), students)
    assert len({str(nbs) for _, nbs in expected.values()}) == 2, expected   # two different results
    t_sequential = time.perf_counter() - t0

    # the same submissions and grading secret in a course whose gradebook is PostgreSQL
    course = tmp_path / "course"
    for name in ("source", "release", "submitted"):
        shutil.copytree(sequential / name, course / name)
    for name in ("nbgrader_config.py", ".grading_secret"):
        shutil.copy2(sequential / name, course / name)
    nbgrader("generate_assignment", ASSIGNMENT, "--force", f"--CourseDirectory.db_url={postgres.db_url}", root=course)

    with loopback_cluster(workers=2) as cluster, Client(cluster.scheduler, timeout="10s") as watcher:
        nanny = {name: cluster.processes[name].pid for name in ("worker-0", "worker-1")}
        names = {address: name for name, address in cluster.addresses.items()}
        by_pid = {pid: names[address] for address, pid in watcher.run(os.getpid).items()}   # worker processes
        killed: dict = {}

        def half_graded(pending: list[str]) -> dict[str, bool]:
            """Pending student -> whether grading began: an autograded folder and a submission in the gradebook."""
            with Gradebook(postgres.db_url, COURSE_ID) as gb:
                begun = {s.student.id for s in gb.find_assignment(ASSIGNMENT).submissions}
            return {s: (course / "autograded" / s / ASSIGNMENT).is_dir() and s in begun for s in pending}

        def kill_once(shard_results):
            """At the first result: SIGKILL the other worker once the student it grades is half-written."""
            if killed:
                return
            first = by_pid.get(int(shard_results[0].worker.rpartition(":")[2]))
            holding = {names[address]: keys for address, keys in watcher.processing().items() if keys}
            victim = next((n for n in holding if n != first), next(iter(holding), None))
            pending = [s for s in students if s != shard_results[0].student]
            deadline = time.monotonic() + 120
            while not any((begun := half_graded(pending)).values()) and time.monotonic() < deadline:
                time.sleep(0.2)
            killed.update(first=first, victim=victim, held=len(holding.get(victim, ())), half_graded=begun,
                          pending=sum(len(k) for k in holding.values()))
            if victim is not None:
                killed["processes"] = {nanny[victim]} | descendants(nanny[victim])
                killed["address"] = cluster.stop_worker(victim, signal.SIGKILL)
                killed["left"] = wait_until_gone(killed["processes"])

        t1 = time.perf_counter()
        results = parallel.grade(course, [ASSIGNMENT], scheduler=cluster.scheduler, shard_size=1,
                                 db_url=postgres.db_url, feedback=False, export_to=None, progress=False,
                                 on_shard=kill_once)
        t_parallel = time.perf_counter() - t1
        survivor = next(n for n in nanny if n != killed.get("victim"))
        survivor_pid = next(pid for pid, name in by_pid.items() if name == survivor)
        cluster_folder, groups = cluster.folder, set(nanny.values())

    # the kill happened in the middle of the batch, on a worker that held a student's task
    assert killed.get("victim"), f"no worker held a task when the first result arrived: the batch was over {killed}"
    assert killed["held"] >= 1 and killed["pending"] >= 1, killed
    assert killed["first"] != killed["victim"], killed
    assert list(killed["half_graded"]) == [slow], f"the killed worker should hold {slow}: {killed}"
    assert not killed["left"], f"processes of the killed worker outlived it: {killed['left']}"
    # every student exactly once, graded; the killed worker's students graded again by the survivor
    assert sorted(r.student for r in results) == students
    assert all(r.ok for r in results), [(r.student, r.error) for r in results if not r.ok]
    regraded = [r for r in results if r.lost_worker]
    assert len(regraded) == killed["held"] and all(r.lost_worker == killed["address"] for r in regraded), results
    assert all(r.worker.endswith(f":{survivor_pid}") for r in regraded), [(r.student, r.worker) for r in regraded]
    # the killed worker's student had been half-written (autograded folder, submission row) and was graded anew
    assert [r.student for r in regraded] == [s for s, begun in killed["half_graded"].items() if begun], killed
    # the quiet report says so in one line
    out = io.StringIO()
    assert parallel.report(results, t_parallel, out=out) == 0
    lines = [line for line in out.getvalue().splitlines() if "lost" in line]
    held = f"{len(regraded)} students it held were" if len(regraded) > 1 else "student it held was"
    assert lines == [f"  ⚠ 1 worker lost during the batch ({killed['address']}): the {held} graded from scratch "
                     "on the other workers."], out.getvalue()
    # the gradebook: one submission per student, and the scores of sequential grading
    assert scores(postgres.db_url, students) == {s: (1, nbs) for s, (_, nbs) in expected.items()}
    # each autograded folder holds what sequential grading left there, nothing of the dead worker
    for student in students:
        folder = Path(ASSIGNMENT)
        assert files(course / "autograded" / student / folder) == files(sequential / "autograded" / student / folder)
    # the cluster is gone: no process of its groups, no mount or folder left behind
    assert not wait_until_gone(groups), "a worker outlived the cluster"
    assert not cluster_folder.exists()
    assert str(cluster_folder) not in Path("/proc/self/mountinfo").read_text()
    print(f"\nsequential autograde {t_sequential:.1f} s, parallel with one worker killed {t_parallel:.1f} s, "
          f"whole test {time.perf_counter() - t0:.1f} s; killed {killed}")
