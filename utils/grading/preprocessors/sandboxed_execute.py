"""SandboxedExecute: nbgrader's Execute with the kernel in a bubblewrap sandbox, under budgets.

Each notebook's kernel works in a fresh folder of its own (:mod:`utils.grading.kernel_folder`), not
in ``autograded/``; each test cell's grading inputs are put there just before that cell runs. The
kernel as a whole (all its processes, its tmpfs files) has a memory and a process budget
(:mod:`utils.grading.cgroups`), its folder a size and file-count budget, and the notebook a
wall-clock budget; every process it started is killed before the next notebook's kernel starts.
A kernel that dies, a cell that never stops, or a budget used up is reported in the outputs of
that student's cells (and the cells after it are marked as not run) instead of failing the batch.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Callable, Dict, Integer, List, Unicode

from utils.grading import cgroups
from utils.grading.kernel_folder import FOLDERS, KernelFolder, KernelFolderError
from utils.grading.kernel_manager import SandboxedKernelManager
from utils.grading.sandbox import SandboxSettings
from utils.grading.trusted import KERNEL_FOLDER_KEY, TRUSTED_KEY, is_autograded_test
from utils.grading.zygote import POOL, KernelBudget, KernelZygote, ZygoteError, preload_modules

MIB = 2**20


def _error(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class SandboxedExecute(Execute):
    """nbgrader's Execute with a sandboxed kernel, budgets, and a clear record of a dead kernel."""

    sandbox = Bool(True, help="Run grading kernels in a bubblewrap sandbox (requires `bwrap`).").tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    cpu_time_limit = Integer(900, help="CPU seconds a grading kernel may use in all.").tag(config=True)
    memory_limit_mb = Integer(
        6144, help="Memory of a grading kernel, MiB: all its processes and the files they write to /tmp, /dev/shm "
                   "and its folder, together (a cgroup, where the machine allows one); each process's heap "
                   "(RLIMIT_DATA) is limited to this too.").tag(config=True)
    max_processes = Integer(
        256, help="Processes and threads a grading kernel may have at once, all together (a cgroup, where the "
                  "machine allows one).").tag(config=True)
    file_size_limit_mb = Integer(256, help="Largest file a grading kernel may write, MiB.").tag(config=True)
    disk_limit_mb = Integer(256, help="What a grading kernel may write into its working folder, MiB "
                                      "(files it was given included).").tag(config=True)
    file_count_limit = Integer(2000, help="Files and folders a grading kernel may have in its working folder "
                                          "(files it was given included).").tag(config=True)
    tmp_size_mb = Integer(512, help="Size of a grading kernel's /tmp, and of its /dev/shm, MiB.").tag(config=True)
    notebook_time_limit = Integer(
        1800, help="Wall-clock seconds one notebook may take in all, kernel start included; past it the cell "
                   "running is stopped and the cells after it are not run.").tag(config=True)
    cell_output_limit_kb = Integer(512, help="Output kept per cell, KiB; the rest is dropped.").tag(config=True)
    warm_kernels = Bool(False, help="Fork each kernel from a sandboxed process that has already imported the "
                        "notebook's libraries (utils/grading/zygote.py), instead of starting a new one; the "
                        "parallel grader turns this on.").tag(config=True)
    from_scratch = Dict(
        key_trait=Unicode(), value_trait=List(Unicode()),
        help="'<assignment>/<notebook>' -> modules the grading kernel cannot import there (packages such as "
             "torch, or single modules such as the course's own NumPy reference).").tag(config=True)
    timing_hook = Callable(
        None, allow_none=True,
        help="Called after each notebook as hook(timing), timing a dict: 'notebook' (its name), "
             "'kernel_start' (seconds until its first code cell ran), 'before_first_test' (until its first "
             "test cell ran), 'total' (seconds) and 'warm' (whether a zygote forked its kernel).").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A cell's stdout arrives in chunks split by timing: one output per stream makes the graded
        # notebook, and its feedback, the same on every run (nbclient's switch is not a config trait).
        self.coalesce_streams = True
        if self.sandbox:
            self.kernel_manager_class = SandboxedKernelManager
            if shutil.which(self.bwrap) is None:
                raise RuntimeError(
                    "Grading needs bubblewrap (`bwrap`) to sandbox student kernels: install the Debian "
                    "package `bubblewrap` (sudo apt-get install bubblewrap), or set "
                    "c.SandboxedExecute.sandbox = False on a machine that grades trusted code only.")

    # ------------------------------------------------------------------ one notebook

    def preprocess(self, nb, resources=None, km=None):
        started = time.perf_counter()
        self._deadline = time.monotonic() + self.notebook_time_limit
        self._first_cell = self._first_test = None
        self._dead_message = ""
        self._pending_interrupt = False
        self._output_bytes: dict[int, int] = {}
        self._nb_being_graded = nb
        self._kernel_manager = None
        self._cgroup: cgroups.KernelCgroup | None = None
        self._counters_before: dict[str, int] = {}
        self._folder: KernelFolder | None = None
        resources = resources if resources is not None else {}
        notebook = resources.get("nbgrader", {}).get("notebook", "")
        self._folder = FOLDERS.new(self.disk_limit_mb * MIB, self.file_count_limit)
        resources[KERNEL_FOLDER_KEY] = self._folder
        try:
            self._folder.copy_student_files(Path(resources["metadata"]["path"]))
        except KernelFolderError as exc:
            self._dead_message = exc.strerror
        try:
            nb, resources = super().preprocess(nb, resources, km)
            self._note_budgets_used(nb)
            return nb, resources
        finally:
            self._end_kernel()
            if self.warm_kernels:
                self.log.info("Kernel for %s was %s.", notebook or "?",
                              "forked by a warm zygote" if self.kernel_was_warm else "started anew")
            if self.timing_hook is not None:
                end = time.perf_counter()
                self.timing_hook({"notebook": notebook,
                                  "kernel_start": (self._first_cell or end) - started,
                                  "before_first_test": (self._first_test or end) - started,
                                  "total": end - started, "warm": self.kernel_was_warm})

    def _note_budgets_used(self, nb) -> None:
        """Say so, below the last cell that ran, when the kernel ran into its process or folder budget."""
        notes = []
        group = self._kernel_group()
        if group is not None and group.counters().get("pids_max", 0) > self._counters_before.get("pids_max", 0):
            notes.append(f"the kernel tried to run more than {self.max_processes} processes and threads at once; "
                         "the extra ones were refused")
        if self.sandbox:
            usage = self._folder.usage()
            if usage.files >= self.file_count_limit or usage.bytes >= self.disk_limit_mb * MIB * 0.98:
                notes.append(f"the notebook's folder reached its budget of {self.disk_limit_mb} MiB and "
                             f"{self.file_count_limit} files (it held {usage.bytes // MIB} MiB in "
                             f"{usage.files}{'' if usage.complete else '+'} files); writes past it failed")
        # below the last code cell that is not a test cell: the verdicts replace a test cell's outputs
        ran = [cell for cell in nb.cells if cell.cell_type == "code" and cell.get("outputs") is not None]
        untested = [cell for cell in ran if not is_autograded_test(cell)] or ran
        if notes and untested:
            untested[-1].outputs = list(untested[-1].outputs) + [_error("BudgetExceeded", note) for note in notes]

    def _end_kernel(self) -> None:
        """Every process the kernel started is gone before anything else happens (outputs read, next student)."""
        zygote = getattr(self._kernel_manager, "zygote", None)
        if zygote is not None:
            zygote.kill_kernels()
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    @property
    def kernel_was_warm(self) -> bool:
        """Whether a zygote forked the kernel of the notebook being (or last) graded."""
        km = getattr(self, "_kernel_manager", None)
        return getattr(km, "zygote", None) is not None

    def _budget(self) -> KernelBudget:
        return KernelBudget(memory_bytes=self.memory_limit_mb * MIB, max_pids=self.max_processes,
                            tmp_bytes=self.tmp_size_mb * MIB)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            info = self.resources.get("nbgrader", {})
            notebook_key = f"{info.get('assignment', '')}/{info.get('notebook', '')}"
            km.transport = "ipc"
            # A signal cannot reach the kernel in its own session and PID namespace; ipykernel
            # interrupts itself when asked over the control channel.
            km.kernel_spec.interrupt_mode = "message"
            run_dir = str(self._folder.run)
            km.ip = os.path.join(run_dir, "kernel")
            km.connection_file = os.path.join(run_dir, "kernel.json")
            km.sandbox = SandboxSettings(
                bwrap=shutil.which(self.bwrap), student_dir=str(self._folder.work), run_dir=run_dir,
                blocked_modules=list(self.from_scratch.get(notebook_key, [])),
                notebook=f"{info.get('notebook', 'this notebook')}.ipynb",
                cpu_seconds=self.cpu_time_limit, data_bytes=self.memory_limit_mb * MIB,
                file_bytes=self.file_size_limit_mb * MIB, tmp_bytes=self.tmp_size_mb * MIB)
            if self.warm_kernels:
                km.zygote = self._zygote(km.sandbox, notebook_key)
            if km.zygote is None:
                self._cgroup = cgroups.create(self.memory_limit_mb * MIB, self.max_processes)
                km.cgroup = self._cgroup
            self._kernel_manager = km
            group = self._kernel_group()
            self._counters_before = group.counters() if group is not None else {}
        return km

    async def async_start_new_kernel(self, **kwargs):
        kwargs.setdefault("cwd", str(self._folder.work))   # not nbgrader's autograded folder
        return await super().async_start_new_kernel(**kwargs)

    def _kernel_group(self) -> cgroups.KernelCgroup | None:
        zygote = getattr(self._kernel_manager, "zygote", None)
        return zygote.cgroup if zygote is not None else self._cgroup

    def _zygote(self, sandbox: SandboxSettings, notebook_key: str) -> KernelZygote | None:
        """The warm zygote for this notebook, or None (then bwrap starts the kernel as usual)."""
        try:
            return POOL.get(bwrap=sandbox.bwrap, notebook=sandbox.notebook, blocked_modules=sandbox.blocked_modules,
                            preload=preload_modules(self._nb_being_graded, sandbox.blocked_modules),
                            kernels_base=str(self._folder.root.parent), budget=self._budget())
        except (ZygoteError, OSError) as exc:
            self.log.warning("Warm kernel unavailable for %s (%s); starting a new kernel.", notebook_key, exc)
            return None

    # ------------------------------------------------------------------ one cell

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, self.resources
        now = time.perf_counter()
        self._first_cell = self._first_cell or now
        if self._first_test is None and is_autograded_test(cell):
            self._first_test = now
        if not self._dead_message and self._time_left() <= 0:
            self._dead_message = self._budget_message()
            self._kill_kernel()
        if self._dead_message:
            cell.outputs = [_error("NotRun", "this cell did not run: the kernel had stopped in an earlier cell "
                                   f"({self._dead_message})")]
            return cell, self.resources
        problem = self._put_inputs(cell)
        if problem:
            cell.outputs = [_error("GradingInputs", problem)]
            return cell, self.resources
        was_pending = self._pending_interrupt
        try:
            result = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._dead_message = self._death_cause()
            cell.outputs = list(cell.get("outputs", [])) + [_error("KernelDied", self._dead_message)]
            return cell, self.resources
        except CellTimeoutError:
            self._dead_message = (self._budget_message() if self._time_left() <= 1 else
                                  f"a cell ran longer than the {self.timeout} s limit and did not stop when "
                                  "interrupted")
            cell.outputs = list(cell.get("outputs", [])) + [_error("CellTimeoutError", self._dead_message)]
            self._kill_kernel()
            return cell, self.resources
        if was_pending:
            self._pending_interrupt = False   # the kernel answered again after an interrupt
        return result

    def _put_inputs(self, cell) -> str:
        """Write a test cell's grading inputs just before it runs: "" when done (or none), else why not."""
        trusted = self.resources.get(TRUSTED_KEY)
        cell_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not trusted or cell_id not in trusted["cells"] or not is_autograded_test(cell):
            return ""
        try:
            self._folder.write_inputs(cell_id, trusted["cells"][cell_id]["inputs"])
        except KernelFolderError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return (f"this test could not run: the notebook's folder is full (its budget is {self.disk_limit_mb} "
                        f"MiB and {self.file_count_limit} files, the files the notebook wrote included), so the "
                        "grading inputs could not be put there")
            return exc.strerror
        return ""

    def _time_left(self) -> float:
        return self._deadline - time.monotonic()

    def _budget_message(self) -> str:
        return (f"the notebook used up its time budget of {self.notebook_time_limit} s (all cells together); "
                "the cells after it were not run")

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        left = max(1, int(self._time_left()))
        return left if timeout is None else min(timeout, left)

    async def _async_handle_timeout(self, timeout, cell=None):
        # A kernel that ignores one interrupt, or a notebook out of time, is stopped: waiting for it
        # again would let sleeping cells hold the grader far past every limit.
        if self._pending_interrupt or self._time_left() <= 1:
            raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)
        self._pending_interrupt = True
        return await super()._async_handle_timeout(timeout, cell)

    def _kill_kernel(self) -> None:
        try:
            self.km.provisioner.process.kill()   # the sandbox's processes die with it
        except Exception:
            pass   # already gone
        self._end_kernel()

    def _death_cause(self) -> str:
        code = None
        try:
            process = self.km.provisioner.process
            code = process.poll() if process is not None else None
        except Exception:
            pass   # no process to ask: the cause stays unknown
        group = self._kernel_group()
        hits = group.counters() if group is not None else {}
        if hits.get("oom_kill", 0) > self._counters_before.get("oom_kill", 0):
            return (f"the kernel used more than its memory budget of {self.memory_limit_mb} MiB (all its processes "
                    "and the files they wrote to /tmp, /dev/shm and the notebook's folder, together)")
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
