"""One deployment of the course on a JupyterHub: its accounts, folders and ports, saved as JSON.

:func:`set_up` creates everything a hub for the course needs on this machine and :func:`tear_down`
removes it again (accounts with their homes, the course directory, the exchange, the permissions it
changed). ``jupyterhub_config.py`` reads the saved :class:`Deployment`.

Folders (``state`` defaults to ``.hub/`` in the repository):

* ``state/hub/`` (700, root): the hub's database, cookie secret and log;
* ``state/jupyter/`` (755): the Jupyter configuration every server of the deployment adds to its role's
  (the exchange and the course id for nbgrader);
* ``state/exchange/`` (1777): nbgrader's exchange;
* ``state/accounts.txt`` (600): the demonstration accounts' passwords;
* ``/home/<grader>/<course>/`` (700, the grader account): the course directory (``source/``, the gradebook,
  submissions, feedback, ``nbgrader_config.py`` = the repository's plus this deployment's lines).

Every account's server runs this repository's ``.venv``. Students must be able to run it but read
nothing else of the instructor's checkout: the checkout's folders that hold solutions, submissions and
grades (and its git history) lose their permission bits for others, and the folders above the
environment's Python and the checkout gain the traverse bit (``o+x``, no listing) where they lack it.
:func:`tear_down` puts every mode back.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..course import REPO_ROOT
from ..loopback import free_port

COURSE_ID = "dl-architectures"
DEFAULT_STATE = REPO_ROOT / ".hub"
HUB_DIR = Path(__file__).resolve().parent
PROXY = HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
DEPLOYMENT_FILE = "deployment.json"

# What a student must not read in the instructor's checkout: solutions and hidden tests, every
# submission, grades, the grading secret, git history (which holds the solutions too), and the sample
# mistakes (lines of the solutions). Modes of others only; the owner and group keep theirs.
LOCKED_IN_CHECKOUT = ("source", "release", "autograded", "submitted", "feedback", "reports", "export", "tests",
                      ".git", "gradebook.db", "grades.csv", ".grading_secret",
                      "utils/instructor/samples", "utils/instructor/equivalent_mutants")


@dataclass
class Deployment:
    """Who uses the hub, where its folders are and which loopback ports it listens on."""

    state: str
    students: list[str]
    instructors: list[str]
    grader: str = f"grader-{COURSE_ID}"
    course_id: str = COURSE_ID
    port: int = 8000                      # the proxy: what browsers open
    hub_port: int = 0                     # the hub's own API, behind the proxy
    proxy_api_port: int = 0
    service_port: int = 0                 # the formgrader service
    db_url: str | None = None             # the gradebook; None: SQLite in the course directory
    python: str = sys.executable
    repo: str = str(REPO_ROOT)
    passwords: dict[str, str] = field(default_factory=dict)
    changed_modes: dict[str, int] = field(default_factory=dict)   # path -> mode before set_up

    @property
    def state_dir(self) -> Path:
        return Path(self.state)

    @property
    def exchange(self) -> Path:
        return self.state_dir / "exchange"

    @property
    def jupyter_dir(self) -> Path:
        return self.state_dir / "jupyter"

    @property
    def hub_dir(self) -> Path:
        return self.state_dir / "hub"

    @property
    def course_dir(self) -> Path:
        return Path("/home") / self.grader / self.course_id

    @property
    def accounts(self) -> list[str]:
        return [self.grader, *self.instructors, *self.students]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def save(self) -> Path:
        path = self.state_dir / DEPLOYMENT_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls, state: str | os.PathLike) -> Deployment:
        return cls(**json.loads((Path(state) / DEPLOYMENT_FILE).read_text()))


# --------------------------------------------------------------------------- accounts


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")


def account_exists(name: str) -> bool:
    import pwd
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def create_account(name: str, password: str) -> None:
    """A Unix account with a home folder only it can read, and a password PAM checks."""
    if account_exists(name):
        raise RuntimeError(f"the account {name!r} exists already: choose other names or run `down` first")
    _run("useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name)
    Path("/home", name).chmod(0o700)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


def remove_account(name: str) -> None:
    if not account_exists(name):
        return
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    _run("userdel", "--remove", name)


# --------------------------------------------------------------------------- permissions


def _chmod(deployment: Deployment, path: Path, mode: int) -> None:
    old = stat.S_IMODE(path.lstat().st_mode)
    if old != mode:
        deployment.changed_modes.setdefault(str(path), old)
        path.chmod(mode)


def open_paths_to_accounts(deployment: Deployment) -> None:
    """Traverse (not list) permission on the folders above the environment's Python, the checkout and the state."""
    python_home = Path(os.path.realpath(deployment.python)).parent
    for target in (python_home, Path(deployment.repo), deployment.state_dir):
        for folder in [*reversed(target.parents), target]:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if not mode & stat.S_IXOTH:
                _chmod(deployment, folder, mode | stat.S_IXOTH)


