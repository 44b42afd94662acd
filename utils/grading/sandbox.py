"""The grading kernel runs in a bubblewrap sandbox, under CPU, memory and output limits.

Inside the sandbox the student's kernel sees only the system folders, Python, the course
environment and this package, all read-only, and its own submission folder, writable. The course
(source/ with solutions and hidden tests, the gradebook, other students' folders, the grading
secret), home folders and any other copy of the course are absent; there is no network; and for from-scratch notebooks the libraries they must not call (torch,
torchvision) cannot be imported. The kernel talks to nbgrader over Unix sockets in a
private run directory.

``utils/grading/in_sandbox/sandbox_launch.py`` applies the resource limits inside the sandbox and then runs the kernel.
With ``warm_kernels`` the kernel is instead forked, with the same view and limits, by a zygote
that already imported the notebook's libraries (``utils/grading/zygote.py``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode

PACKAGE_DIR = Path(__file__).resolve().parents[1]          # the whole `utils` package, read-only in the sandbox
IN_SANDBOX_DIR = Path(__file__).resolve().parent / "in_sandbox"   # run there by path, standard library only


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside bubblewrap; the settings are given by :class:`SandboxedExecute`.

    With a ``zygote`` (warm kernels), the kernel is forked by it instead of started by bwrap.
    """

    sandbox_settings: dict = {}
    zygote = None          # set to None again when the kernel had to be started by bwrap

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        s = self.sandbox_settings
        if not s:
            return cmd
        if self.zygote is not None and ipykernel_arguments(cmd) is not None:
            return cmd
        self.zygote = None
        return bwrap_command(cmd, **s)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.zygote is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        from utils.grading.zygote import ZygoteError
        s = self.sandbox_settings
        try:
            process = self.zygote.spawn(
                ipykernel_arguments(kernel_cmd), env=kw.get("env") or dict(os.environ), cwd=s["student_dir"],
                keep=[s["student_dir"], s["run_dir"]],
                limits={"cpu": s["cpu_seconds"], "data": s["data_bytes"], "fsize": s["file_bytes"]})
        except ZygoteError as exc:
            self.log.warning("Warm kernel failed to start (%s); starting a new kernel.", exc)
            self.zygote = None
            return await super()._async_launch_kernel(bwrap_command(kernel_cmd, **s), **kw)
        provisioner = self.provisioner
        provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, None
        provisioner.cwd = s["student_dir"]
        self._reconcile_connection_info(provisioner.connection_info)


def ipykernel_arguments(cmd: list[str]) -> list[str] | None:
    """The arguments of ``<python> -m ipykernel_launcher ARGS`` (this interpreter), else None."""
    if len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"] and \
            os.path.realpath(shutil.which(cmd[0]) or cmd[0]) == os.path.realpath(sys.executable):
        return cmd[3:]
    return None


def module_dirs(names: list[str]) -> list[Path]:
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            dirs.append(Path(list(spec.submodule_search_locations)[0]))
    return dirs


# System folders the kernel sees, read-only. Everything else of the machine (the course, other
# copies of it, home folders, other students) is absent inside the sandbox.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")


def visible_dirs() -> list[str]:
    """Read-only folders a grading kernel needs: the system, Python, the environment and this package."""
    wanted = list(SYSTEM_DIRS) + [sys.base_prefix, sys.prefix, str(PACKAGE_DIR)]
    found = []
    for path in wanted:
        if os.path.islink(path) and path in SYSTEM_DIRS:
            continue   # /bin -> usr/bin on merged-/usr systems: recreated as a link
        path = str(Path(path).resolve())
        if os.path.isdir(path) and path not in found:
            found.append(path)
    return found


def _system_links() -> list[str]:
    args = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
    return args


# The kernel's environment inside the sandbox; JPY_PARENT_PID is removed because in the new PID
# namespace the kernel's parent is bwrap's init, which ipykernel would take for "parent exited"
# (--die-with-parent already ends the kernel with nbgrader).
KERNEL_ENV = {"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython",
              "PYTHONDONTWRITEBYTECODE": "1"}
KERNEL_ENV_REMOVED = ("JPY_PARENT_PID",)


