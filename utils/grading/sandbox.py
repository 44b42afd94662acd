"""What a grading kernel sees: the bubblewrap sandbox, its environment and its resource limits.

Inside the sandbox the student's kernel sees only the system folders, Python, the course
environment and this package, all read-only, and its own working folder, writable: a fresh copy
of the student's files (:mod:`utils.grading.kernel_folder`), never the autograded folder. The
course (source/ with solutions and hidden tests, the gradebook, other students' folders, the
grading secret), home folders and any other copy of the course are absent; there is no network;
it has its own PID namespace and /proc, so it sees no other process of the machine; and for
from-scratch notebooks the libraries they must not call (torch, torchvision, the course's own
NumPy references) cannot be imported. The kernel talks to nbgrader over Unix sockets in a private
run folder.

:func:`bwrap_command` starts one kernel in such a sandbox: bubblewrap runs
``in_sandbox/sandbox_launch.py``, which applies the per-process limits and then runs the kernel
(the budgets of the kernel as a whole are cgroups: :mod:`utils.grading.cgroups`). A warm zygote
(:mod:`utils.grading.zygote`) is started in the same sandbox (:func:`sandbox_args`). Both users
import this module; it imports nothing of the grader.
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

# The kernel's environment inside the sandbox. JPY_PARENT_PID=1: in the new PID namespace the kernel's
# parent is bwrap's init (PID 1), and nbgrader's PID means nothing there. ipykernel does not poll a
# parent with PID 1 (--die-with-parent already ends the kernel with nbgrader), and a kernel that has a
# parent does not print the "Ctrl-C will not work … To connect another client" banner meant for a
# kernel started by hand in a terminal.
KERNEL_ENV = {"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython",
              "PYTHONDONTWRITEBYTECODE": "1", "JPY_PARENT_PID": "1"}


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
    tmp_bytes: int              # size of its /tmp and of its /dev/shm (each a tmpfs)

    def limits(self) -> dict[str, int]:
        """The resource limits, as ``in_sandbox/`` applies them."""
        return {"cpu": self.cpu_seconds, "data": self.data_bytes, "fsize": self.file_bytes}


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
    """``env`` as the sandboxed kernel sees it.

    The folder that holds this ``utils`` comes first on the kernel's PYTHONPATH: the kernel imports
    the very check package the grader runs, wherever the environment was installed from (a course
    folder copied for a new term, a checkout apart from the course folder).
    """
    out = dict(env)
    out.update(KERNEL_ENV)
    out["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_DIR.parent)] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p and p != str(PACKAGE_DIR.parent)])
    return out


def module_origin(name: str) -> tuple[Path, bool] | None:
    """``(path, is_package)`` of the installed module ``name`` (a package's folder), or None when absent."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]), True
    if spec.origin and os.path.isfile(spec.origin):
        return Path(spec.origin), False
    return None


def _blocked_module_args(blocked_modules: list[str], notebook: str, stub_dir: str) -> list[str]:
    """bubblewrap options that make each module unimportable: its file (or package folder) becomes a stub
    whose import raises an ImportError naming ``notebook``."""
    args = []
    for name in blocked_modules:
        found = module_origin(name)
        if found is None:
            continue   # not installed: it cannot be imported anyway
        path, is_package = found
        stub = Path(stub_dir) / f"blocked_{name}.py"
        stub.write_text(
            f"raise ImportError({name!r} + ' is not available while grading {notebook}: this notebook is graded "
            f"from scratch, so it must not use ' + {name!r} + ' (NumPy only).')\n")
        if is_package:
            args += ["--tmpfs", str(path), "--ro-bind", str(stub), str(path / "__init__.py")]
        else:
            args += ["--ro-bind", str(stub), str(path)]
            # its compiled copies too: importlib loads a .pyc without its source when asked to
            for compiled in sorted((path.parent / "__pycache__").glob(f"{path.stem}.*.pyc")):
                args += ["--ro-bind", "/dev/null", str(compiled)]
    return args


def sandbox_args(bwrap: str, writable: list[str], blocked_modules: list[str], notebook: str,
                 stub_dir: str, tmp_bytes: int) -> list[str]:
    """bubblewrap options shared by a single kernel's sandbox and a kernel zygote's.

    A blocked module (a package, or one module file such as the course's own NumPy reference of a
    from-scratch notebook) is replaced by a stub, written to ``stub_dir``, whose import raises an
    ImportError that names ``notebook``. ``/tmp`` and ``/dev/shm`` are empty tmpfs of ``tmp_bytes``
    each (their pages also count towards the kernel's memory budget where cgroups are used).
    """
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all",
            "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/dev/shm", "--proc", "/proc",
            "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    # After the empty /tmp: the environment or the course may themselves live under /tmp.
    for path in visible_dirs():
        args += ["--ro-bind", path, path]
    args += _system_links()
    for path in writable:
        path = str(Path(path).resolve())
        args += ["--bind", path, path]
    args += _blocked_module_args(blocked_modules, notebook, stub_dir)
    for key, value in KERNEL_ENV.items():
        args += ["--setenv", key, value]
    args += ["--setenv", "PYTHONPATH", kernel_env(dict(os.environ))["PYTHONPATH"]]
    return args


def bwrap_command(kernel_cmd: list[str], settings: SandboxSettings) -> list[str]:
    """``kernel_cmd`` run in its own sandbox, under the limits of ``settings``."""
    student_dir = str(Path(settings.student_dir).resolve())
    args = sandbox_args(settings.bwrap, [student_dir, settings.run_dir], settings.blocked_modules,
                        settings.notebook, settings.run_dir, settings.tmp_bytes)
    args += ["--cap-drop", "ALL", "--chdir", student_dir, "--"]
    limits = settings.limits()
    launcher = [sys.executable, "-I", str(IN_SANDBOX_DIR / "sandbox_launch.py"), "--cpu", str(limits["cpu"]),
                "--data", str(limits["data"]), "--fsize", str(limits["fsize"]), "--"]
    return args + launcher + kernel_cmd
