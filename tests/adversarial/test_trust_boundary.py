"""The grading trust boundary (issue 14): attacks of every class in one batch, beside honest students.

One ``nbgrader autograde`` batch per kind of kernel (new, warm) grades the students of
:mod:`tests.adversarial.attacks`: two honest students (who must keep full marks), the plain wrong
submission (the most any attacker may earn) and an attacker or two per class of the issue. The
tests then check what each class must not achieve: writing through a link the kernel planted,
grading a submission made of links, reaching past the kernel's sandbox or outliving it, hanging or
exhausting the reader of recorded outputs, script in the feedback, answers borrowed from another
student's inputs, the course's NumPy reference in a from-scratch notebook, and exceeding a kernel's
budgets. Before the batch the leaker is graded alone once: the copycat is built from what it
printed, and the batch regrades it.

Checks are on behaviour (scores, files byte for byte, modes, processes seen on the machine, the
grader's peak memory, a few key words in the feedback), not on exact messages. Process-isolation
outcomes that only warm kernels could break are checked with both kinds.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from utils.grading.gradebook import sqlite_gradebook_url
from utils.instructor.course import REPO_ROOT, generate_release

from . import attacks

MEMORY_MB = 2048            # the kernel's memory budget in this batch
NOTEBOOK_SECONDS = 45       # the wall-clock budget of one notebook in this batch
CELL_SECONDS = 20
LIMITS = [f"--SandboxedExecute.timeout={CELL_SECONDS}", f"--SandboxedExecute.memory_limit_mb={MEMORY_MB}",
          "--SandboxedExecute.cpu_time_limit=300", f"--SandboxedExecute.notebook_time_limit={NOTEBOOK_SECONDS}",
          "--SandboxedExecute.max_processes=100"]
KERNELS = {"new kernels": [], "warm kernels": ["--SandboxedExecute.warm_kernels=True"]}
BATCH_TIMEOUT = 900         # seconds; a grader that hangs on a FIFO is stopped here
DAEMON_SECONDS = 300        # how long a daemon an attacker leaves behind keeps trying
# No process of the batch (grader or kernel; a kernel has MEMORY_MB) may reach this resident size: the
# grader never holds a decompressed bomb (3 GiB) or a 400 MB notebook parsed.
PEAK_MEMORY_BYTES = 3 * 2**30


@dataclass
class Run:
    """One nbgrader command: exit status, output, seconds, whether it was stopped, the peak resident size."""

    returncode: int
    log: str
    seconds: float
    timed_out: bool
    peak_rss_bytes: int


def _nbgrader(root: Path, *args: str, timeout: float = BATCH_TIMEOUT, watch: ProcessWatch | None = None) -> Run:
    """``nbgrader <args>`` in ``root``; its process tree's peak resident size comes from wait4.

    ``watch`` is told the grader's process id, to tell this batch's kernels from other processes.
    """
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    log_path = root / f"nbgrader-{args[0]}-{time.monotonic_ns()}.log"   # kept, to read after a failure
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    if watch is not None:
        watch.grader = process.pid
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            _, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    text = log_path.read_text(errors="replace")
    return Run(process.returncode, text, seconds, timed_out, usage.ru_maxrss * 1024)


# ----------------------------------------------------------------------------- processes on this machine

def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cwd(pid: str) -> tuple[int, int] | None:
    """The identity (device, inode) of a process's working folder, the same whatever its mount namespace."""
    try:
        info = os.stat(f"/proc/{pid}/cwd")
        return info.st_dev, info.st_ino
    except OSError:
        return None


