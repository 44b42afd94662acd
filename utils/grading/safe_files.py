"""Reading and writing folders a student or a kernel could have filled, without ever following a link.

Any entry of a submission (from a zip, a git upload, or a kernel that ran in the folder) may be a
symbolic link, a second name of a file elsewhere on the same filesystem (a hard link to the
gradebook or to ``source/``), a FIFO that blocks its reader forever, or a device. nbgrader and
nbconvert open such paths as plain files: ``shutil.copy``, ``open(path, "w")`` and ``os.chmod``
follow them. The helpers here never do, and work relative to folder descriptors, so replacing a
path component by a link between a check and a use changes nothing:

* :func:`open_folder` opens a folder below a trusted one, each component with ``O_NOFOLLOW``;
* :func:`scan` lists a folder with ``lstat`` only, bounded in entries and depth: its cost is linear
  in what it lists and it stops at the bound, however many files the folder holds;
* :func:`copy_file` copies a regular file that has one name, read through an ``O_NOFOLLOW``
  descriptor checked with ``fstat``, never more than a given size;
* :func:`write_file` removes whatever holds the name, then creates a new file with
  ``O_CREAT | O_EXCL | O_NOFOLLOW``: a link, or a file with a second name, is replaced, never written through;
* :func:`remove_links` clears links and special files from a folder the grader owns;
  :func:`chmod_plain_files` sets permissions on its regular files only;
* :class:`NoFollowWrites` makes an nbgrader converter write its notebooks, set permissions and
  prepare its destination folder with these helpers.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FOLDER_NOFOLLOW = _FOLDER | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO returns at once (fstat then refuses it) instead of waiting for a writer.
_READ_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class NotAPlainFile(Exception):
    """An entry that is not a regular file with one name; ``kind`` says what it is (see :func:`kind_of`)."""

    def __init__(self, name: str, kind: str, links: int = 1):
        super().__init__(f"{name} is a {kind}")
        self.name, self.kind, self.links = name, kind, links


class TooLarge(Exception):
    """A file holding more than ``limit`` bytes; ``size`` is what was seen (at least ``limit + 1``)."""

    def __init__(self, name: str, size: int, limit: int):
        super().__init__(f"{name} holds {size} bytes, more than {limit}")
        self.name, self.size, self.limit = name, size, limit


def kind_of(st: os.stat_result) -> str | None:
    """What an ``lstat`` result describes when it is neither a folder nor a regular file with one name, else None."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return "hard link" if st.st_nlink > 1 else None
    for test, kind in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return "special file"


def _parts(relative: str) -> list[str]:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{relative!r} leaves the folder it is relative to")
    return parts


