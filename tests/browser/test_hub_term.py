"""A term on the course's JupyterHub, in a real browser: release, fetch, validate, submit, collect, grade,
feedback, each by the account that does it in a class.

The test creates its own Unix accounts (an instructor, two students, the grader account that owns the
course directory), a PostgreSQL gradebook and the hub (:mod:`utils.instructor.hub`), and removes them all
at the end. The cycle:

1. the instructor logs in, opens the formgrader (a hub service) and generates and releases ``deformable_conv``;
2. each student logs in, fetches it from the Assignment List, works on it (one correct, one with a typical
   mistake: their answers are written into the fetched notebook), validates it in JupyterLab and submits it;
   the due date passes between the two submissions, so the second student is late;
3. the instructor collects from the formgrader; the course's parallel grader grades the submissions on a Dask
   cluster of `dask scheduler` and `dask worker` processes, as the grader account, into the PostgreSQL
   gradebook; the instructor grades a written answer by hand, generates and releases feedback;
4. each student fetches feedback and reads their own diagnosis, and nobody else's;
5. neither student can read the other's work, the exchange's submissions or the course's source.

Each step's screenshot goes to ``tests/browser/artifacts/hub-*.png`` (the README's copies with
COURSE_UPDATE_SCREENSHOTS=1); the time of each step is printed.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from utils.instructor.course import REPO_ROOT, apply_mistake, fill_solutions, sample_mistakes
from utils.instructor.solutions import solution_cells

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}

pytestmark = pytest.mark.skipif(os.geteuid() != 0 if hasattr(os, "geteuid") else True,
                                reason="the hub test creates Unix accounts: it runs as root")

ASSIGNMENT = "deformable_conv"
WRITTEN_ANSWER = "offsets_initialization"    # the written answer graded by hand
STEP_MS = 180_000
DATE = "%Y-%m-%d %H:%M:%S UTC"


class Steps:
    """Times and screenshots of the cycle's steps."""

    def __init__(self):
        self.start = self.last = time.monotonic()
        self.times: list[tuple[str, float]] = []

    def done(self, name: str, page=None) -> None:
        now = time.monotonic()
        self.times.append((name, now - self.last))
        self.last = now
        if page is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"hub-{name}.png"))
        print(f"  {len(self.times):2d}. {name}: {self.times[-1][1]:.0f} s")


def as_account(deployment, name: str, command: str, cwd: str | None = None, check: bool = True):
    """``command`` in bash as the Unix account ``name``, with the course environment on PATH."""
    env = {"HOME": f"/home/{name}", "USER": name, "PATH": f"{Path(deployment.python).parent}:/usr/bin:/bin",
           "LANG": "C.UTF-8"}
    done = subprocess.run(["runuser", "-u", name, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                           "bash", "-c", command], cwd=cwd or "/", capture_output=True, text=True, timeout=600)
    if check and done.returncode:
        raise AssertionError(f"as {name}: `{command}` failed ({done.returncode}):\n{done.stdout[-3000:]}"
                             f"\n{done.stderr[-3000:]}")
    return done


def log_in(browser, deployment, name: str):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_MS)
    page = context.new_page()
    page.goto(deployment.url + "hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", deployment.passwords[name])
    page.click("#login_submit")
    return page


def open_assignment_list(page) -> None:
    page.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
    page.locator(".lm-Menu:visible .lm-Menu-item", has_text="Assignment List").click()
    page.locator("#released_assignments_list").wait_for()


def formgrader_row(page, deployment):
    page.goto(f"{deployment.url}services/{deployment.course_id}/formgrader/manage_assignments")
    row = page.locator("tr", has=page.locator("a", has_text=re.compile(f"^{ASSIGNMENT}$")))
    row.wait_for()
    return row