def kernel_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` as the sandboxed kernel sees it."""
    out = {k: v for k, v in env.items() if k not in KERNEL_ENV_REMOVED}
    out.update(KERNEL_ENV)
    return out


def sandbox_args(bwrap: str, writable: list[str], blocked_modules: list[str], notebook: str,
                 stub_dir: str) -> list[str]:
    """bubblewrap options shared by a single kernel's sandbox and a kernel zygote's."""
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all",
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # After the empty /tmp: the environment or the course may themselves live under /tmp.
    for path in visible_dirs():
        args += ["--ro-bind", path, path]
    args += _system_links()
    for path in writable:
        path = str(Path(path).resolve())
        args += ["--bind", path, path]
    for name, folder in zip(blocked_modules, module_dirs(blocked_modules)):
        stub = Path(stub_dir) / f"blocked_{name}.py"
        stub.write_text(
            f"raise ImportError({name!r} + ' is not available while grading {notebook}: this notebook is "
            f"graded from scratch, so it must not use ' + {name!r} + ' (NumPy only).')\n")
        args += ["--tmpfs", str(folder), "--ro-bind", str(stub), str(folder / "__init__.py")]
    for key in KERNEL_ENV_REMOVED:
        args += ["--unsetenv", key]
    for key, value in KERNEL_ENV.items():
        args += ["--setenv", key, value]
    return args


def bwrap_command(kernel_cmd: list[str], *, bwrap: str, student_dir: str, run_dir: str,
                  blocked_modules: list[str], notebook: str, cpu_seconds: int, data_bytes: int,
                  file_bytes: int) -> list[str]:
    student_dir = str(Path(student_dir).resolve())
    args = sandbox_args(bwrap, [student_dir, run_dir], blocked_modules, notebook, run_dir)
    args += ["--cap-drop", "ALL", "--chdir", student_dir, "--"]
    launcher = [sys.executable, "-I", str(IN_SANDBOX_DIR / "sandbox_launch.py"), "--cpu", str(cpu_seconds),
                "--data", str(data_bytes), "--fsize", str(file_bytes), "--"]
    return args + launcher + kernel_cmd


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
        self._dead_message = ""
        self._output_bytes: dict[int, int] = {}
        self._nb_being_graded = nb
        self._kernel_manager = None
        if self.sandbox and self.warm_kernels:
            from utils.grading.zygote import POOL
            self._run_dir = POOL.run_dir()
        else:
            self._run_dir = tempfile.mkdtemp(prefix="course-kernel-")
        try:
            return super().preprocess(nb, resources, km)
        finally:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            if self.warm_kernels:
                self.log.info("Kernel for %s was %s.", self.resources.get("nbgrader", {}).get("notebook", "?"),
                              "forked by a warm zygote" if self.kernel_was_warm else "started anew")

    @property
    def kernel_was_warm(self) -> bool:
        """Whether a zygote forked the kernel of the notebook being (or last) graded."""
        km = getattr(self, "_kernel_manager", None)
        return getattr(km, "zygote", None) is not None

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            student_dir = self.resources["metadata"]["path"]
            info = self.resources.get("nbgrader", {})
            notebook_key = f"{info.get('assignment', '')}/{info.get('notebook', '')}"
            km.transport = "ipc"
            # A signal cannot reach the kernel in its own session and PID namespace; ipykernel
            # interrupts itself when asked over the control channel.
            km.kernel_spec.interrupt_mode = "message"
            km.ip = os.path.join(self._run_dir, "kernel")
            km.connection_file = os.path.join(self._run_dir, "kernel.json")
            km.sandbox_settings = dict(
                bwrap=shutil.which(self.bwrap),
                student_dir=student_dir, run_dir=self._run_dir,
                blocked_modules=list(self.from_scratch.get(notebook_key, [])),
                notebook=f"{info.get('notebook', 'this notebook')}.ipynb",
                cpu_seconds=self.cpu_time_limit, data_bytes=self.memory_limit_mb * 2**20,
                file_bytes=self.file_size_limit_mb * 2**20)
            if self.warm_kernels:
                km.zygote = self._zygote(km.sandbox_settings, notebook_key)
            self._kernel_manager = km
        return km

    def _zygote(self, settings: dict, notebook_key: str):
        """The warm zygote for this notebook, or None (then bwrap starts the kernel as usual)."""
        from utils.grading.zygote import POOL, ZygoteError, preload_modules
        try:
            return POOL.get(bwrap=settings["bwrap"], notebook=settings["notebook"],
                            blocked_modules=settings["blocked_modules"],
                            preload=preload_modules(self._nb_being_graded, settings["blocked_modules"]),
                            hidden_root=str(Path(settings["student_dir"]).resolve().parents[1]))
        except (ZygoteError, OSError) as exc:
            self.log.warning("Warm kernel unavailable for %s (%s); starting a new kernel.", notebook_key, exc)
            return None

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, self.resources
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
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _death_cause(self) -> str:
        code = None
        try:
            process = self.km.provisioner.process
            code = process.poll() if process is not None else None
        except Exception:  # noqa: BLE001
            pass
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


def _error(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])