def open_folder(top: str | int, below: str = "", create: bool = False) -> int:
    """A descriptor of the folder ``top/below``, to be closed by the caller.

    ``top`` (a path, or a folder descriptor) is trusted; each component of ``below`` is opened with
    ``O_NOFOLLOW`` (a link there raises ``OSError`` ELOOP, a file ENOTDIR) and, with ``create``,
    made first when missing (mode 0o755).
    """
    fd = os.open(".", _FOLDER, dir_fd=top) if isinstance(top, int) else os.open(top, _FOLDER)
    try:
        for part in _parts(below):
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            child = os.open(part, _FOLDER_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_plain_file(folder: int, name: str) -> tuple[int, os.stat_result]:
    """``(descriptor, fstat)`` of the regular file ``name`` in ``folder``; :class:`NotAPlainFile` for anything else."""
    try:
        fd = os.open(name, _READ_NOFOLLOW, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAPlainFile(name, "symbolic link") from None
        raise
    st = os.fstat(fd)
    kind = "folder" if stat.S_ISDIR(st.st_mode) else kind_of(st)
    if kind:
        os.close(fd)
        raise NotAPlainFile(name, kind, st.st_nlink)
    return fd, st


def write_file(folder: int, name: str, data: bytes | Iterable[bytes], mode: int = 0o644) -> None:
    """Make ``name`` in ``folder`` a new file holding ``data`` (bytes, or chunks of bytes).

    Whatever held the name (a link, a FIFO, a file with a second name) is removed first and the new
    file is created with ``O_EXCL | O_NOFOLLOW``: nothing outside the folder is ever written. If the
    chunks raise, the partial file is removed.
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a file name")
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
    fd = os.open(name, _CREATE_NEW, mode, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in [data] if isinstance(data, bytes | bytearray) else data:
                out.write(chunk)
    except BaseException:
        try:
            os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            pass
        raise


def write_below(folder: int, relative: str, data: bytes, mode: int = 0o644) -> None:
    """:func:`write_file` at a path relative to ``folder``; missing folders are made, none is followed."""
    head, _, name = relative.rpartition("/")
    inner = open_folder(folder, head, create=True)
    try:
        write_file(inner, name, data, mode)
    finally:
        os.close(inner)


def copy_file(source: int, name: str, target: int, max_bytes: int, mode: int = 0o644) -> int:
    """Copy the regular file ``name`` of folder ``source`` into folder ``target``; returns its size.

    Raises :class:`NotAPlainFile` for a link, a file with a second name or a special file, and
    :class:`TooLarge` when it holds more than ``max_bytes`` (checked before reading and while reading,
    so a file that grows is cut off too); nothing is left in ``target`` then.
    """
    fd, st = open_plain_file(source, name)
    with os.fdopen(fd, "rb") as src:
        if st.st_size > max_bytes:
            raise TooLarge(name, st.st_size, max_bytes)
        copied = 0

        def chunks():
            nonlocal copied
            while chunk := src.read(min(_CHUNK, max_bytes + 1 - copied)):
                copied += len(chunk)
                if copied > max_bytes:
                    raise TooLarge(name, copied, max_bytes)
                yield chunk

        write_file(target, name, chunks(), mode)
    return copied


@dataclass
class Scan:
    """What :func:`scan` listed: ``entries`` (relative path, lstat) sorted by path; ``complete`` is False when
    the listing stopped at its bound; ``too_deep`` holds the folders it did not open."""
    entries: list[tuple[str, os.stat_result]] = field(default_factory=list)
    complete: bool = True
    too_deep: list[str] = field(default_factory=list)


class _Full(Exception):
    pass


def scan(folder: int, max_entries: int, max_depth: int, ignore: Iterable[str] = ()) -> Scan:
    """Every entry below ``folder``, with ``lstat`` only: no link is followed, no file opened.

    Listing stops after ``max_entries`` entries (ignored ones included), so its cost is bounded
    whatever the folder holds. Names matching a glob of ``ignore`` are counted, neither listed nor
    opened. A folder nested ``max_depth`` deep is listed; its subfolders are in ``too_deep``, unopened.
    """
    ignore = list(ignore)
    found = Scan()
    seen = 0

    def walk(fd: int, prefix: str, depth: int) -> None:
        nonlocal seen
        with os.scandir(fd) as entries:
            for entry in entries:
                seen += 1
                if seen > max_entries:
                    raise _Full
                if any(fnmatchcase(entry.name, pattern) for pattern in ignore):
                    continue
                relative = prefix + entry.name
                st = entry.stat(follow_symlinks=False)
                found.entries.append((relative, st))
                if not stat.S_ISDIR(st.st_mode):
                    continue
                if depth >= max_depth:
                    found.too_deep.append(relative)
                    continue
                child = os.open(entry.name, _FOLDER_NOFOLLOW, dir_fd=fd)
                try:
                    walk(child, relative + "/", depth + 1)
                finally:
                    os.close(child)

    try:
        walk(folder, "", 0)
    except _Full:
        found.complete = False
    found.entries.sort(key=lambda item: item[0])
    return found


def _open_existing(top: str, below: str) -> int | None:
    try:
        return open_folder(top, below)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise


def remove_links(top: str, below: str = "", max_depth: int = 64) -> list[str]:
    """Remove every symbolic link, hard-linked file and special file of the folder ``top/below``; returns them.

    ``top`` is trusted. A component of ``below`` that is not a real folder (a link planted in place of
    the student's folder) is removed itself. Folders nested deeper than ``max_depth`` are left as they
    are: nothing of the grader's walks into them.
    """
    removed: list[str] = []
    try:
        fd = os.open(top, _FOLDER)
    except FileNotFoundError:
        return removed
    parts = _parts(below)
    try:
        for i, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return removed
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(part, dir_fd=fd)
                removed.append("/".join(parts[:i + 1]))
                return removed
            child = os.open(part, _FOLDER_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child

        def walk(folder: int, prefix: str, depth: int) -> None:
            with os.scandir(folder) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if kind_of(st):
                        os.unlink(entry.name, dir_fd=folder)
                        removed.append(prefix + entry.name)
                    elif stat.S_ISDIR(st.st_mode) and depth < max_depth:
                        child = os.open(entry.name, _FOLDER_NOFOLLOW, dir_fd=folder)
                        try:
                            walk(child, prefix + entry.name + "/", depth + 1)
                        finally:
                            os.close(child)

        walk(fd, "", 0)
    finally:
        os.close(fd)
    return removed


def chmod_plain_files(top: str, below: str, mode: int, folder_bits: int = 0,
                      max_depth: int = 64) -> list[tuple[str, str]]:
    """Set ``mode`` on every regular file with one name below ``top/below``; returns what was skipped, and why.

    Each file is opened with ``O_NOFOLLOW``, checked with ``fstat`` and changed through its
    descriptor: a link, a file with a second name and a special file keep their permissions (and so
    does what they point to). ``folder_bits`` are added to the folders' modes (nbgrader's groupshared).
    """
    skipped: list[tuple[str, str]] = []
    fd = _open_existing(top, below)
    if fd is None:
        return skipped

    def walk(folder: int, prefix: str, depth: int) -> None:
        if folder_bits:
            current = os.fstat(folder).st_mode
            if current & folder_bits != folder_bits:
                os.fchmod(folder, (current | folder_bits) & 0o7777)
        with os.scandir(folder) as entries:
            for entry in entries:
                relative = prefix + entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if depth >= max_depth:
                        skipped.append((relative, f"nested deeper than {max_depth} folders"))
                        continue
                    child = os.open(entry.name, _FOLDER_NOFOLLOW, dir_fd=folder)
                    try:
                        walk(child, relative + "/", depth + 1)
                    finally:
                        os.close(child)
                    continue
                kind = kind_of(st)
                if kind:
                    skipped.append((relative, kind))
                    continue
                try:
                    file_fd, _ = open_plain_file(folder, entry.name)
                except NotAPlainFile as exc:
                    skipped.append((relative, exc.kind))
                    continue
                except PermissionError as exc:
                    skipped.append((relative, str(exc)))
                    continue
                try:
                    os.fchmod(file_fd, mode)
                finally:
                    os.close(file_fd)

    try:
        walk(fd, "", 0)
    finally:
        os.close(fd)
    return skipped


class NoFollowWrites:
    """Mixin for an nbgrader converter (first in the bases): its writes never follow a link.

    nbgrader's ``BaseConverter`` writes each notebook with nbconvert's ``FilesWriter`` (``open(path, "w")``),
    sets permissions with ``os.chmod`` over ``os.walk`` and removes its destination with paths, all in
    a folder a kernel could write. Here:

    * ``init_destination`` first removes links, hard-linked files and special files from the
      destination (``autograded/<student>/<assignment>/``, ``feedback/...``), and a link in place of the
      folder itself, so nbgrader's own checks, cleanup and copies there see real files only;
    * ``write_single_notebook`` writes the converted notebook (and any extracted outputs) with
      :func:`write_file` into the destination opened with :func:`open_folder`; ``FilesWriter.files``
      (extra files to copy) is not supported;
    * ``set_permissions`` changes regular files only (:func:`chmod_plain_files`).
    """

    def _destination(self, assignment_id: str, student_id: str) -> tuple[str, str]:
        """(the step's folder, e.g. ``autograded/``, trusted; the student's folder below it, relative)."""
        top = os.path.normpath(self.coursedir.format_path(self._output_directory, ".", "."))
        dest = os.path.normpath(self._format_dest(assignment_id, student_id))
        return top, os.path.relpath(dest, top)

    def clear_destination(self, assignment_id: str, student_id: str) -> None:
        top, below = self._destination(assignment_id, student_id)
        for path in remove_links(top, below):
            self.log.warning("Removed %s from %s: links and special files are never written through",
                             path, os.path.join(top, below))

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        self.clear_destination(assignment_id, student_id)
        return super().init_destination(assignment_id, student_id)

    def write_single_notebook(self, output, resources) -> None:
        assignment_id, student_id = resources["nbgrader"]["assignment"], resources["nbgrader"]["student"]
        top, below = self._destination(assignment_id, student_id)
        os.makedirs(top, exist_ok=True)
        folder = open_folder(top, below, create=True)
        try:
            # The folder exists now, so the writer (whose build_directory nbgrader reads back) makes nothing.
            self.writer.build_directory = self._format_dest(assignment_id, student_id)
            extracted = {**resources.get("outputs", {}), **resources.get("attachments", {})}
            for relative, data in extracted.items():
                write_below(folder, relative, data)
            name = resources["unique_key"] + (resources.get("output_extension") or "")
            self.log.info("Writing %i bytes to %s", len(output), os.path.join(top, below, name))
            write_file(folder, name, output.encode("utf-8") if isinstance(output, str) else output)
        finally:
            os.close(folder)

    def set_permissions(self, assignment_id: str, student_id: str) -> None:
        self.log.info("Setting destination file permissions to %s", self.permissions)
        top, below = self._destination(assignment_id, student_id)
        groupshared = 0o2770 if self.coursedir.groupshared else 0
        for path, why in chmod_plain_files(top, below, int(str(self.permissions), 8), folder_bits=groupshared):
            self.log.warning("Permissions of %s left as they are: %s", os.path.join(top, below, path), why)
        if groupshared:
            current = os.stat(top).st_mode
            if current & groupshared != groupshared:
                try:
                    os.chmod(top, (current | groupshared) & 0o2777)
                except PermissionError:
                    self.log.warning("Could not update permissions of %s to make it groupshared", top)
