"""The term's settings: due dates, the late policy, extensions, the roster, and the Canvas-style export.

Each test builds a small course in a temporary root: its own nbgrader_config.py (the settings under test),
a source folder per assignment and a SQLite gradebook written through nbgrader's API (one assignment, two
notebooks, three code questions and a written one). No notebook is executed: lateness goes through
nbgrader's own pieces — the exchange's ``timestamp.txt`` read by ``CourseDirectory.get_existing_timestamp``
and stored as autograde stores it, then nbgrader's ``AssignLatePenalties`` preprocessor, which calls the
course's plugin — and every expected penalty and exported value is written out by hand in this file.
"""
from __future__ import annotations

import csv
import datetime
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import AssignLatePenalties

from utils.grading.late_penalty import LatePenalty, parse_due_date
from utils.instructor import lms_export, term
from utils.instructor.course import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore:Object of type <Submitted:sqlalchemy.exc.SAWarning")

FIXTURE_ROSTER = Path(__file__).parent / "fixtures" / "roster.csv"
TEMPLATE: Path    # the empty course every test copies (fixture ``template``)
A = "toy"
DUE = "2027-02-15 23:59:00 Europe/Istanbul"              # 20:59 UTC
DUE_UTC = datetime.datetime(2027, 2, 15, 20, 59)
# notebook -> cell -> (kind, max points)
CELLS = {"nb1": {"q1": ("code", 2.0), "q2": ("code", 3.0), "written": ("markdown", 2.0)},
         "nb2": {"q3": ("code", 4.0)}}


def config_text(extra: str = "") -> str:
    return (
        "import os\n"
        "c = get_config()\n"
        "ROOT = os.path.dirname(os.path.abspath(__file__))\n"
        "c.CourseDirectory.course_id = 'toy-course'\n"
        "c.CourseDirectory.root = ROOT\n"
        "c.CourseDirectory.db_url = 'sqlite:///' + os.path.join(ROOT, 'gradebook.db')\n"
        "c.AssignLatePenalties.plugin_class = 'utils.grading.late_penalty.LatePenalty'\n"
        "c.LatePenalty.percent_per_day = 10.0\n"
        "c.LatePenalty.max_percent = 50.0\n"
        "c.LatePenalty.grace_minutes = 15.0\n"
        f"c.Term.due_dates = {{{A!r}: {DUE!r}}}\n" + extra)


def make_course(root: Path, extra_config: str = "") -> Path:
    """A copy of the module's empty course (a new nbgrader gradebook takes seconds) with these settings."""
    shutil.copytree(TEMPLATE, root)
    (root / "nbgrader_config.py").write_text(config_text(extra_config))
    return root


@pytest.fixture(scope="module", autouse=True)
def template(tmp_path_factory):
    """The course's folders and its gradebook: one assignment, its notebooks and graded cells, no students."""
    global TEMPLATE
    TEMPLATE = root = tmp_path_factory.mktemp("template") / "course"
    (root / "source" / A).mkdir(parents=True)
    for nb in CELLS:
        nbformat.write(nbformat.v4.new_notebook(), root / "source" / A / f"{nb}.ipynb")
    with Gradebook(url(root), "toy-course") as gb:
        gb.add_assignment(A)
        for nb, cells in CELLS.items():
            gb.add_notebook(nb, A)
            for name, (kind, pts) in cells.items():
                gb.add_grade_cell(name, nb, A, max_score=pts, cell_type=kind)
    return root


def url(root: Path) -> str:
    return f"sqlite:///{root / 'gradebook.db'}"


def submit(root: Path, student: str, stamp: str | None, written: float | None = None,
           scores: dict[str, float] | None = None) -> None:
    """A collected submission as autograde records it: timestamp.txt (the exchange's format) read by nbgrader,
    the submission row, and the cells' scores (full points unless ``scores`` says otherwise)."""
    folder = root / "submitted" / student / A
    folder.mkdir(parents=True)
    if stamp is not None:
        (folder / "timestamp.txt").write_text(stamp)
    timestamp = CourseDirectory(root=str(root)).get_existing_timestamp(str(folder))
    with Gradebook(url(root), "toy-course") as gb:
        gb.update_or_create_student(student)
        if timestamp:
            gb.update_or_create_submission(A, student, timestamp=timestamp)
        else:
            gb.update_or_create_submission(A, student)
        for nb, cells in CELLS.items():
            for name, (kind, pts) in cells.items():
                grade = gb.find_grade(name, nb, A, student)
                if kind == "code":
                    grade.auto_score, grade.needs_manual_grade = (scores or {}).get(name, pts), False
                elif written is not None:
                    grade.manual_score, grade.needs_manual_grade = written, False
        gb.db.commit()


