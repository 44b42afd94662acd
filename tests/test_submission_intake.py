"""Nothing a student put in a folder is followed: intake of submissions, and nbgrader's writes.

* the intake (``SubmissionIntake``) on folders built in tmp_path: what it copies, what it refuses
  and the note it writes, for links, hard links, FIFOs, sockets, oversized files, too many files
  (20,000, timed), too deep folders and linked student or assignment folders;
* the helpers of ``utils/grading/safe_files.py``, each against the link it must not follow;
* ``RepairingAutograde`` and ``NoFollowWrites`` driven directly, with a gradebook and no kernel,
  next to plain nbgrader doing the same (which follows the link: the control);
* end to end, real ``nbgrader autograde`` and ``generate_feedback`` on the deformable_conv assignment
  with two students, while a stand-in for a kernel of the old design plants links in autograded/.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from nbconvert.writers import FilesWriter
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory

from utils.grading import submission_repair
from utils.grading.gradebook import sqlite_gradebook_url
from utils.grading.safe_files import (
    NotAPlainFile,
    TooLarge,
    chmod_plain_files,
    copy_file,
    open_folder,
    remove_links,
    write_file,
)
from utils.grading.submission_intake import SubmissionIntake
from utils.grading.submission_repair import RepairingAutograde
from utils.instructor.course import REPO_ROOT, generate_release, nbgrader
from utils.instructor.demo import feedback_text

MIB = 1 << 20
SECRET = "the course secret: 1f0e4c"


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading waits for a writer forever)."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def course(tmp_path) -> Path:
    """A course root with source/hw/hw.ipynb, an outside folder holding a secret, and alice's empty submission."""
    (tmp_path / "source" / "hw").mkdir(parents=True)
    (tmp_path / "source" / "hw" / "hw.ipynb").write_text('{"solution": true}')
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text(SECRET)
    (tmp_path / "outside" / "secret").chmod(0o600)
    (tmp_path / "submitted" / "alice" / "hw").mkdir(parents=True)
    return tmp_path


def submission(course: Path, student: str = "alice") -> Path:
    return course / "submitted" / student / "hw"


def take(course: Path, student: str = "alice", keep=("hw.ipynb",), ignore=(), **limits):
    """Run the intake of submitted/<student>/hw into a new folder; returns (intake, the folder)."""
    target = course / "taken" / student
    target.mkdir(parents=True)
    fd = open_folder(str(target))
    try:
        with deadline(20):
            intake = SubmissionIntake(**limits).take(str(submission(course, student)), fd, keep=keep, ignore=ignore)
    finally:
        os.close(fd)
    return intake, target


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


# --------------------------------------------------------------------------- the intake