def lock_checkout(deployment: Deployment) -> None:
    """Others lose every permission on the checkout's private folders; the checkout itself can't be listed."""
    repo = Path(deployment.repo)
    _chmod(deployment, repo, stat.S_IMODE(repo.stat().st_mode) & ~stat.S_IROTH & ~stat.S_IWOTH | stat.S_IXOTH)
    for name in LOCKED_IN_CHECKOUT:
        path = repo / name
        if path.exists() and not path.is_symlink():
            _chmod(deployment, path, stat.S_IMODE(path.stat().st_mode) & ~0o007)


def restore_modes(deployment: Deployment) -> None:
    for path, mode in deployment.changed_modes.items():
        try:
            os.chmod(path, mode)
        except OSError:
            pass
    deployment.changed_modes.clear()


# --------------------------------------------------------------------------- folders and configuration


def _exchange_config(deployment: Deployment) -> str:
    return (f'"""The hub deployment\'s nbgrader settings, for every account (students and the formgrader)."""\n'
            f"c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = {deployment.course_id!r}\n"
            f"c.Exchange.root = {str(deployment.exchange)!r}\n")


def write_course_directory(deployment: Deployment) -> None:
    """The grader's course directory: the source notebooks and the course's nbgrader configuration."""
    course = deployment.course_dir
    course.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(deployment.repo) / "source", course / "source", dirs_exist_ok=True)
    config = (Path(deployment.repo) / "nbgrader_config.py").read_text()
    config += ("\n# ---- this course directory on the hub (utils/instructor/hub/deployment.py) ----\n"
               f"c.Exchange.root = {str(deployment.exchange)!r}\n")
    if deployment.db_url:
        config += f"c.CourseDirectory.db_url = {deployment.db_url!r}\n"
    (course / "nbgrader_config.py").write_text(config)
    _run("chown", "-R", f"{deployment.grader}:{deployment.grader}", str(course))
    course.chmod(0o700)


def write_state(deployment: Deployment) -> None:
    state = deployment.state_dir
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o711)
    deployment.hub_dir.mkdir(exist_ok=True)
    deployment.hub_dir.chmod(0o700)
    deployment.jupyter_dir.mkdir(exist_ok=True)
    deployment.jupyter_dir.chmod(0o755)
    config = deployment.jupyter_dir / "nbgrader_config.py"
    config.write_text(_exchange_config(deployment))
    config.chmod(0o644)
    deployment.exchange.mkdir(exist_ok=True)
    deployment.exchange.chmod(0o1777)
    lines = [f"{name}\t{password}" for name, password in deployment.passwords.items()]
    accounts = state / "accounts.txt"
    accounts.write_text("account\tpassword\n" + "\n".join(lines) + "\n")
    accounts.chmod(0o600)


def set_up(state: str | os.PathLike = DEFAULT_STATE, *, students: list[str], instructors: list[str],
           grader: str = f"grader-{COURSE_ID}", port: int = 8000, db_url: str | None = None,
           passwords: dict[str, str] | None = None) -> Deployment:
    """Create the accounts, folders and configuration of a deployment; returns it, saved."""
    if os.geteuid() != 0:
        raise PermissionError("setting up the hub creates Unix accounts: run it as root")
    if not PROXY.exists():
        raise FileNotFoundError(f"{PROXY.relative_to(REPO_ROOT)} is missing: run `make hub-setup` first")
    deployment = Deployment(state=str(Path(state).resolve()), students=list(students),
                            instructors=list(instructors), grader=grader, port=port, hub_port=free_port(),
                            proxy_api_port=free_port(), service_port=free_port(), db_url=db_url)
    deployment.passwords = {name: (passwords or {}).get(name) or secrets.token_urlsafe(9)
                            for name in deployment.accounts}
    write_state(deployment)
    deployment.save()
    for name in deployment.accounts:
        create_account(name, deployment.passwords[name])
        deployment.save()
    write_course_directory(deployment)
    open_paths_to_accounts(deployment)
    lock_checkout(deployment)
    deployment.save()
    return deployment


def tear_down(state: str | os.PathLike = DEFAULT_STATE) -> None:
    """Remove the deployment's accounts (with their homes and the course directory) and restore modes."""
    path = Path(state) / DEPLOYMENT_FILE
    if not path.exists():
        return
    deployment = Deployment.load(state)
    for name in deployment.accounts:
        remove_account(name)
    restore_modes(deployment)
    shutil.rmtree(deployment.state_dir, ignore_errors=True)