def assign_late_penalties(root: Path, student: str) -> dict[str, float]:
    """nbgrader's AssignLatePenalties on each notebook, configured by the course's nbgrader_config.py; the
    penalties it stored (None, no penalty, read as 0)."""
    config = term.course_config(root)
    for nb in CELLS:
        resources = {"nbgrader": {"notebook": nb, "assignment": A, "student": student, "db_url": url(root)}}
        AssignLatePenalties(config=config).preprocess(nbformat.v4.new_notebook(), resources)
    with Gradebook(url(root), "toy-course") as gb:
        return {nb: gb.find_submission_notebook(nb, A, student).late_submission_penalty or 0.0 for nb in CELLS}


def stamp(minutes_after_due: float) -> str:
    """A timestamp.txt as nbgrader's exchange writes it (UTC), ``minutes_after_due`` after the due date."""
    return (DUE_UTC + datetime.timedelta(minutes=minutes_after_due)).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


@pytest.fixture
def course(tmp_path) -> Path:
    return make_course(tmp_path / "course")


# --------------------------------------------------------------------------- due dates


def test_due_dates_need_a_time_zone_and_read_it():
    assert parse_due_date(DUE) == DUE_UTC
    assert parse_due_date("2027-02-15T23:59:00+03:00") == DUE_UTC
    assert parse_due_date("2027-02-15 20:59:00 UTC") == DUE_UTC
    with pytest.raises(ValueError, match="has no time zone"):
        parse_due_date("2027-02-15 23:59:00")
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        parse_due_date("2027-02-15 23:59:00 Europe/Atlantis")
    with pytest.raises(ValueError, match="'2027-02-30 23:59:00 UTC' is not a date"):
        parse_due_date("2027-02-30 23:59:00 UTC")
    with pytest.raises(ValueError, match=r"c.Term.due_dates\['toy'\]"):
        term.Term(due_dates={"toy": "next Friday"})


def test_apply_writes_the_due_date_nbgrader_and_the_formgrader_read(course):
    with Gradebook(url(course), "toy-course") as gb:
        assert gb.find_assignment(A).duedate is None
    result = term.apply_term(course)
    assert result.due_dates == {A: DUE_UTC}
    assert "toy: due 2027-02-15 20:59 UTC" in str(result)
    with Gradebook(url(course), "toy-course") as gb:
        assert gb.find_assignment(A).duedate == DUE_UTC
    api = NbGraderAPI(CourseDirectory(root=str(course), db_url=url(course), course_id="toy-course"))
    assert api.get_assignment(A)["duedate"] == DUE_UTC.isoformat()        # what the formgrader lists
    # a due date given to apply_term takes precedence over the setting
    term.apply_term(course, due_dates={A: "2027-03-01 12:00:00 UTC"})
    with Gradebook(url(course), "toy-course") as gb:
        assert gb.find_assignment(A).duedate == datetime.datetime(2027, 3, 1, 12, 0)


def test_apply_refuses_unknown_assignments_and_early_extensions_and_writes_nothing(tmp_path):
    root = make_course(tmp_path / "course", "c.Term.due_dates['toyy'] = '2027-03-01 12:00:00 UTC'\n"
                                            "c.LatePenalty.extensions = {'toy': {'bob': '2027-02-14 12:00:00 UTC'},"
                                            " 'other': {'bob': '2027-02-20 12:00:00 UTC'}}\n")
    with pytest.raises(ValueError) as err:
        term.apply_term(root)
    message = str(err.value)
    assert "names 'toyy', which has no folder source/toyy/ (assignments: toy)" in message
    assert "c.LatePenalty.extensions['toy']['bob'] = '2027-02-14 12:00:00 UTC' is before" in message
    assert "c.LatePenalty.extensions names 'other', which has no due date" in message
    with Gradebook(url(root), "toy-course") as gb:
        assert gb.find_assignment(A).duedate is None


