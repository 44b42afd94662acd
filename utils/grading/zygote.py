"""Warm grading kernels: fork each notebook's kernel from a sandboxed process that imported its libraries once.

nbgrader starts a new kernel for every notebook, and the kernel then imports numpy, torch,
matplotlib and the course's checks again: 1.5 to 3.5 s per notebook on a 2-core machine, paid
for every student. With ``c.SandboxedExecute.warm_kernels = True`` (the parallel grader turns
it on), a :class:`KernelZygote` per notebook does those imports once, inside the same bubblewrap
sandbox as a kernel, and forks a fresh, isolated kernel for each student
(``utils/grading/in_sandbox/zygote_server.py`` says how the child is isolated).

What a zygote imports is read from the notebook's locked cells (restored from the source
version before grading), so a kernel gets nothing its notebook does not import itself, and
never a library that a from-scratch notebook must not use.
"""
from __future__ import annotations

import ast
import atexit
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from utils.grading import cgroups
from utils.grading.sandbox import IN_SANDBOX_DIR, kernel_env, sandbox_args, visible_dirs

KEEP_MOUNTPOINT = "/.keep"     # an empty folder in the zygote's sandbox where a child parks its mounts
START_TIMEOUT = 120.0        # seconds until the zygote has done its imports
ZYGOTE_MEMORY = 2 * 2**30    # memory the zygote may use for its imports, before its group's limit is tightened
REPLY_TIMEOUT = 15.0         # seconds for any other reply; a zygote that stops answering is killed
MAX_ZYGOTES = 3              # live zygotes per grading process (one per notebook being graded)


class ZygoteError(RuntimeError):
    pass


