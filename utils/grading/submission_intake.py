"""SubmissionIntake: what the grader takes from a submitted folder, copied into a folder of its own first.

nbgrader copies the extra files of ``submitted/<student>/<assignment>/`` with ``shutil.copy`` and
parses the notebooks with ``nbformat.read``: it follows every link and reads any size. A notebook
that is only a link to ``source/`` scored full marks that way, and a 400 MB notebook added 1.1 GB
to the grading process. The intake runs before nbgrader sees the submission: it lists the folder
with ``lstat`` only (:func:`~utils.grading.safe_files.scan`) and copies into a new folder the
regular files with one name that keep within the limits below
(:func:`~utils.grading.safe_files.copy_file`); nbgrader then grades that copy. Everything else is
refused and named in a note for the student's feedback (:meth:`Intake.note`):

* the student's folder or the assignment folder is a link: nothing is taken;
* symbolic links, hard links (a file with a second name, e.g. in ``source/`` or the gradebook),
  FIFOs, sockets and devices;
* a file larger than ``max_file_mb`` (refused before it is read, let alone parsed);
* folders nested deeper than ``max_depth``;
* more than ``max_files`` entries, or more than ``max_total_mb`` in all: only the files in ``keep``
  (the expected notebooks) are taken. Listing stops at ``max_files`` entries, so a folder of
  20,000 files is refused in milliseconds, not copied.

Names in ``ignore`` (``CourseDirectory.ignore``) are left out, as nbgrader leaves them out.
Only the grader's side runs this; it never writes into the submitted folder.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from utils.grading.safe_files import NotAPlainFile, TooLarge, copy_file, kind_of, open_folder, scan

MIB = 1 << 20
_NOTE_ITEMS = 10   # refused files named in a note; the rest are counted


def shown(text: str, limit: int = 80) -> str:
    """``text`` as a note may quote it inside backticks: no backtick, markup or control character, ``limit`` long."""
    safe = re.sub(r"[`<>&\"'\\\x00-\x1f\x7f]", "?", text)
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


@dataclass
class Intake:
    """What the intake took from one folder: ``copied`` (relative paths) and ``refused`` (relative
    path → the rule it broke; ``"."`` is the folder itself); ``limit`` says why every file not in
    ``keep`` was refused (a count or size limit), else it is empty."""
    copied: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    limit: str = ""

    @property
    def folder_refused(self) -> str:
        """Why nothing at all was taken, or ``""``."""
        return self.refused.get(".", "")

    def note(self, leave_out: Iterable[str] = ()) -> str:
        """A short note for the student's feedback naming what was not graded and why; ``""`` when nothing was
        refused. Paths in ``leave_out`` (e.g. a refused notebook that has its own note) are not named."""
        if self.folder_refused:
            return f"{self.folder_refused}. Nothing in it was graded."
        leave_out = set(leave_out)
        items = [f"`{shown(path)}` ({why})" for path, why in sorted(self.refused.items()) if path not in leave_out]
        text = []
        if items:
            more = f"; and {len(items) - _NOTE_ITEMS} more" if len(items) > _NOTE_ITEMS else ""
            text.append("These files of your submission were not graded: " + "; ".join(items[:_NOTE_ITEMS]) + more
                        + ".")
        if self.limit:
            text.append(f"{self.limit}, so only its notebooks were graded.")
        return " ".join(text)


class SubmissionIntake(LoggingConfigurable):
    """Copies what may be graded of a submitted folder into a folder of the grader's (see the module)."""

    max_file_mb = Float(100.0, help=(
        "A submitted file larger than this many MiB is refused before it is read; a notebook so refused "
        "is graded as the empty release notebook, with a note.")).tag(config=True)
    max_files = Integer(1000, help=(
        "A submission holding more entries than this (files, folders and links at any depth, ignored names "
        "included) has only its expected notebooks graded, with a note; listing stops at this count.")
    ).tag(config=True)
    max_total_mb = Float(200.0, help=(
        "When the files of a submission add up to more than this many MiB, only its expected notebooks "
        "are graded, with a note.")).tag(config=True)
    max_depth = Integer(10, help=(
        "Folders nested more than this many levels below the assignment folder are not opened; they are "
        "named in the note.")).tag(config=True)

    def rule_broken(self, st: os.stat_result) -> str:
        """The rule an entry breaks, from its ``lstat``; ``""`` for a folder or a file that may be copied."""
        kind = kind_of(st)
        if kind == "hard link":
            return f"hard links are not graded; this file has {st.st_nlink} names"
        if kind:
            return f"{kind}s are not graded"
        if stat.S_ISREG(st.st_mode) and st.st_size > self.max_file_mb * MIB:
            return self._too_large(st.st_size)
        return ""

    def _too_large(self, size: int) -> str:
        return f"larger than {self.max_file_mb:g} MiB: {size / MIB:.1f} MiB"

    def take(self, folder: str, target: int, keep: Iterable[str] = (), ignore: Iterable[str] = ()) -> Intake:
        """Copy what may be graded of ``folder`` (and nothing else) into the folder descriptor ``target``.

        ``folder`` and the folder above it (the student's) must be real folders; what is above those
        is trusted. ``keep`` names files directly in ``folder`` (the expected notebooks) that are taken
        even when a count or size limit refuses the rest.
        """
        intake, keep = Intake(), set(keep)
        folder = os.path.normpath(os.path.abspath(folder))
        student_folder = os.path.dirname(folder)
        for path in (student_folder, folder):
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                kind = kind_of(st) or "regular file"
                intake.refused["."] = f"`{shown(os.path.basename(path))}` is a {kind}, not a folder" + (
                    "; symbolic links are not graded" if kind == "symbolic link" else "")
                return intake
        source = open_folder(os.path.dirname(student_folder),
                             os.path.join(os.path.basename(student_folder), os.path.basename(folder)))
        try:
            listing = scan(source, self.max_files, self.max_depth, ignore)
            planned = []
            if listing.complete:
                for path in listing.too_deep:
                    intake.refused[path] = f"folders nested more than {self.max_depth} deep are not graded"
                for path, st in listing.entries:
                    why = self.rule_broken(st)
                    if why:
                        intake.refused[path] = why
                    elif stat.S_ISREG(st.st_mode):
                        planned.append((path, st))
            else:
                intake.limit = f"The submission holds more than {self.max_files} files and folders"
                for name in sorted(keep):
                    try:
                        st = os.stat(name, dir_fd=source, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    why = self.rule_broken(st) or ("" if stat.S_ISREG(st.st_mode) else "folders are not notebooks")
                    if why:
                        intake.refused[name] = why
                    else:
                        planned.append((name, st))
            total = sum(st.st_size for _, st in planned)
            if total > self.max_total_mb * MIB:
                intake.limit = (f"The files of the submission add up to {total / MIB:.1f} MiB, more than the "
                                f"{self.max_total_mb:g} MiB allowed")
                planned = [(path, st) for path, st in planned if path in keep]
            self._copy(source, target, [path for path, _ in planned], intake)
        finally:
            os.close(source)
        return intake

    def _copy(self, source: int, target: int, paths: list[str], intake: Intake) -> None:
        """Copy ``paths`` (sorted, so the files of one folder come together) from ``source`` to ``target``."""
        opened, folders = None, []
        try:
            for path in paths:
                head, _, name = path.rpartition("/")
                if head != opened:
                    _close(folders)
                    opened = head
                    try:
                        folders.append(open_folder(source, head))
                        folders.append(open_folder(target, head, create=True))
                    except OSError:   # a folder replaced since it was listed
                        _close(folders)
                if len(folders) < 2:
                    intake.refused[path] = "its folder changed while the submission was copied"
                    continue
                try:
                    copy_file(folders[0], name, folders[1], int(self.max_file_mb * MIB))
                except NotAPlainFile as exc:   # replaced since it was listed
                    intake.refused[path] = (f"hard links are not graded; this file has {exc.links} names"
                                            if exc.kind == "hard link" else f"{exc.kind}s are not graded")
                except TooLarge as exc:
                    intake.refused[path] = self._too_large(exc.size)
                else:
                    intake.copied.append(path)
        finally:
            _close(folders)


def _close(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())