# --------------------------------------------------------------------------- the late policy

# student -> (timestamp.txt or None, penalty of nb1 (score 5), penalty of nb2 (score 4)), worked out by hand:
# 10 % per started day after the due date, at most 50 %, nothing within 15 minutes.
LATENESS = {
    "on_time": (stamp(-59), 0.0, 0.0),              # 20:00 UTC, a minute before 23:59 Istanbul
    "in_grace": (stamp(10), 0.0, 0.0),              # 10 minutes late
    "istanbul_midnight": (stamp(31), 0.5, 0.4),       # 21:30 UTC = 00:30 in Istanbul: 31 min, day 1, 10 %
    "day_and_hour": (stamp(25 * 60), 1.0, 0.8),       # 25 h: two started days, 20 %
    "four_days": (stamp(3 * 24 * 60 + 1), 2.0, 1.6),  # 3 days and 1 minute: four started days, 40 %
    "nine_days": (stamp(9 * 24 * 60), 2.5, 2.0),      # 90 %, capped at 50 %
    "no_timestamp": (None, 0.0, 0.0),               # nbgrader cannot tell: not late
}


@pytest.mark.parametrize("student", list(LATENESS))
def test_late_policy_through_nbgrader(course, student):
    term.apply_term(course)
    text, nb1, nb2 = LATENESS[student]
    submit(course, student, text)
    assert assign_late_penalties(course, student) == {"nb1": nb1, "nb2": nb2}


def test_penalty_is_a_share_of_the_notebooks_score(course):
    term.apply_term(course)
    submit(course, "partial", stamp(60), scores={"q1": 0.0, "q3": 1.0})    # nb1 scores 3, nb2 1
    assert assign_late_penalties(course, "partial") == {"nb1": 0.3, "nb2": 0.1}


def test_policy_settings_and_their_limits():
    policy = LatePenalty(percent_per_day=25, max_percent=100, grace_minutes=0)
    assert [policy.percent(s) for s in (0, 1, 86400, 86401, 10 * 86400)] == [0, 25, 25, 50, 100]
    with pytest.raises(Exception, match="max_percent"):
        LatePenalty(max_percent=150)
    with pytest.raises(ValueError, match=r"extensions\['toy'\]\['bob'\]"):
        LatePenalty(extensions={"toy": {"bob": "2027-02-17"}})


EXTENSIONS = ("c.LatePenalty.extensions = {'toy': {'dave': '2027-02-18 23:59:00 Europe/Istanbul', "
              "'erin': '2027-02-16 23:59:00 Europe/Istanbul'}}\n")


def test_extension_granted_at_grading_time(tmp_path):
    """Submissions graded after `term apply`: the plugin writes the extension and counts from it."""
    root = make_course(tmp_path / "course", EXTENSIONS)
    result = term.apply_term(root)
    assert [(a, s) for a, s, _ in result.pending] == [(A, "dave"), (A, "erin")]
    submit(root, "dave", stamp(2 * 24 * 60))     # two days after the class's due date, within his three
    submit(root, "erin", stamp(26 * 60))         # 26 h: two hours after her own due date
    assert assign_late_penalties(root, "dave") == {"nb1": 0.0, "nb2": 0.0}
    assert assign_late_penalties(root, "erin") == {"nb1": 0.5, "nb2": 0.4}
    with Gradebook(url(root), "toy-course") as gb:
        assert gb.find_submission(A, "dave").extension == datetime.timedelta(days=3)
        assert gb.find_submission(A, "erin").total_seconds_late == 2 * 3600


