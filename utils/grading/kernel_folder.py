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

from utils.grading import safe_files
from utils.grading.in_kernel.recording import GRADING_DIR, inputs_path

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


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
        too_large = KernelFolderError(errno.EFBIG, "the submission's files are larger than the kernel's budget "
                                      f"of {self.disk_bytes // 2**20} MiB and {self.max_files} files")
        source_fd = safe_files.open_folder(str(source))
        try:
            found = safe_files.scan(source_fd, self.max_files, max_depth=8,
                                    ignore=[GRADING_DIR, "__pycache__", *(f"*{s}" for s in skip_suffixes)])
            if not found.complete:
                raise too_large
            left = self.disk_bytes
            for relative, info in found.entries:
                folder, _, name = relative.rpartition("/")
                if stat.S_ISDIR(info.st_mode):
                    os.makedirs(self.work / relative, exist_ok=True)
                elif stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                    if info.st_size > left:
                        raise too_large
                    from_fd = safe_files.open_folder(source_fd, folder)
                    to_fd = safe_files.open_folder(str(self.work), folder)
                    try:
                        left -= safe_files.copy_file(from_fd, name, to_fd, left)
                    except (safe_files.NotAPlainFile, FileNotFoundError):
                        pass   # changed since it was listed: not copied
                    finally:
                        os.close(from_fd)
                        os.close(to_fd)
        finally:
            os.close(source_fd)

    def write_inputs(self, cell_id: str, data: bytes) -> None:
        """Put one test cell's inputs where the kernel's recorder reads them, through no link the kernel made."""
        path = inputs_path(self.work, cell_id)
        work_fd = os.open(self.work, _OPEN_DIR)
        try:
            grading_fd = _fresh_dir(work_fd, GRADING_DIR)
            try:
                try:
                    os.unlink(path.name, dir_fd=grading_fd)
                except IsADirectoryError:
                    shutil.rmtree(path.name, dir_fd=grading_fd)
                except FileNotFoundError:
                    pass
                safe_files.write_file(grading_fd, path.name, data)
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
        work_fd = os.open(self.work, _OPEN_DIR)
        try:
            found = safe_files.scan(work_fd, self.max_files + 1, max_depth=64)
        finally:
            os.close(work_fd)
        total = sum(info.st_blocks * 512 for _, info in found.entries)
        return Usage(total, len(found.entries), complete=found.complete and not found.too_deep)

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
