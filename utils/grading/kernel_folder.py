"""Where a grading kernel works: a fresh folder per notebook that the grader never writes through afterwards.

nbgrader would run the kernel in ``autograded/<student>/<assignment>/`` and later write the graded
notebook, set permissions and copy feedback files there: a kernel that replaced its notebook by a
link to a classmate's submission or to the gradebook made the grader write through that link.
Here the kernel gets its own folder instead:

* ``work/``: a copy of the student's regular files (never a link, never a notebook), the kernel's
  working folder, where the grader puts each test cell's inputs just before that cell runs
  (``.grading/``) and reads back the outputs with :mod:`utils.grading.recorded_outputs`;
* ``run/``: the kernel's connection file and sockets.

Both are removed after the notebook, with nothing read from them but the outputs. One notebook is
graded at a time per grading process, so all its kernel folders live under one base folder, a tmpfs
of ``disk_bytes`` and ``max_files`` where the grader may mount one (root): a kernel that writes
too much gets "No space left on device" and costs nobody else anything; the pages it wrote count
towards its memory budget (:mod:`utils.grading.cgroups`). Elsewhere the base is a plain folder,
and :meth:`KernelFolder.usage` measures what the kernel wrote, afterwards.
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from utils.grading.in_kernel.recording import GRADING_DIR, inputs_path

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
COPY_CHUNK = 1 << 20


class KernelFolderError(OSError):
    """The grader could not prepare the kernel's folder (the message says why, for the feedback)."""


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int
    complete: bool      # False when the count stopped early, past the limits


def _mount_tmpfs(path: str, size: int, inodes: int) -> bool:
    """Mount a tmpfs of ``size`` bytes and ``inodes`` files at ``path``; False where this process may not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    options = f"size={size},nr_inodes={inodes},mode=0700,nosuid,nodev"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "course-kernels", path],
                          capture_output=True, text=True)
    return done.returncode == 0


def _unmount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(path.encode(), 2)   # MNT_DETACH: gone even while a dying process still holds it


class KernelFolders:
    """The base folder of this grading process's kernel folders (a bounded tmpfs where possible)."""

    def __init__(self):
        self.base = ""
        self.mounted = False
        self.budget: tuple[int, int] | None = None
        self.lock = threading.Lock()

    def base_dir(self, disk_bytes: int, max_files: int) -> str:
        """The base, created (and bounded) on first use or when the budget changed."""
        with self.lock:
            if self.base and os.path.isdir(self.base) and self.budget == (disk_bytes, max_files):
                return self.base
            self.close()
            self.base = tempfile.mkdtemp(prefix="course-kernels-")
            # Room for the connection files and the grading inputs on top of the student's budget.
            self.mounted = _mount_tmpfs(self.base, disk_bytes + 64 * 2**20, max_files + 256)
            self.budget = (disk_bytes, max_files)
            return self.base

    def new(self, disk_bytes: int, max_files: int) -> KernelFolder:
        base = self.base_dir(disk_bytes, max_files)
        root = Path(tempfile.mkdtemp(prefix="kernel-", dir=base))
        (root / "work").mkdir()
        (root / "run").mkdir()
        return KernelFolder(root, disk_bytes, max_files, bounded=self.mounted)

    def close(self) -> None:
        if self.base:
            if self.mounted:
                _unmount(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
        self.base, self.mounted, self.budget = "", False, None


FOLDERS = KernelFolders()
atexit.register(FOLDERS.close)


class KernelFolder:
    """One notebook's ``work/`` and ``run/`` folders (see the module)."""

    def __init__(self, root: Path, disk_bytes: int, max_files: int, bounded: bool):
        self.root, self.disk_bytes, self.max_files, self.bounded = root, disk_bytes, max_files, bounded
        self.work, self.run = root / "work", root / "run"

    def copy_student_files(self, source: Path, skip_suffixes: tuple[str, ...] = (".ipynb",)) -> None:
        """Copy the regular files under ``source`` into ``work/`` (links, special files and notebooks skipped).

        ``source`` is nbgrader's autograded folder, already checked at intake; the limits are
        checked again here, so a copy never exceeds the kernel's own budget.
        """
        budget = {"bytes": self.disk_bytes, "files": self.max_files}
        self._copy_tree(str(source), str(self.work), skip_suffixes, budget, depth=0)

    def _copy_tree(self, source: str, target: str, skip: tuple[str, ...], budget: dict, depth: int) -> None:
        if depth > 8:
            return
        try:
            entries = list(os.scandir(source))
        except OSError:
            return
        for entry in entries:
            if entry.name in (GRADING_DIR, "__pycache__") or entry.name.endswith(skip):
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(os.path.join(target, entry.name))
                self._copy_tree(entry.path, os.path.join(target, entry.name), skip, budget, depth + 1)
            elif stat.S_ISREG(info.st_mode):
                budget["files"] -= 1
                budget["bytes"] -= info.st_size
                if budget["files"] < 0 or budget["bytes"] < 0:
                    raise KernelFolderError(errno.EFBIG, "the submission's files are larger than the kernel's "
                                            f"budget of {self.disk_bytes // 2**20} MiB and {self.max_files} files")
                _copy_regular_file(entry.path, os.path.join(target, entry.name), info.st_size)

    def write_inputs(self, cell_id: str, data: bytes) -> None:
        """Put one test cell's inputs where the kernel's recorder reads them, through no link the kernel made."""
        path = inputs_path(self.work, cell_id)
        work_fd = os.open(self.work, _OPEN_DIR)
        try:
            grading_fd = _fresh_dir(work_fd, GRADING_DIR)
            try:
                try:
                    os.unlink(path.name, dir_fd=grading_fd)
                except FileNotFoundError:
                    pass
                except IsADirectoryError:
                    shutil.rmtree(path.name, dir_fd=grading_fd)
                fd = os.open(path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                             dir_fd=grading_fd)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            finally:
                os.close(grading_fd)
        except OSError as exc:
            raise KernelFolderError(exc.errno or errno.EIO, "the grading inputs could not be written into the "
                                    f"kernel's folder ({exc.strerror or exc}); something in the notebook changed "
                                    f"{GRADING_DIR}/ or filled the folder") from None
        finally:
            os.close(work_fd)

    def usage(self) -> Usage:
        """Bytes and files under ``work/``, counting at most a little past the limits."""
        total = files = 0
        stack = [str(self.work)]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                files += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
                if files > self.max_files or total > self.disk_bytes:
                    return Usage(total, files, complete=False)
        return Usage(total, files, complete=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)   # never follows links: they are removed, not entered


def _fresh_dir(parent_fd: int, name: str) -> int:
    """An fd of the folder ``name`` in ``parent_fd``, which must be a real folder (a link in its place is removed)."""
    try:
        return os.open(name, _OPEN_DIR, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except OSError:   # a link or a file in its place
        os.unlink(name, dir_fd=parent_fd)
    os.mkdir(name, 0o755, dir_fd=parent_fd)
    return os.open(name, _OPEN_DIR, dir_fd=parent_fd)


def _copy_regular_file(source: str, target: str, size: int) -> None:
    """Copy one regular file, reading it without following a link and no more than its size."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            left = size
            while left > 0:
                chunk = os.read(fd, min(COPY_CHUNK, left))
                if not chunk:
                    break
                os.write(out, chunk)
                left -= len(chunk)
        finally:
            os.close(out)
    finally:
        os.close(fd)