def test_extension_applied_to_collected_submissions_and_removed(tmp_path):
    root = make_course(tmp_path / "course")
    term.apply_term(root)
    submit(root, "dave", stamp(2 * 24 * 60))
    submit(root, "erin", stamp(26 * 60))
    assert assign_late_penalties(root, "dave") == {"nb1": 1.0, "nb2": 0.8}      # late before the extension
    with open(root / "nbgrader_config.py", "a") as fh:
        fh.write(EXTENSIONS)
    result = term.apply_term(root)
    assert [(a, s) for a, s, _ in result.extensions] == [(A, "dave"), (A, "erin")]
    assert "dave has an extension to 2027-02-18 20:59 UTC" in str(result)
    with Gradebook(url(root), "toy-course") as gb:
        assert gb.find_submission(A, "dave").total_seconds_late == 0
    assert assign_late_penalties(root, "dave") == {"nb1": 0.0, "nb2": 0.0}    # regraded: no penalty
    (root / "nbgrader_config.py").write_text(config_text())                     # extensions withdrawn
    result = term.apply_term(root)
    assert result.cleared == [(A, "dave"), (A, "erin")]
    with Gradebook(url(root), "toy-course") as gb:
        assert gb.find_submission(A, "dave").extension is None
    assert "late policy: 10 % of a notebook's score per started day" in term.describe_term(root)


def test_the_course_configuration_wires_the_policy():
    config = term.course_config(REPO_ROOT)
    assert AssignLatePenalties in config.Autograde.autograde_preprocessors
    assert AssignLatePenalties(config=config).plugin_class is LatePenalty
    policy = LatePenalty(config=config)
    assert (policy.percent_per_day, policy.max_percent, policy.grace_minutes) == (10.0, 50.0, 15.0)
    term.Term(config=config)    # its due dates parse
    assert "ExportApp" not in config or "plugin_class" not in config.ExportApp   # nbgrader's CSV stays the default


# --------------------------------------------------------------------------- the roster


def students(root: Path) -> dict[str, tuple]:
    with Gradebook(url(root), "toy-course") as gb:
        return {s.id: (s.first_name, s.last_name, s.email, s.lms_user_id) for s in gb.students}


def test_roster_imports_through_nbgrader_and_updates(course, tmp_path):
    assert term.import_roster(course, FIXTURE_ROSTER) == ["alice", "bob", "carol"]
    assert students(course) == {"alice": ("Alice", "Aydın", "alice@example.edu", "20270001"),
                                "bob": ("Bob", "Brown", "bob@example.edu", "20270002"),
                                "carol": ("Carol", "Çelik", "carol@example.edu", "20270003")}
    changed = tmp_path / "roster2.csv"     # a spreadsheet's file: byte order mark, spaces, no lms_user_id
    changed.write_text("\ufeffid , first_name,last_name,email\n bob ,Robert,Brown, rb@example.edu \n",
                       encoding="utf-8")
    assert term.import_roster(course, changed) == ["bob"]
    assert students(course)["bob"] == ("Robert", "Brown", "rb@example.edu", "20270002")
    assert set(students(course)) == {"alice", "bob", "carol"}    # nobody removed


@pytest.mark.parametrize("text, messages", [
    ("id,first_name,email\nalice,Alice,a@x.edu\n",
     ["missing column(s) last_name; the header is id, first_name, email"]),
    ("id,first_name,last_name,email,section\n", ["unknown column(s) section"]),
    ("id,first_name,last_name,email\n", ["no students"]),
    ("id,first_name,last_name,email\nalice,A,B,a@x.edu\nbob,B,C,b@x.edu\nalice,A,D,\n",
     ["line 4: id 'alice' is already on line 2"]),
    ("id,first_name,last_name,email\nAlice Smith,A,S,a@x.edu\n../x,A,S,\n-rf,A,S,\n,A,S,\nb*,A,S,notanemail\n",
     ["line 2: id 'Alice Smith' cannot be a student's user and folder name: use lower-case letters",
      "line 3: id '../x' cannot", "line 4: id '-rf' cannot", "line 5: no id", "line 6: id 'b*' cannot",
      "line 6: email 'notanemail' is not of the form name@host.domain"]),
    ("id,first_name,last_name,email,lms_user_id\na,A,A,,7\nb,B,B,,7\n", ["line 3: lms_user_id '7' is already"]),
    ("id,first_name,last_name,email\na,A,A,,extra\n", ["line 2: more values than the header's 4 columns"]),
])
def test_roster_problems_are_listed_and_nothing_is_imported(course, tmp_path, text, messages):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(term.RosterError) as err:
        term.import_roster(course, path)
    for message in messages:
        assert message in str(err.value)
    assert students(course) == {}


