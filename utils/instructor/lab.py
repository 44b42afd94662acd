"""Start JupyterLab as a student or as an instructor sees it.

    python -m utils.instructor.lab student [FOLDER]       # default: the current folder
    python -m utils.instructor.lab instructor [COURSE]    # default: the repository (course root)
    python -m utils.instructor.lab configure              # once per environment (`make setup` does it)

Options: ``--port N`` (default: a free port), ``--home DIR`` (keep JupyterLab's settings and
workspaces there; default: a temporary folder removed on exit), and anything after ``--`` is
passed to ``jupyter lab``.

Each role is a Jupyter configuration folder in ``utils/instructor/jupyter/<role>/``, put on
``JUPYTER_CONFIG_PATH``:

* ``student``: the nbgrader lab plug-ins an instructor uses (Create Assignment, Formgrader,
  Course List) are disabled in ``labconfig/page_config.json``, and so are the formgrader and
  course-list server extensions; Validate and the Assignment List stay. Its
  ``nbgrader_config.py`` gives Validate the course's cell timeout.
* ``instructor``: every nbgrader plug-in; start it in the course root (the folder with
  ``nbgrader_config.py``) so that the formgrader reads the course's gradebook.

``configure`` writes the student's configuration into the environment itself
(``<sys.prefix>/etc/jupyter``), so that a plain ``jupyter lab`` in it is the student's JupyterLab
too; the instructor role overrides it plug-in by plug-in.

HOME, the Jupyter config, data and runtime folders, IPython's and matplotlib's folders all point
into a private folder, so nothing of the machine's own Jupyter set-up leaks in; the server
listens on 127.0.0.1 only, with a random token.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .course import REPO_ROOT
from .loopback import free_port

CONFIG_ROOT = Path(__file__).resolve().parent / "jupyter"
ROLES = ("student", "instructor")

# JupyterLab settings shared by both roles: every cell stays in the page (no virtual scrolling),
# and no pop-up asks about news or updates.
_LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        '{"fetchNews": "false", "checkForUpdates": false}',
}


# Not a role of the command line: a plain `jupyter lab`, with the environment's own configuration only
# (what `configure` wrote), for the tests of that path.
PLAIN = "plain"


def role_config_dir(role: str) -> Path | None:
    if role not in (*ROLES, PLAIN):
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    return None if role == PLAIN else CONFIG_ROOT / role


def lab_environment(role: str, home: Path) -> dict[str, str]:
    """Environment for a JupyterLab of ``role`` whose per-user state all lives in ``home``."""
    home = Path(home)
    dirs = {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": home / ".jupyter",
        "JUPYTER_DATA_DIR": home / ".local" / "share" / "jupyter",
        "JUPYTER_RUNTIME_DIR": home / ".local" / "share" / "jupyter" / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / ".jupyter" / "lab" / "user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / ".jupyter" / "lab" / "workspaces",
        "IPYTHONDIR": home / ".ipython",
        "MPLCONFIGDIR": home / ".config" / "matplotlib",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"]
    for name, text in _LAB_SETTINGS.items():
        target = settings / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "IPYTHON", "PYTHONSTARTUP", "PYTHONUSERBASE"))}
    env.update({k: str(v) for k, v in dirs.items()})
    config_dir = role_config_dir(role)
    if config_dir is not None:
        env["JUPYTER_CONFIG_PATH"] = str(config_dir)
    env["JUPYTER_PATH"] = ""
    env["PYTHONNOUSERSITE"] = "1"
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def lab_command(root: Path, port: int, extra: list[str] = ()) -> list[str]:
    """``jupyter lab`` on 127.0.0.1:``port`` in ``root``; the token comes from $JUPYTER_TOKEN."""
    return [sys.executable, "-m", "jupyter", "lab", "--no-browser",
            f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []), *extra]


class Lab:
    """A running JupyterLab server: ``with Lab("student", folder) as lab: lab.url("lab")``."""

    def __init__(self, role: str, root: Path, home: Path | None = None, port: int | None = None,
                 extra: list[str] = (), log: Path | None = None, expose_app: bool = False):
        role_config_dir(role)
        self.role, self.root = role, Path(root).resolve()
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix=f"lab-{role}-"))
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.extra = list(extra) + (["--LabApp.expose_app_in_browser=True"] if expose_app else [])
        self.log_path = Path(log) if log else None   # None: the server logs to this terminal
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path.lstrip('/')}{sep}token={self.token}"

    def start(self, timeout: float = 90) -> Lab:
        env = lab_environment(self.role, self.home)
        env["JUPYTER_TOKEN"] = self.token      # not on the command line, where `ps` shows it
        self._log = open(self.log_path, "w") if self.log_path else None
        self.proc = subprocess.Popen(lab_command(self.root, self.port, self.extra),
                                     cwd=self.root, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT if self._log else None,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab ({self.role}) exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"JupyterLab ({self.role}) did not answer in {timeout:.0f} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def get(self, path: str) -> int:
        """HTTP status of ``GET path`` with the token."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # the server and the kernels it started
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def configure_environment(prefix: Path | str = sys.prefix) -> list[Path]:
    """Make the student's configuration the environment's own; the files written.

    The server extensions go in a file of their own in ``jupyter_server_config.d`` (it sorts after
    nbgrader's, which enables every extension); ``labconfig/page_config.json`` is merged, keeping
    what other packages disabled.
    """
    student, etc = role_config_dir("student"), Path(prefix) / "etc" / "jupyter"
    written = []
    for relative in ("jupyter_server_config.d/nbgrader_student.json", "nbgrader_config.py"):
        target = etc / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(student / relative, target)
        written.append(target)
    page_config = etc / "labconfig" / "page_config.json"
    merged = json.loads(page_config.read_text()) if page_config.is_file() else {}
    ours = json.loads((student / "labconfig" / "page_config.json").read_text())
    merged.setdefault("disabledExtensions", {}).update(ours["disabledExtensions"])
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(json.dumps(merged, indent=2) + "\n")
    written.append(page_config)
    return written


def main(argv: list[str]) -> int:
    if argv[:1] == ["configure"]:
        for path in configure_environment():
            print(f"wrote {path}")
        return 0
    extra = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.lab", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("folder", nargs="?", type=Path,
                        help="where JupyterLab starts (student: default the current folder; "
                             "instructor: default the repository, the course root)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--home", type=Path, help="keep JupyterLab's per-user state here")
    args = parser.parse_args(argv)
    folder = args.folder or (Path.cwd() if args.role == "student" else REPO_ROOT)
    if args.role == "instructor" and not (folder / "nbgrader_config.py").exists():
        print(f"warning: {folder} has no nbgrader_config.py; the formgrader needs the course root",
              file=sys.stderr)
    lab = Lab(args.role, folder, home=args.home, port=args.port, extra=extra)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # stop the server on `kill` as on Ctrl+C
    try:
        lab.start()
        print(f"\nJupyterLab ({args.role}) in {lab.root}\n  {lab.url('lab')}\nCtrl+C stops it.", flush=True)
        while lab.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
