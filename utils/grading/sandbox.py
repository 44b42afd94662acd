"""What a grading kernel sees: the bubblewrap sandbox, its environment and its resource limits.

Inside the sandbox the student's kernel sees only the system folders, Python, the course
environment and this package, all read-only, and its own submission folder, writable. The course
(source/ with solutions and hidden tests, the gradebook, other students' folders, the grading
secret), home folders and any other copy of the course are absent; there is no network; and for
from-scratch notebooks the libraries they must not call (torch, torchvision) cannot be imported.
The kernel talks to nbgrader over Unix sockets in a private run folder.

:func:`bwrap_command` starts one kernel in such a sandbox: bubblewrap runs
``in_sandbox/sandbox_launch.py``, which applies the limits and then runs the kernel. A warm
zygote (:mod:`utils.grading.zygote`) is started in the same sandbox (:func:`sandbox_args`).
Both users import this module; it imports nothing of the grader.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]                 # the whole `utils` package, read-only in the sandbox
IN_SANDBOX_DIR = Path(__file__).resolve().parent / "in_sandbox"   # run there by path, standard library only

# System folders the kernel sees, read-only. Everything else of the machine (the course, other
# copies of it, home folders, other students) is absent inside the sandbox.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")

# The kernel's environment inside the sandbox; JPY_PARENT_PID is removed because in the new PID
# namespace the kernel's parent is bwrap's init, which ipykernel would take for "parent exited"
# (--die-with-parent already ends the kernel with nbgrader).
KERNEL_ENV = {"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython",
              "PYTHONDONTWRITEBYTECODE": "1"}
KERNEL_ENV_REMOVED = ("JPY_PARENT_PID",)


@dataclass(frozen=True)
class SandboxSettings:
    """Where one notebook's kernel runs and what it may use."""

    bwrap: str                  # the bubblewrap executable
    student_dir: str            # the student's folder: the kernel's working folder, writable
    run_dir: str                # private folder of the kernel's connection file and sockets, writable
    blocked_modules: list[str]  # libraries the kernel cannot import (from-scratch notebooks)
    notebook: str               # "<name>.ipynb", named in the message of a blocked import
    cpu_seconds: int            # CPU time of the whole kernel (RLIMIT_CPU)
    data_bytes: int             # heap (RLIMIT_DATA)
    file_bytes: int             # largest file it may write (RLIMIT_FSIZE)

    def limits(self) -> dict[str, int]:
        """The resource limits, as ``in_sandbox/`` applies them."""
        return {"cpu": self.cpu_seconds, "data": self.data_bytes, "fsize": self.file_bytes}


def package_dir(name: str) -> Path | None:
    """The folder of the installed package ``name`` (None when it is not installed)."""
    spec = importlib.util.find_spec(name)
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return None


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


def kernel_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` as the sandboxed kernel sees it."""
    out = {k: v for k, v in env.items() if k not in KERNEL_ENV_REMOVED}
    out.update(KERNEL_ENV)
    return out


def sandbox_args(bwrap: str, writable: list[str], blocked_modules: list[str], notebook: str,
                 stub_dir: str) -> list[str]:
    """bubblewrap options shared by a single kernel's sandbox and a kernel zygote's.

    A blocked module's package folder is replaced by a stub, written to ``stub_dir``, whose
    import raises an ImportError that names ``notebook``.
    """
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all",
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # After the empty /tmp: the environment or the course may themselves live under /tmp.
    for path in visible_dirs():
        args += ["--ro-bind", path, path]
    args += _system_links()
    for path in writable:
        path = str(Path(path).resolve())
        args += ["--bind", path, path]
    for name in blocked_modules:
        folder = package_dir(name)
        if folder is None:
            continue   # not installed: it cannot be imported anyway
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


def bwrap_command(kernel_cmd: list[str], settings: SandboxSettings) -> list[str]:
    """``kernel_cmd`` run in its own sandbox, under the limits of ``settings``."""
    student_dir = str(Path(settings.student_dir).resolve())
    args = sandbox_args(settings.bwrap, [student_dir, settings.run_dir], settings.blocked_modules,
                        settings.notebook, settings.run_dir)
    args += ["--cap-drop", "ALL", "--chdir", student_dir, "--"]
    limits = settings.limits()
    launcher = [sys.executable, "-I", str(IN_SANDBOX_DIR / "sandbox_launch.py"), "--cpu", str(limits["cpu"]),
                "--data", str(limits["data"]), "--fsize", str(limits["fsize"]), "--"]
    return args + launcher + kernel_cmd