def test_roster_command_line_reports_and_fails(course, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,first_name,last_name,email\nBob,B,B,\n", encoding="utf-8")
    assert term.main(["--root", str(course), "roster", str(bad)]) == 1
    assert "id 'Bob' cannot be a student's user and folder name" in capsys.readouterr().err
    assert term.main(["--root", str(course), "roster", str(FIXTURE_ROSTER)]) == 0
    assert "imported 3 students: alice, bob, carol" in capsys.readouterr().out


# --------------------------------------------------------------------------- the LMS export


@pytest.fixture
def graded(course) -> Path:
    """alice on time, full marks and her written answer graded; bob 25 h late (20 %), q2 wrong, written answer
    pending; carol on the roster, no submission."""
    term.import_roster(course, FIXTURE_ROSTER)
    term.apply_term(course)
    submit(course, "alice", stamp(-60), written=2.0)
    submit(course, "bob", stamp(25 * 60), scores={"q2": 0.0})
    for student in ("alice", "bob"):
        assign_late_penalties(course, student)
    return course


HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "toy",
          "toy: nb1: q1", "toy: nb1: q2", "toy: nb1: written", "toy: nb2: q3"]
POINTS = ["Points Possible", "", "", "", "", "11", "2", "3", "2", "4"]
ALICE = ["Aydın, Alice", "", "20270001", "alice", "", "11", "2", "3", "2", "4"]
# bob: nb1 scores 2 (penalty 0.4), nb2 4 (penalty 0.8): 6 - 1.2 = 4.8; his written answer is pending
BOB = ["Brown, Bob", "", "20270002", "bob", "", "4.8", "2", "0", "", "4"]
CAROL = ["Çelik, Carol", "", "20270003", "carol", "", "", "", "", "", ""]


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_canvas_export(graded, tmp_path):
    out = lms_export.export_lms(graded, tmp_path / "canvas.csv")
    assert read_csv(out) == [HEADER, POINTS, ALICE, BOB, CAROL]


def test_canvas_export_settings(tmp_path):
    root = make_course(tmp_path / "course", "c.CanvasExportPlugin.missing = 'zero'\n"
                                            "c.CanvasExportPlugin.question_columns = False\n"
                                            "c.CanvasExportPlugin.lms_id_column = 'ID'\n")
    term.import_roster(root, FIXTURE_ROSTER)
    term.apply_term(root)
    submit(root, "bob", stamp(25 * 60), scores={"q2": 0.0})
    assign_late_penalties(root, "bob")
    rows = read_csv(lms_export.export_lms(root, "canvas.csv"))     # relative: in the course root
    assert rows == [HEADER[:6], POINTS[:6], ["Aydın, Alice", "20270001", "", "alice", "", "0"],
                    ["Brown, Bob", "20270002", "", "bob", "", "4.8"],
                    ["Çelik, Carol", "20270003", "", "carol", "", "0"]]


def test_export_commands_beside_nbgraders_own_csv(graded):
    """The command lines an instructor types, in the course root: nbgrader's CSV and the Canvas one."""
    def run(*args):
        proc = subprocess.run([sys.executable, "-m", *args], cwd=graded, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc
    run("nbgrader", "export")
    own = {r["student_id"]: r for r in csv.DictReader(open(graded / "grades.csv", encoding="utf-8"))}
    assert float(own["bob"]["late_submission_penalty"]) == pytest.approx(1.2)
    assert float(own["bob"]["score"]) == pytest.approx(4.8) and float(own["carol"]["score"]) == 0
    run("nbgrader", "export", "--exporter=utils.instructor.lms_export.CanvasExportPlugin", "--to=canvas.csv")
    assert read_csv(graded / "canvas.csv") == [HEADER, POINTS, ALICE, BOB, CAROL]


def test_export_command_of_the_term(graded, tmp_path, capsys):
    assert term.main(["--root", str(graded), "export", "--to", str(tmp_path / "out.csv"), "--assignment", A]) == 0
    assert f"wrote {tmp_path / 'out.csv'}" in capsys.readouterr().out
    assert read_csv(tmp_path / "out.csv") == [HEADER, POINTS, ALICE, BOB, CAROL]
    assert term.main(["--root", str(graded), "export", "--to", str(tmp_path / "none.csv"),
                      "--assignment", "other"]) == 0
    assert read_csv(tmp_path / "none.csv") == [HEADER[:5], POINTS[:5], ALICE[:5], BOB[:5], CAROL[:5]]