def test_regular_files_are_copied_and_links_and_special_files_are_refused(course):
    folder = submission(course)
    (folder / "hw.ipynb").write_text('{"mine": true}')
    (folder / "data").mkdir()
    (folder / "data" / "table.csv").write_text("1,2\n")
    (folder / "relative.txt").symlink_to("../../../outside/secret")
    (folder / "absolute.txt").symlink_to(course / "outside" / "secret")
    (folder / "everything").symlink_to(course / "outside", target_is_directory=True)
    (folder / "data" / "answer.ipynb").symlink_to(course / "source" / "hw" / "hw.ipynb")
    (folder / "dangling.txt").symlink_to(course / "nowhere")
    os.link(course / "outside" / "secret", folder / "hard.txt")
    os.mkfifo(folder / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock"))
        intake, target = take(course)

    assert intake.copied == ["data/table.csv", "hw.ipynb"]
    assert files_in(target) == ["data/table.csv", "hw.ipynb"]
    assert (target / "hw.ipynb").read_text() == '{"mine": true}'
    assert intake.refused == {
        "relative.txt": "symbolic links are not graded",
        "absolute.txt": "symbolic links are not graded",
        "everything": "symbolic links are not graded",
        "data/answer.ipynb": "symbolic links are not graded",
        "dangling.txt": "symbolic links are not graded",
        "hard.txt": "hard links are not graded; this file has 2 names",
        "pipe": "FIFOs are not graded",
        "sock": "sockets are not graded",
    }
    assert not intake.limit and not intake.folder_refused
    note = intake.note()
    assert note.startswith("These files of your submission were not graded: `absolute.txt` (symbolic links")
    assert "`pipe` (FIFOs are not graded)" in note and "`hard.txt` (hard links are not graded" in note
    assert not any(SECRET in (target / f).read_text() for f in files_in(target))
    assert (course / "outside" / "secret").stat().st_mode & 0o777 == 0o600


def test_a_notebook_linked_to_source_is_refused_even_when_kept(course):
    (submission(course) / "hw.ipynb").symlink_to("../../../source/hw/hw.ipynb")
    intake, target = take(course, keep=["hw.ipynb"])
    assert intake.refused == {"hw.ipynb": "symbolic links are not graded"}
    assert intake.copied == [] and files_in(target) == []


def test_an_oversized_file_is_refused_and_the_limit_is_a_setting(course):
    folder = submission(course)
    (folder / "hw.ipynb").write_text("{}")
    with open(folder / "weights.bin", "wb") as f:   # sparse: 101 MiB that take no disk
        f.truncate(101 * MIB)
    (folder / "small.bin").write_bytes(b"x" * 3000)
    intake, target = take(course)
    assert intake.refused == {"weights.bin": "larger than 100 MiB: 101.0 MiB"}
    assert files_in(target) == ["hw.ipynb", "small.bin"]
    shutil.rmtree(target)
    intake, target = take(course, max_file_mb=0.002)   # 2,097 bytes
    assert intake.refused["small.bin"] == "larger than 0.002 MiB: 0.0 MiB"
    assert files_in(target) == ["hw.ipynb"]


def test_twenty_thousand_files_are_refused_fast_and_the_notebook_is_still_taken(course, capsys):
    folder = submission(course)
    (folder / "hw.ipynb").write_text("{}")
    for i in range(20_000):
        os.close(os.open(folder / f"f{i:05d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    start = time.perf_counter()
    intake, target = take(course)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nrefusing a 20,000-file submission took {seconds * 1000:.1f} ms")
    assert seconds < 1.0
    assert intake.copied == ["hw.ipynb"] and files_in(target) == ["hw.ipynb"]
    assert intake.limit == "The submission holds more than 1000 files and folders"
    assert intake.note() == ("The submission holds more than 1000 files and folders, so only its notebooks "
                             "were graded.")


def test_too_many_files_in_nested_folders_stop_the_listing_too(course):
    folder = submission(course)
    (folder / "hw.ipynb").symlink_to(course / "source" / "hw" / "hw.ipynb")
    for i in range(30):
        (folder / f"d{i}").mkdir()
        for j in range(50):
            (folder / f"d{i}" / f"f{j}").touch()
    intake, target = take(course, max_files=200)
    assert intake.limit == "The submission holds more than 200 files and folders"
    assert intake.refused == {"hw.ipynb": "symbolic links are not graded"}   # the kept notebook is still checked
    assert files_in(target) == []


def test_too_large_a_submission_keeps_only_its_notebooks(course):
    folder = submission(course)
    (folder / "hw.ipynb").write_text("{}")
    for name in ("a.bin", "b.bin", "c.bin"):
        (folder / name).write_bytes(b"x" * 400_000)
    intake, target = take(course, max_total_mb=1)
    assert intake.limit == "The files of the submission add up to 1.1 MiB, more than the 1 MiB allowed"
    assert files_in(target) == ["hw.ipynb"] and intake.refused == {}


def test_deeply_nested_folders_are_not_opened(course):
    folder = submission(course)
    deep = folder
    for level in range(1, 15):
        deep = deep / f"l{level}"
        deep.mkdir()
        (deep / "file.txt").write_text(str(level))
    intake, target = take(course, max_depth=3)
    assert files_in(target) == ["l1/file.txt", "l1/l2/file.txt", "l1/l2/l3/file.txt"]
    assert intake.refused == {"l1/l2/l3/l4": "folders nested more than 3 deep are not graded"}


@pytest.mark.parametrize("linked", ["student", "assignment"])
def test_a_linked_student_or_assignment_folder_is_refused_whole(course, linked):
    (submission(course) / "hw.ipynb").write_text('{"alice": true}')
    if linked == "student":
        (course / "submitted" / "bob").symlink_to("alice", target_is_directory=True)
    else:
        (course / "submitted" / "bob").mkdir()
        submission(course, "bob").symlink_to("../alice/hw", target_is_directory=True)
    intake, target = take(course, student="bob")
    name = "bob" if linked == "student" else "hw"
    assert intake.folder_refused == f"`{name}` is a symbolic link, not a folder; symbolic links are not graded"
    assert intake.note().endswith("symbolic links are not graded. Nothing in it was graded.")
    assert intake.copied == [] and files_in(target) == []


def test_ignored_names_are_left_out_without_a_note(course):
    folder = submission(course)
    (folder / "hw.ipynb").write_text("{}")
    (folder / "utils.py").write_text("def check(*a): pass\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "hw-checkpoint.ipynb").symlink_to(course / "outside" / "secret")
    intake, target = take(course, ignore=["utils.py", "__pycache__", ".ipynb_checkpoints"])
    assert files_in(target) == ["hw.ipynb"] and intake.refused == {} and intake.note() == ""


def test_a_note_quotes_file_names_without_markup(course):
    (submission(course) / "<img src=x onerror=alert(1)>`.txt").symlink_to(course / "outside" / "secret")
    intake, _ = take(course)
    note = intake.note()
    assert "onerror" in note and "<" not in note and ">" not in note
    assert note.count("`") == 2


# --------------------------------------------------------------------------- safe_files


def test_write_file_replaces_a_link_or_a_second_name_and_never_writes_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("VICTIM")
    (outside / "other").write_text("OTHER")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notebook.ipynb").symlink_to(outside / "victim")
    os.link(outside / "other", folder / "hard.ipynb")
    (folder / "dangling.ipynb").symlink_to(outside / "created")
    fd = open_folder(str(folder))
    try:
        for name in ("notebook.ipynb", "hard.ipynb", "dangling.ipynb"):
            write_file(fd, name, b"NEW")
    finally:
        os.close(fd)
    assert (outside / "victim").read_text() == "VICTIM" and (outside / "other").read_text() == "OTHER"
    assert not (outside / "created").exists()
    for name in ("notebook.ipynb", "hard.ipynb", "dangling.ipynb"):
        st = os.lstat(folder / name)
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (folder / name).read_text() == "NEW"


def test_open_folder_refuses_a_linked_component(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "autograded").mkdir()
    (tmp_path / "autograded" / "alice").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(OSError):
        open_folder(str(tmp_path / "autograded"), "alice/hw", create=True)
    assert list((tmp_path / "outside").iterdir()) == []
    with pytest.raises(ValueError):
        open_folder(str(tmp_path / "autograded"), "../outside")


def test_copy_file_refuses_devices_links_and_more_than_its_limit(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 5000)
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "out").mkdir()
    source, target = open_folder(str(tmp_path)), open_folder(str(tmp_path / "out"))
    dev = open_folder("/dev")
    try:
        with pytest.raises(TooLarge):
            copy_file(source, "big", target, max_bytes=4999)
        assert copy_file(source, "big", target, max_bytes=5000) == 5000
        with pytest.raises(NotAPlainFile, match="symbolic link"):
            copy_file(source, "zero", target, max_bytes=10)
        with deadline(10), pytest.raises(NotAPlainFile, match="character device"):
            copy_file(dev, "zero", target, max_bytes=10)
    finally:
        for fd in (source, target, dev):
            os.close(fd)
    assert files_in(tmp_path / "out") == ["big"]


def test_chmod_plain_files_changes_regular_files_only(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text(SECRET)
    (outside / "secret").chmod(0o600)
    (outside / "other").write_text("x")
    (outside / "other").chmod(0o640)
    folder = tmp_path / "autograded" / "alice" / "hw"
    (folder / "sub").mkdir(parents=True)
    (folder / "hw.ipynb").write_text("{}")
    (folder / "sub" / "data.txt").write_text("1")
    (folder / "secret").symlink_to(outside / "secret")
    os.link(outside / "other", folder / "hard")
    skipped = chmod_plain_files(str(tmp_path / "autograded"), "alice/hw", 0o444)
    assert sorted(skipped) == [("hard", "hard link"), ("secret", "symbolic link")]
    assert (folder / "hw.ipynb").stat().st_mode & 0o777 == 0o444
    assert (folder / "sub" / "data.txt").stat().st_mode & 0o777 == 0o444
    assert (outside / "secret").stat().st_mode & 0o777 == 0o600
    assert (outside / "other").stat().st_mode & 0o777 == 0o640


def test_remove_links_clears_a_folder_and_a_link_in_place_of_it(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("x")
    folder = tmp_path / "autograded" / "alice" / "hw"
    (folder / "sub").mkdir(parents=True)
    (folder / "hw.ipynb").write_text("{}")
    (folder / "sub" / "link").symlink_to(tmp_path / "outside" / "keep")
    os.mkfifo(folder / "pipe")
    os.link(tmp_path / "outside" / "keep", folder / "hard")
    removed = remove_links(str(tmp_path / "autograded"), "alice/hw")
    assert sorted(removed) == ["hard", "pipe", "sub/link"]
    assert files_in(folder) == ["hw.ipynb"] and (tmp_path / "outside" / "keep").read_text() == "x"
    shutil.rmtree(tmp_path / "autograded" / "alice")
    (tmp_path / "autograded" / "alice").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert remove_links(str(tmp_path / "autograded"), "alice/hw") == ["alice"]
    assert not os.path.lexists(tmp_path / "autograded" / "alice")
    assert (tmp_path / "outside" / "keep").read_text() == "x"


# --------------------------------------------------------------------------- the converters, no kernel


def _notebook(text: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory) -> Path:
    """A gradebook that knows assignment hw with notebook hw (made once: nbgrader runs alembic to make one)."""
    folder = tmp_path_factory.mktemp("gradebook")
    path = os.environ["PATH"]
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + path
    try:
        with Gradebook(sqlite_gradebook_url(folder)) as gb:
            gb.update_or_create_assignment("hw")
            gb.update_or_create_notebook("hw", "hw")
    finally:
        os.environ["PATH"] = path
    return folder / "gradebook.db"


@pytest.fixture
def small_course(course, gradebook) -> Path:
    """``course`` with a release notebook, a solution in source/, and a gradebook that knows hw/hw."""
    shutil.copy(gradebook, course / "gradebook.db")
    nbformat.write(_notebook("SOLUTION"), course / "source" / "hw" / "hw.ipynb")
    (course / "release" / "hw").mkdir(parents=True)
    nbformat.write(_notebook("RELEASE"), course / "release" / "hw" / "hw.ipynb")
    (course / "submitted" / "bob" / "hw").mkdir(parents=True)
    nbformat.write(_notebook("BOB"), course / "submitted" / "bob" / "hw" / "hw.ipynb")
    return course


def _converter(root: Path, cls=RepairingAutograde):
    coursedir = CourseDirectory(root=str(root))
    coursedir.db_url = sqlite_gradebook_url(root)
    converter = cls(coursedir=coursedir)
    converter.writer = FilesWriter(parent=converter)
    return converter


def _take_and_repair(converter, student: str = "alice") -> list:
    folder = submission(Path(converter.coursedir.root), student)
    converter.notebooks = [str(p) for p in sorted(folder.glob("*.ipynb"))]
    converter._take_in("hw", student)
    converter._repair("hw", student)
    return [nbformat.read(path, as_version=4) for path in converter.notebooks]


def test_autograde_grades_a_notebook_linked_to_source_as_the_empty_release_with_a_note(small_course):
    folder = submission(small_course)
    (folder / "hw.ipynb").symlink_to("../../../source/hw/hw.ipynb")
    (folder / "friend.ipynb").symlink_to("../../bob/hw/hw.ipynb")
    (folder / "notes.txt").write_text("mine")
    converter = _converter(small_course)
    try:
        [graded] = _take_and_repair(converter)
        sources = [cell.source for cell in graded.cells]
        assert sources[0] == ("**Grading note:** `hw.ipynb` was not graded: symbolic links are not graded. "
                              "It was graded as an empty submission; submit the notebook file itself.")
        assert sources[1] == ("**Grading note:** These files of your submission were not graded: "
                              "`friend.ipynb` (symbolic links are not graded).")
        assert sources[2:] == ["RELEASE"]
        resources = converter.init_single_notebook_resources(converter.notebooks[0])
        assert (resources["nbgrader"]["student"], resources["nbgrader"]["notebook"]) == ("alice", "hw")
        copy = Path(converter._format_source("hw", "alice"))
        assert copy != folder and files_in(copy) == ["notes.txt"]
        assert converter._format_source("hw", "alice", escape=True) != str(copy)
    finally:
        converter._reset_work_dir(new=False)
    assert not copy.exists()


def test_an_honest_notebook_is_graded_from_the_copy_without_a_note(small_course):
    nbformat.write(_notebook("ALICE"), submission(small_course) / "hw.ipynb")
    converter = _converter(small_course)
    try:
        [graded] = _take_and_repair(converter)
        assert [cell.source for cell in graded.cells] == ["ALICE"]
        assert not converter.notebooks[0].startswith(str(small_course / "submitted"))
        resources = converter.init_single_notebook_resources(converter.notebooks[0])
        assert resources["nbgrader"]["student"] == "alice"
    finally:
        converter._reset_work_dir(new=False)


def test_a_renamed_notebook_is_graded_under_its_expected_name_with_a_note(small_course):
    nbformat.write(_notebook("ALICE"), submission(small_course) / "hw (1).ipynb")
    converter = _converter(small_course)
    try:
        [graded] = _take_and_repair(converter)
        assert [cell.source for cell in graded.cells] == [
            "**Grading note:** your notebook was submitted as `hw (1).ipynb`; it was graded as `hw.ipynb`. "
            "Keep the original file name next time.", "ALICE"]
        assert os.path.basename(converter.notebooks[0]) == "hw.ipynb"
        resources = converter.init_single_notebook_resources(converter.notebooks[0])
        assert (resources["nbgrader"]["student"], resources["nbgrader"]["notebook"]) == ("alice", "hw")
    finally:
        converter._reset_work_dir(new=False)


def test_invalid_json_is_graded_as_the_release_and_the_error_is_quoted_safely(small_course):
    (submission(small_course) / "hw.ipynb").write_text('{"cells": [ <script>alert(1)</script> `')
    converter = _converter(small_course)
    try:
        [graded] = _take_and_repair(converter)
    finally:
        converter._reset_work_dir(new=False)
    note = graded.cells[0].source
    assert note.startswith("**Grading note:** `hw.ipynb` could not be read as a notebook (")
    assert "<" not in note and note.count("`") == 4 and graded.cells[-1].source == "RELEASE"


def test_an_oversized_notebook_is_graded_as_the_release_without_being_parsed(small_course, monkeypatch):
    with open(submission(small_course) / "hw.ipynb", "wb") as f:
        f.truncate(101 * MIB)
    parsed = []
    real_read = nbformat.read
    monkeypatch.setattr(submission_repair.nbformat, "read",
                        lambda path, *a, **k: parsed.append(str(path)) or real_read(path, *a, **k))
    converter = _converter(small_course)
    try:
        converter.notebooks = [str(submission(small_course) / "hw.ipynb")]
        converter._take_in("hw", "alice")
        converter._repair("hw", "alice")
        assert [os.path.normpath(p) for p in parsed] == [str(small_course / "release" / "hw" / "hw.ipynb")]
        graded = real_read(converter.notebooks[0], as_version=4)
    finally:
        converter._reset_work_dir(new=False)
    assert graded.cells[0].source.startswith(
        "**Grading note:** `hw.ipynb` was not graded: larger than 100 MiB: 101.0 MiB.")
    assert graded.cells[-1].source == "RELEASE"


def test_the_notebook_writer_and_permissions_never_follow_a_link(small_course):
    outside = small_course / "outside"
    (outside / "victim.ipynb").write_text("VICTIM")
    (outside / "other").write_text("OTHER")
    (outside / "other").chmod(0o640)
    folder = small_course / "autograded" / "alice" / "hw"
    folder.mkdir(parents=True)
    (folder / "hw.ipynb").symlink_to(outside / "victim.ipynb")
    (folder / "chmod_me").symlink_to(outside / "secret")
    os.link(outside / "other", folder / "hard")
    resources = {"nbgrader": {"assignment": "hw", "student": "alice"}, "unique_key": "hw",
                 "output_extension": ".ipynb"}

    converter = _converter(small_course)
    converter.write_single_notebook("GRADED", resources)
    converter.set_permissions("hw", "alice")
    assert (outside / "victim.ipynb").read_text() == "VICTIM"
    assert (folder / "hw.ipynb").read_text() == "GRADED" and not (folder / "hw.ipynb").is_symlink()
    assert (folder / "hw.ipynb").stat().st_mode & 0o777 == 0o444
    assert (outside / "secret").stat().st_mode & 0o777 == 0o600
    assert (outside / "other").stat().st_mode & 0o777 == 0o640
    assert converter.writer.build_directory == str(folder)

    # The control: nbgrader's own converter writes through the same link.
    (folder / "hw.ipynb").unlink()
    (folder / "hw.ipynb").symlink_to(outside / "victim.ipynb")
    _converter(small_course, Autograde).write_single_notebook("GRADED", resources)
    assert (outside / "victim.ipynb").read_text() == "GRADED"


def test_a_link_in_place_of_the_destination_folder_is_removed_before_writing(small_course):
    (small_course / "outside" / "hw").mkdir()
    (small_course / "autograded" / "alice").mkdir(parents=True)
    (small_course / "autograded" / "alice" / "hw").symlink_to(small_course / "outside" / "hw",
                                                              target_is_directory=True)
    converter = _converter(small_course)
    converter.clear_destination("hw", "alice")
    converter.write_single_notebook("GRADED", {"nbgrader": {"assignment": "hw", "student": "alice"},
                                               "unique_key": "hw", "output_extension": ".ipynb"})
    assert list((small_course / "outside" / "hw").iterdir()) == []
    assert (small_course / "autograded" / "alice" / "hw" / "hw.ipynb").read_text() == "GRADED"


# --------------------------------------------------------------------------- end to end

ASSIGNMENT = "deformable_conv"

# A stand-in for a kernel of the old design, which ran in autograded/<student>/<assignment>/ and
# could leave links there while nbgrader still had to write into that folder.
PLANTER = '''\
"""Test only: plants links in autograded/ while nbgrader grades the student "linker"."""
import os

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

OUTSIDE = {outside!r}


class PlantLinks(Preprocessor):
    """Last autograde preprocessor: before nbgrader writes the graded notebook, it becomes a link to the
    classmate's submission (the attack of issue 14), and a link to a secret outside appears."""

    enabled = Bool(True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        if info["student"] == "linker":
            folder = os.path.join("autograded", info["student"], info["assignment"])
            notebook = os.path.join(folder, info["notebook"] + ".ipynb")
            os.unlink(notebook)
            os.symlink("../../../submitted/classmate/" + info["assignment"] + "/" + info["notebook"] + ".ipynb",
                       notebook)
            os.symlink(os.path.join(OUTSIDE, "secret"), os.path.join(folder, "chmod_me"))
        return nb, resources


def plant_before_copy(assignment, student, notebooks):
    """pre_convert_hook, after nbgrader emptied the destination: a link named as a submitted file."""
    for notebook in notebooks:
        student_id, assignment_id = notebook.split(os.sep)[-3:-1]
        if student_id == "linker":
            folder = os.path.join("autograded", student_id, assignment_id)
            os.makedirs(folder, exist_ok=True)
            os.symlink(os.path.join(OUTSIDE, "created.txt"), os.path.join(folder, "notes.txt"))
'''


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_text(SECRET)
    (outside / "secret").chmod(0o600)
    (outside / "other.txt").write_text("OTHER")
    shutil.copytree(REPO_ROOT / "source" / ASSIGNMENT, root / "source" / ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    generate_release(root, [ASSIGNMENT])
    (root / "course_planter.py").write_text(PLANTER.format(outside=str(outside)))
    with open(root / "nbgrader_config.py", "a") as config:
        config.write("\nfrom course_planter import PlantLinks, plant_before_copy  # noqa: E402\n"
                     "c.Autograde.autograde_preprocessors.append(PlantLinks)\n"
                     "c.Autograde.pre_convert_hook = plant_before_copy\n")

    classmate = root / "submitted" / "classmate" / ASSIGNMENT
    shutil.copytree(root / "release" / ASSIGNMENT, classmate)
    linker = root / "submitted" / "linker" / ASSIGNMENT
    linker.mkdir(parents=True)
    (linker / f"{ASSIGNMENT}.ipynb").symlink_to(f"../../../source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    (linker / "copied.ipynb").symlink_to(f"../../classmate/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    (linker / "notes.txt").write_text("my notes")
    classmate_bytes = (classmate / f"{ASSIGNMENT}.ipynb").read_bytes()
    classmate_mode = (classmate / f"{ASSIGNMENT}.ipynb").stat().st_mode

    start = time.perf_counter()
    autograde = nbgrader("autograde", ASSIGNMENT, "--force", "--SandboxedExecute.timeout=60", root=root,
                         check=False, timeout=900)
    seconds = time.perf_counter() - start
    planted = root / "autograded" / "classmate" / ASSIGNMENT
    (planted / "leak.txt").symlink_to(outside / "secret")
    os.link(outside / "other.txt", planted / "hard.txt")
    os.mkfifo(planted / "pipe")
    feedback = nbgrader("generate_feedback", ASSIGNMENT, "--force", root=root, check=False, timeout=600)
    return dict(root=root, outside=outside, autograde=autograde, feedback=feedback, seconds=seconds,
                classmate_bytes=classmate_bytes, classmate_mode=classmate_mode)


def _log(proc) -> str:
    return ((proc.stdout or "") + (proc.stderr or ""))[-4000:]


def _score(root: Path, student: str) -> float:
    with Gradebook(sqlite_gradebook_url(root)) as gb:
        return float(gb.find_submission(ASSIGNMENT, student).code_score)


def test_e2e_a_notebook_linked_to_source_gets_zero_with_a_note(e2e):
    root = e2e["root"]
    assert e2e["autograde"].returncode == 0, _log(e2e["autograde"])
    assert _score(root, "linker") == 0 and _score(root, "classmate") == 0
    graded = nbformat.read(root / "autograded" / "linker" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    assert graded.cells[0].source.startswith(
        f"**Grading note:** `{ASSIGNMENT}.ipynb` was not graded: symbolic links are not graded.")
    assert "`copied.ipynb` (symbolic links are not graded)" in graded.cells[1].source
    assert "BEGIN SOLUTION" not in nbformat.writes(graded)
    text = feedback_text(root, "linker", ASSIGNMENT)
    assert "symbolic links are not graded" in text and "copied.ipynb" in text


def test_e2e_the_classmate_submission_is_unchanged(e2e):
    """The linker's graded notebook became a link to it while grading: nbgrader's writer replaced the link."""
    notebook = e2e["root"] / "submitted" / "classmate" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert not notebook.is_symlink() and notebook.read_bytes() == e2e["classmate_bytes"]
    assert notebook.stat().st_mode == e2e["classmate_mode"]


def test_e2e_links_planted_in_autograded_are_never_written_through(e2e):
    root, outside = e2e["root"], e2e["outside"]
    assert (outside / "secret").stat().st_mode & 0o777 == 0o600
    assert not (outside / "created.txt").exists()
    folder = root / "autograded" / "linker" / ASSIGNMENT
    notebook = folder / f"{ASSIGNMENT}.ipynb"
    log = e2e["autograde"].stdout + e2e["autograde"].stderr
    assert "chmod_me left as they are: symbolic link" in log   # planted, and skipped by the permission setting
    assert not notebook.is_symlink() and notebook.stat().st_mode & 0o777 == 0o444
    assert not (folder / "notes.txt").is_symlink() and (folder / "notes.txt").read_text() == "my notes"


def test_e2e_feedback_copies_no_link_hard_link_or_fifo(e2e):
    root, outside = e2e["root"], e2e["outside"]
    assert e2e["feedback"].returncode == 0, _log(e2e["feedback"])
    for student in ("classmate", "linker"):
        folder = root / "feedback" / student / ASSIGNMENT
        assert (folder / f"{ASSIGNMENT}.html").is_file()
        assert not [p for p in folder.rglob("*") if p.is_symlink() or not (p.is_file() or p.is_dir())]
        assert not any(SECRET in p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())
    assert files_in(root / "feedback" / "linker" / ASSIGNMENT) == [f"{ASSIGNMENT}.html", "notes.txt"]
    assert files_in(root / "feedback" / "classmate" / ASSIGNMENT) == [f"{ASSIGNMENT}.html"]
    assert (outside / "other.txt").read_text() == "OTHER" and (outside / "secret").stat().st_mode & 0o777 == 0o600