def formgrader_action(page, deployment, icon: str) -> str:
    """Click the assignment's action with ``icon`` in the formgrader's table; the success dialog's text."""
    row = formgrader_row(page, deployment)
    row.locator(f"span.{icon}").click()
    dialog = page.locator("#success-modal, #error-modal").first
    dialog.wait_for(state="visible", timeout=STEP_MS)
    text = dialog.inner_text()
    assert dialog.get_attribute("id") == "success-modal", f"the formgrader's {icon} failed:\n{text[-3000:]}"
    page.screenshot(path=str(ARTIFACTS / f"hub-formgrader-{icon}.png"))
    dialog.locator("button[data-dismiss=modal]").first.click()
    dialog.wait_for(state="hidden")
    return text


def student_notebook(deployment, mistake=None) -> nbformat.NotebookNode:
    """The release notebook with a student's answers: the instructor's, or with one sample mistake."""
    answers = solution_cells(REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    if mistake is not None:
        answers = apply_mistake(answers, mistake)
    release = nbformat.read(REPO_ROOT / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    return fill_solutions(release, answers)


def fetch_work_validate_submit(browser, deployment, steps, student: str, who: str, notebook,
                               expect_valid: bool) -> None:
    page = log_in(browser, deployment, student)
    page.locator(".lm-MenuBar-item", has_text="Nbgrader").wait_for()
    open_assignment_list(page)
    released = page.locator("#released_assignments_list .list_item", has_text=ASSIGNMENT)
    released.locator("button", has_text="Fetch").click()
    fetched = page.locator("#fetched_assignments_list .list_item", has_text=ASSIGNMENT).first
    fetched.wait_for()
    steps.done(f"{who}-fetched", page)

    # The student's work: their answers, saved into the fetched notebook as them.
    path = Path("/home", student, ASSIGNMENT, f"{ASSIGNMENT}.ipynb")
    text = nbformat.writes(notebook)
    path.write_text(text)
    os.chown(path, *_ids(student))

    page.goto(f"{deployment.url}user/{student}/lab/tree/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    toolbar = page.locator(".jp-NotebookPanel:visible .jp-NotebookPanel-toolbar")
    toolbar.get_by_text("Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=STEP_MS)
    verdict = dialog.inner_text()
    steps.done(f"{who}-validated", page)
    if expect_valid:
        assert "Success" in verdict, verdict[-2000:]
    else:
        assert "Success" not in verdict, verdict[-2000:]
    dialog.locator("button").last.click()

    open_assignment_list(page)
    fetched = page.locator("#fetched_assignments_list .list_item", has_text=ASSIGNMENT).first
    fetched.locator("button", has_text="Submit").click()
    page.locator("#submitted_assignments_list .list_item", has_text=ASSIGNMENT).first.wait_for()
    steps.done(f"{who}-submitted", page)
    page.context.close()


def _ids(account: str) -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam(account)
    return entry.pw_uid, entry.pw_gid


# ----------------------------------------------------------------------------- the deployment


@pytest.fixture(scope="module")
def deployment(postgres):
    from utils.instructor.hub.deployment import set_up, tear_down
    tag = secrets.token_hex(2)
    state = tempfile.mkdtemp(prefix="course-hub-")   # in /tmp, which every account can traverse
    try:
        deployment = set_up(state, students=[f"dlc{tag}-ada", f"dlc{tag}-bo"], instructors=[f"dlc{tag}-prof"],
                            grader=f"dlc{tag}-grader", port=_free_port(), db_url=postgres.db_url)
        yield deployment
    finally:
        tear_down(state)


def _free_port() -> int:
    from utils.instructor.loopback import free_port
    return free_port()


@pytest.fixture(scope="module")
def hub(deployment):
    from utils.instructor.hub.__main__ import Hub
    with Hub(deployment) as running:
        yield running
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "jupyterhub.log").write_text(running.log_tail(2000))


def grade_on_cluster(deployment) -> str:
    """The parallel grader on `dask scheduler` + two `dask worker` processes, all as the grader account."""
    from utils.instructor.dask_cluster import LoopbackCluster
    with LoopbackCluster(workers=2, user=deployment.grader) as cluster:
        graded = as_account(deployment, deployment.grader,
                            f"python -m utils.instructor.parallel {ASSIGNMENT} --scheduler {cluster.scheduler} "
                            f"--db-url '{deployment.db_url}' --quiet", cwd=str(deployment.course_dir))
    return graded.stdout + graded.stderr


def start_term(deployment) -> None:
    """The term's settings in the course's configuration, applied: the assignment was due yesterday and the
    first student has an extension to tomorrow, so only the second is late; the roster names both."""
    from utils.instructor.term import apply_term, import_roster
    ada, bo = deployment.students
    now = datetime.now(UTC)
    due, extended = (now - timedelta(days=1)).strftime(DATE), (now + timedelta(days=1)).strftime(DATE)
    config = deployment.course_dir / "nbgrader_config.py"
    config.write_text(config.read_text() + f"c.Term.due_dates = {{{ASSIGNMENT!r}: {due!r}}}\n"
                      f"c.LatePenalty.extensions = {{{ASSIGNMENT!r}: {{{ada!r}: {extended!r}}}}}\n")
    roster = Path(tempfile.mkdtemp(prefix="course-roster-")) / "roster.csv"
    roster.write_text("id,first_name,last_name,email,lms_user_id\n"
                      f"{ada},Ada,Aksoy,ada@example.edu,20270101\n{bo},Bo,Bulut,bo@example.edu,20270102\n")
    import_roster(deployment.course_dir, roster, db_url=deployment.db_url)
    apply_term(deployment.course_dir, db_url=deployment.db_url)


# ----------------------------------------------------------------------------- the cycle


def test_a_term_on_the_hub(browser, hub, deployment):
    from nbgrader.api import Gradebook
    steps = Steps()
    instructor, (ada, bo) = deployment.instructors[0], deployment.students
    mistake = next(m for m in sample_mistakes(ASSIGNMENT) if m.notebook == ASSIGNMENT)

    # 1. The term's settings; the instructor generates and releases the assignment from the formgrader.
    start_term(deployment)
    prof = log_in(browser, deployment, instructor)
    prof.wait_for_url("**/lab**")
    formgrader_action(prof, deployment, "glyphicon-education")
    formgrader_action(prof, deployment, "glyphicon-cloud-upload")
    formgrader_row(prof, deployment).get_by_text("released").wait_for()
    steps.done("instructor-released", prof)

    # 2. Two students: one correct and on time, one with a typical mistake and late.
    fetch_work_validate_submit(browser, deployment, steps, ada, "student1", student_notebook(deployment), True)
    fetch_work_validate_submit(browser, deployment, steps, bo, "student2", student_notebook(deployment, mistake),
                               False)

    # 3. Collect, grade on the cluster, grade the written answer by hand, feedback.
    formgrader_action(prof, deployment, "glyphicon-cloud-download")
    row = formgrader_row(prof, deployment)
    assert re.search(r"\b2\b", row.locator("td").nth(8).inner_text()), row.inner_text()
    steps.done("instructor-collected", prof)

    report = grade_on_cluster(deployment)
    steps.done("graded-on-cluster")
    print(report[-1500:])
    with Gradebook(deployment.db_url) as gb:
        scores = {s: gb.find_submission(ASSIGNMENT, s).score for s in (ada, bo)}
        penalties = {s: gb.find_submission(ASSIGNMENT, s).late_submission_penalty for s in (ada, bo)}
        ids = {s: gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, s).id for s in (ada, bo)}
    assert scores[ada] > scores[bo], scores
    assert penalties[ada] == 0 and penalties[bo] > 0, penalties   # on time with the extension; a day late

    prof.goto(f"{deployment.url}services/{deployment.course_id}/formgrader/submissions/{ids[bo]}/?index=0")
    prof.wait_for_load_state("networkidle")
    score_box = prof.locator(f"input.score#{WRITTEN_ANSWER}")
    manual = None
    for _ in range(10):    # the page saves a score when the box loses focus, once its grades have loaded
        score_box.fill("1.5")
        score_box.press("Tab")
        prof.wait_for_timeout(1000)
        with Gradebook(deployment.db_url) as gb:
            manual = gb.find_grade(WRITTEN_ANSWER, ASSIGNMENT, ASSIGNMENT, bo).manual_score
        if manual is not None:
            break
    assert manual == 1.5, manual
    steps.done("instructor-graded-written-answer", prof)

    prof.goto(f"{deployment.url}services/{deployment.course_id}/formgrader/manage_students")
    prof.get_by_text("Bulut").wait_for()
    steps.done("instructor-roster", prof)

    formgrader_action(prof, deployment, "glyphicon-comment")
    formgrader_action(prof, deployment, "glyphicon-envelope")
    steps.done("instructor-released-feedback", prof)

    # 4. Each student fetches their feedback: their own diagnosis, nobody else's.
    for student, who, expected, absent in ((ada, "student1", None, mistake.diagnosis),
                                           (bo, "student2", mistake.diagnosis, None)):
        page = log_in(browser, deployment, student)
        page.locator(".lm-MenuBar-item", has_text="Nbgrader").wait_for()
        open_assignment_list(page)
        page.locator("#submitted_assignments_list .list_item", has_text=ASSIGNMENT).first.locator(
            "button", has_text="Fetch Feedback").click()
        feedback_dir = Path("/home", student, ASSIGNMENT, "feedback")
        deadline = time.monotonic() + 120
        while not list(feedback_dir.glob(f"*/{ASSIGNMENT}.html")) and time.monotonic() < deadline:
            time.sleep(1)
        html_files = list(feedback_dir.glob(f"*/{ASSIGNMENT}.html"))
        assert len(html_files) == 1, html_files
        relative = html_files[0].relative_to(Path("/home", student))
        page.goto(f"{deployment.url}user/{student}/files/{relative.as_posix()}")
        page.wait_for_load_state()
        if expected:
            page.get_by_text(expected).first.scroll_into_view_if_needed()
        steps.done(f"{who}-feedback", page)
        text = html_files[0].read_text()
        other = bo if student == ada else ada
        assert other not in text
        if expected:
            assert expected in text, f"{student}'s feedback lacks {expected!r}"
        if absent:
            assert absent not in text
        # Students never reach the formgrader, nor another student's server.
        response = page.goto(f"{deployment.url}services/{deployment.course_id}/formgrader/manage_assignments")
        assert response.status == 403, (response.status, page.url)
        response = page.goto(f"{deployment.url}user/{other}/lab")
        assert response.status in (403, 404), (response.status, page.url)
        page.context.close()

    # The LMS gradebook: one row per student, the total after the late penalty, a column per question.
    from utils.instructor.lms_export import export_lms
    canvas = export_lms(deployment.course_dir, Path(tempfile.mkdtemp(prefix="course-lms-")) / "canvas.csv",
                        db_url=deployment.db_url).read_text().splitlines()
    assert canvas[1].startswith("Points Possible") or canvas[1].startswith('"Points Possible'), canvas[:2]
    assert any(bo in line and "20270102" in line for line in canvas[2:]), canvas
    assert any(WRITTEN_ANSWER in column for column in canvas[0].split(",")), canvas[0]

    # 5. A student reads neither the other's work, nor the exchange's submissions, nor the course's source.
    for command in (f"ls /home/{bo}", f"cat /home/{bo}/{ASSIGNMENT}/{ASSIGNMENT}.ipynb",
                    f"ls {deployment.exchange}/{deployment.course_id}/inbound",
                    f"ls {deployment.course_dir}",
                    f"cat {deployment.course_dir}/source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb",
                    f"cat {REPO_ROOT}/source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", f"ls {REPO_ROOT}/.git",
                    f"ls {deployment.exchange}/{deployment.course_id}/feedback"):
        denied = as_account(deployment, ada, command, check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (command, denied.stdout[:500])

    print(f"\nThe term's cycle took {time.monotonic() - steps.start:.0f} s:")
    for name, seconds in steps.times:
        print(f"  {name}: {seconds:.0f} s")
