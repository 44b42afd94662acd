"""Budgets per grading kernel: memory (its tmpfs files included) and number of processes, with cgroups.

Resource limits (``setrlimit``) hold per process: a kernel that forks, or that fills ``/tmp`` and
``/dev/shm`` (memory, not a file of its own), escapes them. A control group holds everything a
kernel and its children do, as the sandboxes contests use (IOI's ``isolate``) do: every process
started by :func:`wrap_command` joins a fresh group with

* ``memory``: RAM of all its processes plus the tmpfs pages they wrote (``/tmp``, ``/dev/shm``, the
  kernel's folder when that is a tmpfs), killed by the kernel's OOM killer past the limit;
* ``pids``: processes and threads, ``fork`` fails past the limit.

cgroup v2 (one unified hierarchy) and v1 (a ``memory`` and a ``pids`` hierarchy) both work. Creating
groups needs write access to the hierarchy: root, or a delegated subtree (``systemd-run --user
--scope -p Delegate=yes``). Where neither is possible :func:`create` returns None and grading goes on
with the per-process limits only (:func:`availability` says why, and the README lists what degrades).
"""
from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "course-grading"
_COUNTER = itertools.count()


def _own_path(controller: str) -> str:
    """This process's group in ``controller``'s hierarchy ("" for v2), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


def _writable_base(mount: Path, own: str) -> Path | None:
    """Where this process may create groups in a hierarchy mounted at ``mount``: its own group, else the root."""
    for base in (mount / own.lstrip("/"), mount):
        if base.is_dir() and os.access(base, os.W_OK):
            return base
    return None


def _v2_base() -> Path | None:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.exists():
        return None
    base = _writable_base(CGROUP_ROOT, _own_path(""))
    if base is None or not {"memory", "pids"} <= set((base / "cgroup.controllers").read_text().split()):
        return None
    return base


def _v1_bases() -> dict[str, Path] | None:
    bases = {}
    for controller in ("memory", "pids"):
        mount = CGROUP_ROOT / controller
        if not (mount / "cgroup.procs").exists():
            return None
        base = _writable_base(mount, _own_path(controller))
        if base is None:
            return None
        bases[controller] = base
    return bases


def availability() -> str:
    """'cgroup v2', 'cgroup v1', or why neither can be used here."""
    if _v2_base() is not None:
        return "cgroup v2"
    if _v1_bases() is not None:
        return "cgroup v1"
    return "no writable cgroup hierarchy with the memory and pids controllers (not root, nothing delegated)"


@dataclass
class KernelCgroup:
    """One group (v2) or a pair of groups (v1 memory + pids) for one kernel and everything it starts."""

    folders: dict[str, Path]      # controller ("memory", "pids", or "unified") -> its group folder
    memory_bytes: int
    max_pids: int

    @property
    def version(self) -> int:
        return 2 if "unified" in self.folders else 1

    def _file(self, controller: str, v1_name: str, v2_name: str) -> Path:
        if self.version == 2:
            return self.folders["unified"] / v2_name
        return self.folders[controller] / v1_name

    def procs_files(self) -> list[str]:
        """The files a process writes its pid into to join the group(s)."""
        return [str(folder / "cgroup.procs") for folder in self.folders.values()]

    def set_limits(self, memory_bytes: int, max_pids: int) -> None:
        self.memory_bytes, self.max_pids = memory_bytes, max_pids
        if self.version == 2:
            folder = self.folders["unified"]
            (folder / "memory.max").write_text(str(memory_bytes))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(max_pids))
        else:
            (self.folders["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = self.folders["memory"] / "memory.memsw.limit_in_bytes"
            if swap.exists():
                try:
                    swap.write_text(str(memory_bytes))
                except OSError:
                    pass   # swap accounting is off: nothing to limit
            (self.folders["pids"] / "pids.max").write_text(str(max_pids))

    def memory_used(self) -> int:
        path = self._file("memory", "memory.usage_in_bytes", "memory.current")
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return 0

    def pids_used(self) -> int:
        try:
            return int(self._file("pids", "pids.current", "pids.current").read_text())
        except (OSError, ValueError):
            return 0

    def counters(self) -> dict[str, int]:
        """How often the group hit its limits: {'oom_kill': N, 'pids_max': M} (cumulative)."""
        found = {"oom_kill": 0, "pids_max": 0}
        memory_events = self._file("memory", "memory.oom_control", "memory.events")
        for path, key, name in ((memory_events, "oom_kill", "oom_kill"),
                                (self._file("pids", "pids.events", "pids.events"), "pids_max", "max")):
            try:
                for line in path.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == name:
                        found[key] = int(parts[1])
            except (OSError, ValueError):
                pass
        if self.version == 1 and found["oom_kill"] == 0:
            try:   # older v1 kernels have no oom_kill counter: the failure count says the limit was hit
                found["oom_kill"] = int((self.folders["memory"] / "memory.failcnt").read_text()) and 1
            except (OSError, ValueError):
                pass
        return found

    def pids(self) -> list[int]:
        found = []
        for folder in self.folders.values():
            try:
                found += [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pass
        return sorted(set(found))

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the group, until none is left (or ``timeout`` seconds)."""
        kill_file = self.folders.get("unified", Path("/nonexistent")) / "cgroup.kill"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and delete the group(s)."""
        self.kill_all()
        for folder in self.folders.values():
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)   # the last processes are still exiting


def create(memory_bytes: int, max_pids: int, label: str = "kernel") -> KernelCgroup | None:
    """A new group with these limits, or None where cgroups cannot be used (see :func:`availability`)."""
    name = f"{GROUP_PREFIX}-{os.getpid()}-{label}-{next(_COUNTER)}"
    folders: dict[str, Path] = {}
    try:
        base = _v2_base()
        if base is not None:
            folders["unified"] = base / name
        else:
            bases = _v1_bases()
            if bases is None:
                return None
            folders = {controller: bases[controller] / name for controller in ("memory", "pids")}
        for folder in folders.values():
            folder.mkdir()
        group = KernelCgroup(folders, memory_bytes, max_pids)
        group.set_limits(memory_bytes, max_pids)
        return group
    except OSError:
        for folder in folders.values():
            try:
                folder.rmdir()
            except OSError:
                pass
        return None


def wrap_command(cmd: list[str], group: KernelCgroup | None) -> list[str]:
    """``cmd`` started inside ``group``: a shell joins it, then becomes ``cmd`` (children inherit the group)."""
    if group is None:
        return list(cmd)
    join = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", join, "sh", *group.procs_files(), "--", *cmd]
