"""SandboxedExecute: nbgrader's Execute with the kernel in a bubblewrap sandbox, under limits.

A kernel that dies, or a cell that never stops, is reported in the outputs of that student's
cells (and the cells after it are marked as not run) instead of failing the batch.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Callable, Dict, Integer, List, Unicode

from utils.grading.kernel_manager import SandboxedKernelManager
from utils.grading.sandbox import SandboxSettings
from utils.grading.trusted import is_autograded_test
from utils.grading.zygote import POOL, KernelZygote, ZygoteError, preload_modules


def _error(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class SandboxedExecute(Execute):
    """nbgrader's Execute with a sandboxed kernel, limits, and a clear record of a dead kernel."""

    sandbox = Bool(True, help="Run grading kernels in a bubblewrap sandbox (requires `bwrap`).").tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    cpu_time_limit = Integer(900, help="CPU seconds a grading kernel may use in all.").tag(config=True)
    memory_limit_mb = Integer(6144, help="Heap memory (RLIMIT_DATA) of a grading kernel, MiB.").tag(config=True)
    file_size_limit_mb = Integer(256, help="Largest file a grading kernel may write, MiB.").tag(config=True)
    cell_output_limit_kb = Integer(512, help="Output kept per cell, KiB; the rest is dropped.").tag(config=True)
    warm_kernels = Bool(False, help="Fork each kernel from a sandboxed process that has already imported the "
                        "notebook's libraries (utils/grading/zygote.py), instead of starting a new one; the "
                        "parallel grader turns this on.").tag(config=True)
    from_scratch = Dict(
        key_trait=Unicode(), value_trait=List(Unicode()),
        help="'<assignment>/<notebook>' -> modules the grading kernel cannot import there.").tag(config=True)
    timing_hook = Callable(
        None, allow_none=True,
        help="Called after each notebook as hook(timing), timing a dict: 'notebook' (its name), "
             "'kernel_start' (seconds until its first code cell ran), 'before_first_test' (until its first "
             "test cell ran), 'total' (seconds) and 'warm' (whether a zygote forked its kernel).").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.sandbox:
            self.kernel_manager_class = SandboxedKernelManager
            if shutil.which(self.bwrap) is None:
                raise RuntimeError(
                    "Grading needs bubblewrap (`bwrap`) to sandbox student kernels: install the Debian "
                    "package `bubblewrap` (sudo apt-get install bubblewrap), or set "
                    "c.SandboxedExecute.sandbox = False on a machine that grades trusted code only.")

    def preprocess(self, nb, resources=None, km=None):
        started = time.perf_counter()
        self._first_cell = self._first_test = None
        self._dead_message = ""
        self._output_bytes: dict[int, int] = {}
        self._nb_being_graded = nb
        self._kernel_manager = None
        if self.sandbox and self.warm_kernels:
            self._run_dir = POOL.run_dir()
        else:
            self._run_dir = tempfile.mkdtemp(prefix="course-kernel-")
        notebook = (resources or {}).get("nbgrader", {}).get("notebook", "")
        try:
            return super().preprocess(nb, resources, km)
        finally:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            if self.warm_kernels:
                self.log.info("Kernel for %s was %s.", notebook or "?",
                              "forked by a warm zygote" if self.kernel_was_warm else "started anew")
            if self.timing_hook is not None:
                end = time.perf_counter()
                self.timing_hook({"notebook": notebook,
                                  "kernel_start": (self._first_cell or end) - started,
                                  "before_first_test": (self._first_test or end) - started,
                                  "total": end - started, "warm": self.kernel_was_warm})

    @property
    def kernel_was_warm(self) -> bool:
        """Whether a zygote forked the kernel of the notebook being (or last) graded."""
        km = getattr(self, "_kernel_manager", None)
        return getattr(km, "zygote", None) is not None

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            info = self.resources.get("nbgrader", {})
            notebook_key = f"{info.get('assignment', '')}/{info.get('notebook', '')}"
            km.transport = "ipc"
            # A signal cannot reach the kernel in its own session and PID namespace; ipykernel
            # interrupts itself when asked over the control channel.
            km.kernel_spec.interrupt_mode = "message"
            km.ip = os.path.join(self._run_dir, "kernel")
            km.connection_file = os.path.join(self._run_dir, "kernel.json")
            km.sandbox = SandboxSettings(
                bwrap=shutil.which(self.bwrap), student_dir=self.resources["metadata"]["path"],
                run_dir=self._run_dir, blocked_modules=list(self.from_scratch.get(notebook_key, [])),
                notebook=f"{info.get('notebook', 'this notebook')}.ipynb",
                cpu_seconds=self.cpu_time_limit, data_bytes=self.memory_limit_mb * 2**20,
                file_bytes=self.file_size_limit_mb * 2**20)
            if self.warm_kernels:
                km.zygote = self._zygote(km.sandbox, notebook_key)
            self._kernel_manager = km
        return km

    def _zygote(self, sandbox: SandboxSettings, notebook_key: str) -> KernelZygote | None:
        """The warm zygote for this notebook, or None (then bwrap starts the kernel as usual)."""
        try:
            return POOL.get(bwrap=sandbox.bwrap, notebook=sandbox.notebook, blocked_modules=sandbox.blocked_modules,
                            preload=preload_modules(self._nb_being_graded, sandbox.blocked_modules),
                            hidden_root=str(Path(sandbox.student_dir).resolve().parents[1]))
        except (ZygoteError, OSError) as exc:
            self.log.warning("Warm kernel unavailable for %s (%s); starting a new kernel.", notebook_key, exc)
            return None

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, self.resources
        now = time.perf_counter()
        self._first_cell = self._first_cell or now
        if self._first_test is None and is_autograded_test(cell):
            self._first_test = now
        if self._dead_message:
            cell.outputs = [_error("NotRun", "this cell did not run: the kernel had stopped in an earlier cell "
                                   f"({self._dead_message})")]
            return cell, self.resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._dead_message = self._death_cause()
            cell.outputs = list(cell.get("outputs", [])) + [_error("KernelDied", self._dead_message)]
            return cell, self.resources
        except CellTimeoutError:
            self._dead_message = (f"a cell ran longer than the {self.timeout} s limit and did not stop when "
                                  "interrupted")
            cell.outputs = list(cell.get("outputs", [])) + [_error("CellTimeoutError", self._dead_message)]
            self._kill_kernel()
            return cell, self.resources

    def _kill_kernel(self) -> None:
        try:
            self.km.provisioner.process.kill()   # the sandbox's processes die with it
        except Exception:
            pass   # already gone

    def _death_cause(self) -> str:
        code = None
        try:
            process = self.km.provisioner.process
            code = process.poll() if process is not None else None
        except Exception:
            pass   # no process to ask: the cause stays unknown
        limits = (f"CPU-time limit {self.cpu_time_limit} s, memory limit {self.memory_limit_mb} MiB, "
                  f"file-size limit {self.file_size_limit_mb} MiB")
        if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return f"the kernel used more than its CPU-time limit of {self.cpu_time_limit} s"
        if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            return f"the kernel wrote a file larger than {self.file_size_limit_mb} MiB"
        if code in (-signal.SIGKILL, 128 + signal.SIGKILL):
            return f"the kernel was killed (out of memory?); limits: {limits}"
        if code is not None:
            return (f"the kernel exited with status {code} (os._exit, a crash, or a limit: {limits}); "
                    "the cells after it could not run")
        return f"the kernel stopped responding ({limits})"

    def output(self, outs, msg, display_id, cell_index):
        size = len(str(msg.get("content", "")))
        used = self._output_bytes.get(cell_index, 0)
        limit = self.cell_output_limit_kb * 1024
        self._output_bytes[cell_index] = used + size
        if used + size > limit:
            if used <= limit:
                outs.append(NotebookNode(output_type="stream", name="stdout",
                                         text=f"\n[output truncated: this cell printed more than "
                                              f"{self.cell_output_limit_kb} KiB]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)