def _parents() -> dict[str, str]:
    """pid -> parent pid of every process on the machine."""
    found = {}
    for pid in os.listdir("/proc"):
        try:
            found[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
    return found


def _descendants(root: int) -> set[str]:
    children: dict[str, list[str]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [str(root)]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _attack_processes() -> dict[str, str]:
    """pid -> command line of every process an attack left behind (its command line names the marker)."""
    return {pid: cmd for pid in os.listdir("/proc") if pid.isdigit() and attacks.MARKER in (cmd := _cmdline(pid))}


class ProcessWatch(threading.Thread):
    """During a batch: every time a process an attack started is alive beside another student's kernel.

    A kernel is a process of the batch (a descendant of the grader, ``grader``) running
    ``ipykernel_launcher`` or forked by a zygote, working in a student's folder (the zygote itself
    works in ``/``); "another student's" means working in another folder than the attack's process.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.grader = 0
        self.overlaps: list[str] = []
        self.seen: set[str] = set()

    def run(self):
        while not self.stopping.is_set():
            lingering = _attack_processes()
            if lingering and self.grader:
                kernels = {}
                for pid in _descendants(self.grader):
                    cmd = _cmdline(pid)
                    if (("ipykernel_launcher" in cmd or "zygote_server" in cmd) and attacks.MARKER not in cmd
                            and os.path.basename(cmd.split(" ")[0]) != "bwrap"
                            and os.path.realpath(f"/proc/{pid}/cwd") != "/"):
                        kernels[pid] = _cwd(pid)
                for pid, cmd in lingering.items():
                    name = next(word for word in cmd.split() if attacks.MARKER in word)
                    self.seen.add(name)
                    folder = _cwd(pid)
                    others = [k for k, f in kernels.items() if f is not None and folder is not None and f != folder]
                    if others and len(self.overlaps) < 20:
                        self.overlaps.append(f"{name} (pid {pid}) alive beside kernel(s) {others}")
            self.stopping.wait(0.25)


# ----------------------------------------------------------------------------- files

def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``, links not followed: a link's target, a file's SHA-256 and mode."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(folder))] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda f=f: f.read(2**24), b""):
                        digest.update(block)
                found[str(path.relative_to(folder))] = ("file", digest.hexdigest(), stat.S_IMODE(info.st_mode))
            elif not stat.S_ISDIR(info.st_mode):
                found[str(path.relative_to(folder))] = ("special", stat.S_IFMT(info.st_mode))
    return found


def _file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


def _files_containing(folder: Path, needles: list[bytes]) -> list[str]:
    """Files under ``folder`` (links not followed) whose first 64 MiB hold one of ``needles``, and every link."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found.append(f"{path.relative_to(folder)} (a link)")
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    data = f.read(2**26)
                found += [f"{path.relative_to(folder)} ({needle[:20]!r})" for needle in needles if needle in data]
    return found


# ----------------------------------------------------------------------------- the batch

@dataclass
class Batch:
    root: Path
    kind: str
    expected: list[str]                  # every student of the batch
    scores: dict[str, float]
    best: float
    gradebook_error: str                 # why the gradebook could not be read after the batch ("" if it could)
    run: Run
    feedback_run: Run
    first: Run                           # the leaker graded alone, before the batch
    first_score: float | None
    first_leak: list[dict]
    secret: tuple[bytes, int] | None     # the secret's bytes and mode before the batch
    outside: Path
    outside_before: tuple[bytes, int]
    submitted_before: dict
    submitted_after: dict
    overlaps: list[str]
    attack_processes_seen: set[str]
    attack_processes_after: dict[str, str]


def _gradebook(root: Path) -> tuple[dict[str, float], float, str]:
    """Each student's code score, the most one can get, and why the gradebook could not be read ("" if it could).

    An attack may destroy the gradebook: the batch's tests then fail one by one instead of all at setup.
    """
    try:
        with Gradebook(sqlite_gradebook_url(root)) as gb:
            scores = {s.student.id: float(s.code_score) for s in gb.assignment_submissions(attacks.ASSIGNMENT)}
            return scores, float(gb.find_assignment(attacks.ASSIGNMENT).max_code_score), ""
    except Exception as exc:   # whatever an attack left in place of the database
        return {}, 0.0, f"the gradebook cannot be read: {type(exc).__name__}: {str(exc)[:200]}"


def _autograded(root: Path, student: str) -> Path:
    return root / "autograded" / student / attacks.ASSIGNMENT / f"{attacks.NOTEBOOK}.ipynb"


@pytest.fixture(scope="module", params=list(KERNELS))
def batch(request, tmp_path_factory) -> Batch:
    root = tmp_path_factory.mktemp("course")
    outside = tmp_path_factory.mktemp("outside") / "precious.txt"
    outside.write_text("a file of the grading machine, outside the course\n")
    outside.chmod(0o640)
    args = [*LIMITS, *KERNELS[request.param]]
    shutil.copytree(REPO_ROOT / "source" / attacks.ASSIGNMENT, root / "source" / attacks.ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    generate_release(root, [attacks.ASSIGNMENT])
    course = attacks.Course(root, outside, MEMORY_MB, DAEMON_SECONDS)
    expected = course.build() + [attacks.COPYCAT]

    first = _nbgrader(root, "autograde", attacks.ASSIGNMENT, "--force", f"--student={attacks.LEAKER}", *args)
    first_leak = attacks.leaked_inputs(_autograded(root, attacks.LEAKER)) \
        if _autograded(root, attacks.LEAKER).exists() else []
    first_score = _gradebook(root)[0].get(attacks.LEAKER)
    course.build_copycat(first_leak)

    secret_path = root / ".grading_secret"
    secret = _file_state(secret_path) if secret_path.exists() else None
    outside_before = _file_state(outside)
    submitted_before = _snapshot(root / "submitted")
    watch = ProcessWatch()
    watch.start()
    try:
        run = _nbgrader(root, "autograde", attacks.ASSIGNMENT, "--force", *args, watch=watch)
        feedback_run = _nbgrader(root, "generate_feedback", attacks.ASSIGNMENT, "--force")
    finally:
        watch.stopping.set()
        watch.join()
    time.sleep(1)   # a process killed with its sandbox is gone within a moment
    submitted_after = _snapshot(root / "submitted")
    huge = course.folder("c8_oversized_submission") / f"{attacks.NOTEBOOK}.ipynb"
    if huge.exists() and not huge.is_symlink():
        huge.unlink()   # 400 MB per kind of kernel; the tests only need its snapshot
    scores, best, gradebook_error = _gradebook(root)
    (root / "batch-summary.json").write_text(json.dumps(   # to read after a failure
        {"seconds": round(run.seconds), "exit status": run.returncode, "timed out": run.timed_out,
         "peak resident MiB": run.peak_rss_bytes // 2**20, "feedback seconds": round(feedback_run.seconds),
         "first run seconds": round(first.seconds), "scores": scores, "overlaps": watch.overlaps}, indent=1))
    return Batch(root, request.param, expected, scores, best, gradebook_error, run, feedback_run, first, first_score,
                 first_leak, secret, outside, outside_before, submitted_before, submitted_after, watch.overlaps,
                 watch.seen, _attack_processes())


def _feedback(batch: Batch, student: str) -> str:
    """The text a student reads in their feedback: the page's styles and scripts left out."""
    texts = []
    for path in sorted((batch.root / "feedback" / student / attacks.ASSIGNMENT).glob("*.html")):
        page = re.sub(r"<(style|script)\b.*?</\1\s*>", " ", path.read_text(errors="replace"), flags=re.S | re.I)
        texts.append(html.unescape(re.sub(r"<[^>]+>", " ", page)))
    return "\n".join(texts)


def _notes(batch: Batch, student: str, *words: str) -> list[str]:
    """The ``words`` (lower case) in ``student``'s feedback that the plain wrong submission's feedback lacks."""
    text, plain = _feedback(batch, student).lower(), _feedback(batch, attacks.PLAIN_WRONG).lower()
    return [word for word in words if word in text and word not in plain]


def _printed(batch: Batch, student: str, tag: str) -> list[str]:
    """What follows ``tag`` on each line ``student``'s kernel printed (its autograded notebook)."""
    path = _autograded(batch.root, student)
    if not path.exists():
        return []
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if line.startswith(tag + " "):
                    found.append(line[len(tag) + 1:])
    return found


def _log_tail(batch: Batch) -> str:
    return batch.run.log[-3000:]


# ----------------------------------------------------------------------------- every class: the batch itself

def test_batch_completes_and_grades_everyone(batch):
    assert not batch.run.timed_out, f"the batch was stopped after {BATCH_TIMEOUT} s\n" + _log_tail(batch)
    assert not batch.gradebook_error, batch.gradebook_error
    missing = sorted(set(batch.expected) - set(batch.scores))
    assert not missing, f"not in the gradebook: {missing}\n" + _log_tail(batch)
    if batch.kind == "warm kernels":
        assert "was forked by a warm zygote" in batch.run.log, _log_tail(batch)


def test_honest_students_keep_full_marks(batch):
    for student in attacks.HONEST:
        assert batch.scores.get(student) == batch.best, f"{student}: {batch.scores.get(student)} of {batch.best}"
    assert 0 < batch.scores.get(attacks.PLAIN_WRONG, 0) < batch.best


@pytest.mark.parametrize("student", attacks.ATTACKERS)
def test_no_attack_earns_more_than_the_plain_wrong_answer(batch, student):
    assert not batch.gradebook_error, batch.gradebook_error
    baseline = batch.scores[attacks.PLAIN_WRONG]
    score = batch.scores.get(student, 0.0)
    assert score <= baseline, f"{student} earned {score}, the plain wrong answer {baseline}"


def test_the_grader_names_no_honest_student_as_failed(batch):
    """A non-zero exit status may only come from students who could not be graded: never an honest one."""
    honest = [*attacks.HONEST, attacks.PLAIN_WRONG]
    blamed = [line for line in batch.run.log.splitlines()
              if any(s in line for s in honest) and re.search(r"error|fail|could not", line, re.IGNORECASE)]
    assert not blamed, "\n".join(blamed[:10])
    assert batch.feedback_run.returncode == 0, batch.feedback_run.log[-3000:]


# ----------------------------------------------------------------------------- class 1: links the kernel plants

def test_links_planted_by_kernels_write_nothing_through(batch):
    changed = {k: (batch.submitted_before.get(k), batch.submitted_after.get(k))
               for k in set(batch.submitted_before) | set(batch.submitted_after)
               if batch.submitted_before.get(k) != batch.submitted_after.get(k)}
    assert not changed, f"submitted/ changed: {sorted(changed)[:10]}"
    assert _file_state(batch.outside) == batch.outside_before, "the file outside the course changed"
    with sqlite3.connect(batch.root / "gradebook.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_secret_keeps_its_mode_and_content(batch):
    assert batch.secret is not None, "no .grading_secret after grading the first student"
    before, mode = batch.secret
    assert mode == 0o600
    assert _file_state(batch.root / ".grading_secret") == batch.secret


def test_no_secret_source_or_link_reaches_feedback_or_autograded(batch):
    assert batch.secret is not None
    secret = batch.secret[0].strip()
    in_feedback = _files_containing(batch.root / "feedback", [secret, b"BEGIN SOLUTION"])
    assert not in_feedback, in_feedback[:10]
    in_autograded = _files_containing(batch.root / "autograded", [secret, b"BEGIN SOLUTION"])
    assert not in_autograded, in_autograded[:10]


# ----------------------------------------------------------------------------- class 2: links in a submission

@pytest.mark.parametrize("student", ["c2_symlinked_notebook", "c2_hardlinked_notebook"])
def test_a_submission_made_of_links_gets_nothing_and_a_note(batch, student):
    assert batch.scores.get(student) == 0, f"{student}: {batch.scores.get(student)}"
    assert _notes(batch, student, "link"), f"no note about links in {student}'s feedback"


# ----------------------------------------------------------------------------- class 3: past the sandbox

def _not_graded(batch: Batch, student: str) -> str:
    return "" if _autograded(batch.root, student).exists() else f" ({student} has no autograded notebook)"


def test_a_kernel_sees_no_other_process_folder_or_pipe(batch):
    reports = _printed(batch, "c3_peek", "SNOOP")
    assert reports, "the snoop printed no report" + _not_graded(batch, "c3_peek")
    report = json.loads(reports[-1])
    assert report["copied_from"] is None, f"a classmate's answer was readable at {report['copied_from']}"
    assert not report["course_views"], f"the course is visible through {report['course_views']}"
    assert not report["pipes"], f"other processes' pipes are visible: {report['pipes']}"


def test_a_kernel_can_write_into_no_other_process_pipe(batch):
    hits = _printed(batch, "c3_saboteur", "JUNK")
    assert hits, "the saboteur printed no report" + _not_graded(batch, "c3_saboteur")
    assert hits[-1] == "[]", f"junk was written into {hits[-1]}"


def test_no_process_a_kernel_started_outlives_it(batch):
    assert not batch.overlaps, "\n".join(batch.overlaps)
    assert not batch.attack_processes_after, f"still running after the batch: {batch.attack_processes_after}"
    started = _printed(batch, "c3_saboteur", "daemons")
    assert started, "the saboteur started no daemon" + _not_graded(batch, "c3_saboteur")


# ----------------------------------------------------------------------------- class 4: recorded outputs

def test_unreadable_outputs_get_a_note_and_never_hang(batch):
    assert "zz_c4_outputs" in batch.scores, "the student whose outputs are a FIFO was not graded"
    assert "could not be read" in _feedback(batch, "zz_c4_outputs")


def test_the_grader_never_holds_a_bomb_or_a_huge_notebook(batch):
    assert batch.run.peak_rss_bytes < PEAK_MEMORY_BYTES, (
        f"a process of the batch reached {batch.run.peak_rss_bytes / 2**30:.1f} GiB "
        f"(at most {PEAK_MEMORY_BYTES / 2**30:.0f} GiB)")


# ----------------------------------------------------------------------------- class 5: student HTML

STUDENT_SCRIPT = [
    re.compile(r"<script[^>]*>[^<]*XSS_MARK", re.IGNORECASE),                 # a script the student wrote
    re.compile(r"<[a-z][^<>]*\son[a-z]+\s*=[^<>]*XSS_MARK", re.IGNORECASE),   # an event handler in a tag
    re.compile(r"<[a-z][^<>]*javascript:[^<>]*XSS_MARK", re.IGNORECASE),      # a javascript: link
    re.compile(r"<iframe[^<>]*XSS_MARK", re.IGNORECASE),
]


def test_student_html_is_sanitised(batch):
    """Markdown and outputs of the autograded notebook, and the feedback pages, hold no script of the student.

    Code cells' sources are left out of the notebook's text: they are shown as code, never rendered.
    """
    notebook = _autograded(batch.root, "c5_html")
    assert notebook.exists()
    nb = nbformat.read(notebook, as_version=4)
    rendered = [c.source for c in nb.cells if c.cell_type == "markdown"]
    rendered += [json.dumps(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]
    feedback = list((batch.root / "feedback" / "c5_html" / attacks.ASSIGNMENT).glob("*.html"))
    assert feedback, "no feedback for c5_html"
    for name, text in [(notebook.name, "\n".join(rendered))] + [(p.name, p.read_text(errors="replace"))
                                                                for p in feedback]:
        found = [m.group(0)[:120] for pattern in STUDENT_SCRIPT for m in pattern.finditer(text)]
        assert not found, f"{name}: {found[:5]}"
    scripts = [o for c in nb.cells for o in c.get("outputs", []) if "application/javascript" in o.get("data", {})]
    assert not scripts, "a javascript output is kept in the autograded notebook"
    assert "Offsets start at zero" in _feedback(batch, "c5_html"), "the written answer's text was lost"


# ----------------------------------------------------------------------------- class 6: hidden inputs

def test_one_students_inputs_are_worthless_to_another(batch):
    assert batch.first_leak, "the leaker printed no inputs\n" + batch.first.log[-2000:]
    assert batch.scores[attacks.COPYCAT] <= batch.scores[attacks.PLAIN_WRONG]


def test_regrading_draws_the_same_inputs_and_scores(batch):
    assert batch.first.returncode == 0, batch.first.log[-3000:]
    assert batch.first_score == batch.scores[attacks.LEAKER]
    assert attacks.leaked_inputs(_autograded(batch.root, attacks.LEAKER)) == batch.first_leak


# ----------------------------------------------------------------------------- class 7: from scratch

@pytest.mark.parametrize("student", ["c7_helper_in_thread", "c7_precomputed"])
def test_the_courses_numpy_reference_earns_nothing_or_is_flagged(batch, student):
    if batch.scores[student] <= batch.scores[attacks.PLAIN_WRONG]:
        return
    text = _feedback(batch, student)
    assert _notes(batch, student, "review") and ("computations" in text or "deform_conv2d_numpy" in text), \
        f"{student} earned {batch.scores[student]} and is not flagged for review with the evidence"


# ----------------------------------------------------------------------------- class 8: budgets per kernel

def test_processes_are_counted_per_kernel(batch):
    forks = _printed(batch, "c8_fork_bomb", "FORKS")
    assert forks, "the fork bomb printed no count"
    assert int(forks[-1]) < 300, "all 300 forks succeeded"


def test_memory_is_counted_per_kernel_with_its_tmpfs(batch):
    held = [int(x) for x in _printed(batch, "c8_memory", "HELD")]
    assert held, "the memory attack printed nothing"
    assert max(held) <= MEMORY_MB, f"{max(held)} MiB held at once under a {MEMORY_MB} MiB budget"


def test_disk_is_counted_per_kernel_and_costs_the_grader_nothing(batch):
    for folder in (batch.root / "autograded" / "c8_disk", batch.root / "feedback" / "c8_disk"):
        files = [p for p in folder.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        assert len(files) < 50 and size < 20 * 2**20, f"{folder.name}: {len(files)} files, {size} bytes"
    assert _notes(batch, "c8_disk", "budget", "limit"), "no note about the folder's budget"


def test_a_notebook_has_a_wall_clock_budget(batch):
    slept = len(_printed(batch, "c8_sleeper", "SLEPT"))
    most = -(-(NOTEBOOK_SECONDS + CELL_SECONDS) // 14)
    assert slept <= most, f"{slept} cells of 14 s ran under a {NOTEBOOK_SECONDS} s budget"
    assert _notes(batch, "c8_sleeper", "budget", "limit"), "no note about the notebook's time budget"


def test_an_oversized_submission_is_refused_with_a_note(batch):
    assert batch.scores.get("c8_oversized_submission") == 0
    assert _notes(batch, "c8_oversized_submission", "refused", "too large", "too many", "larger than", "more than"), \
        "no note about the oversized submission"