def locked_imports(nb) -> list[str]:
    """Absolute modules imported by the notebook's locked (instructor) code cells, in order."""
    found: list[str] = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("locked") or meta.get("solution"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [n for n in names if n not in found]
    return found


def preload_modules(nb, blocked_modules: list[str]) -> list[str]:
    """What a zygote imports for this notebook: ipykernel, then the locked cells' imports."""
    blocked = tuple(blocked_modules)
    wanted = ["ipykernel.kernelapp"] + locked_imports(nb)
    return [m for m in wanted if m.split(".")[0] not in blocked]


class ZygoteKernelProcess:
    """The forked kernel, with the part of ``subprocess.Popen`` that jupyter_client uses."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: KernelZygote, pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None

    def poll(self):
        if self.returncode is None:
            try:
                self.returncode = self.zygote.request(op="poll", pid=self.pid)["returncode"]
            except ZygoteError:
                self.returncode = -signal.SIGKILL   # the zygote's death kills its kernels
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                self.zygote.request(op="signal", pid=self.pid, signal=int(signum))
            except ZygoteError:
                self.returncode = -signal.SIGKILL

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


@dataclass(frozen=True)
class KernelBudget:
    """What one kernel may use in all (its processes together): see :mod:`utils.grading.cgroups`."""

    memory_bytes: int
    max_pids: int
    tmp_bytes: int


class KernelZygote:
    """One sandboxed zygote process (``utils/grading/in_sandbox/zygote_server.py``) and its control pipe.

    The zygote runs in a control group of its own (where cgroups can be used), and so does each
    kernel it forks, since it forks one at a time: the group's limits are the zygote's own use
    after its imports plus one kernel's budget.
    """

    def __init__(self, *, bwrap: str, notebook: str, blocked_modules: list[str], preload: list[str],
                 kernels_base: str, budget: KernelBudget, reply_timeout: float = REPLY_TIMEOUT):
        self.writable = [str(Path(kernels_base).resolve())]
        self.reply_timeout = reply_timeout
        self.budget = budget
        self._ids = itertools.count()
        stub_dir = tempfile.mkdtemp(prefix="zygote-", dir=kernels_base)
        args = sandbox_args(bwrap, self.writable, blocked_modules, notebook, stub_dir, budget.tmp_bytes)
        # The zygote keeps the two capabilities its children need to build their own mount view;
        # each child drops them (and every other) before it runs the kernel.
        args += ["--unshare-user", "--cap-drop", "ALL", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP",
                 "--dir", KEEP_MOUNTPOINT, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/", "--"]
        config = {"preload": preload}
        cmd = args + [sys.executable, str(IN_SANDBOX_DIR / "zygote_server.py"), json.dumps(config)]
        self.lock = threading.Lock()
        # Room for the imports; the limits are tightened once they are done.
        self.cgroup = cgroups.create(budget.memory_bytes + ZYGOTE_MEMORY, budget.max_pids + 64, label="zygote")
        self.process = subprocess.Popen(cgroups.wrap_command(cmd, self.cgroup), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=kernel_env(dict(os.environ)))
        ready = self._read(START_TIMEOUT)
        if not ready.get("ready"):
            self.close()
            raise ZygoteError(f"the kernel zygote did not start: {ready}")
        if self.cgroup is not None:
            self.cgroup.set_limits(self.cgroup.memory_used() + budget.memory_bytes,
                                   self.cgroup.pids_used() + budget.max_pids)

    def _read(self, timeout: float | None = None) -> dict:
        timeout = self.reply_timeout if timeout is None else timeout
        stream = self.process.stdout
        ready, _, _ = select.select([stream], [], [], timeout)
        line = stream.readline() if ready else ""
        if not line:
            code = self.process.poll()
            if code is None:
                self._stop()   # stopped or stuck: never wait on it again
            raise ZygoteError("the kernel zygote " + ("stopped" if code is not None else
                                                      f"did not answer within {timeout:g} s")
                              + (f" (exit status {code})" if code is not None else ""))
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._stop()   # only the zygote writes this pipe: anything else means it cannot be trusted
            raise ZygoteError(f"the kernel zygote sent a malformed reply ({line[:80]!r}); it was stopped")
        return reply

    def _stop(self) -> None:
        self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def request(self, **message) -> dict:
        with self.lock:
            if not self.alive():
                raise ZygoteError(f"the kernel zygote has stopped (exit status {self.process.poll()})")
            request_id = next(self._ids)
            try:
                self.process.stdin.write(json.dumps({"id": request_id, **message}) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise ZygoteError(f"the kernel zygote has stopped ({exc})") from None
            reply = self._read()
            if reply.get("id") != request_id:
                self._stop()
                raise ZygoteError(f"the kernel zygote answered request {reply.get('id')!r}, not {request_id}; "
                                  "it was stopped")
        if "error" in reply:
            raise ZygoteError(reply["error"])
        return reply

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self, argv: list[str], *, env: dict[str, str], cwd: str, keep: list[str], limits: dict
              ) -> ZygoteKernelProcess:
        """Fork a kernel running ``python -m ipykernel_launcher *argv`` that sees only ``keep``."""
        keep = [str(Path(p).resolve()) for p in keep]
        reply = self.request(op="spawn", argv=list(argv), env=kernel_env(env), cwd=str(Path(cwd).resolve()),
                             keep=keep, hide=self.writable, carry=visible_dirs(), mountpoint=KEEP_MOUNTPOINT,
                             limits=limits)
        return ZygoteKernelProcess(self, int(reply["pid"]))

    def kill_kernels(self) -> None:
        """Kill every process of the last kernel (the zygote kills leftovers itself, this is the grader's own)."""
        try:
            self.request(op="reap")
        except ZygoteError:
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.cgroup is not None:
            self.cgroup.remove()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except Exception:   # already closed
                pass


class ZygotePool:
    """The live zygotes of this grading process, one per (notebook, imports, blocked libraries, budget)."""

    def __init__(self):
        self.zygotes: OrderedDict[tuple, KernelZygote] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, *, bwrap: str, notebook: str, blocked_modules: list[str], preload: list[str],
            kernels_base: str, budget: KernelBudget) -> KernelZygote:
        key = (notebook, tuple(blocked_modules), tuple(preload), str(Path(kernels_base).resolve()), budget)
        with self.lock:
            zygote = self.zygotes.pop(key, None)
            if zygote is not None and not zygote.alive():
                zygote.close()
                zygote = None
            if zygote is None:
                zygote = KernelZygote(bwrap=bwrap, notebook=notebook, blocked_modules=blocked_modules,
                                      preload=preload, kernels_base=kernels_base, budget=budget)
            self.zygotes[key] = zygote
            while len(self.zygotes) > MAX_ZYGOTES:
                _, oldest = self.zygotes.popitem(last=False)
                oldest.close()
            return zygote

    def close(self) -> None:
        with self.lock:
            for zygote in self.zygotes.values():
                zygote.close()
            self.zygotes.clear()


POOL = ZygotePool()
atexit.register(POOL.close)
