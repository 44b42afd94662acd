"""``python -m utils.instructor.hub up|down``: the course's JupyterHub on loopback (``make hub``).

    up     create the accounts (an instructor and two students unless named), the course directory and the
           exchange; start the hub on http://127.0.0.1:PORT/ and print who can log in; Ctrl-C stops the hub
           (the accounts stay, so work is kept: `up` again reuses them)
    down   stop nothing, remove the deployment: its accounts with their homes, the course directory,
           the exchange, and the permissions `up` changed
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .deployment import DEFAULT_STATE, DEPLOYMENT_FILE, HUB_DIR, Deployment, set_up, tear_down


class Hub:
    """A running JupyterHub of a deployment: ``with Hub(deployment): ...``."""

    def __init__(self, deployment: Deployment, log: Path | None = None):
        self.deployment = deployment
        self.log_path = log or deployment.hub_dir / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Hub:
        env = {**os.environ, "COURSE_HUB_STATE": self.deployment.state}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.deployment.python, "-m", "jupyterhub", "-f", str(HUB_DIR / "jupyterhub_config.py")],
            cwd=self.deployment.hub_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.deployment.url + "hub/health", timeout=5) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"JupyterHub did not answer in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # the hub, the proxy, the service, users' servers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for name in self.deployment.accounts:   # servers the hub started in sessions of their own
            subprocess.run(["pkill", "-TERM", "-u", name], capture_output=True)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--state", default=str(DEFAULT_STATE), help="the deployment's folder (default .hub/)")
    parser.add_argument("--port", type=int, default=8000, help="the hub's port on 127.0.0.1 (default 8000)")
    parser.add_argument("--students", default="student1,student2", help="comma-separated student accounts")
    parser.add_argument("--instructors", default="instructor", help="comma-separated instructor/TA accounts")
    args = parser.parse_args(argv)
    if args.action == "down":
        tear_down(args.state)
        print(f"removed the hub deployment of {args.state}")
        return 0
    if (Path(args.state) / DEPLOYMENT_FILE).exists():
        deployment = Deployment.load(args.state)
    else:
        deployment = set_up(args.state, students=args.students.split(","), instructors=args.instructors.split(","),
                            port=args.port)
    with Hub(deployment) as hub:
        print(f"JupyterHub of the course: {deployment.url}  (log: {hub.log_path})")
        for name in [*deployment.instructors, *deployment.students]:
            role = "instructor" if name in deployment.instructors else "student"
            print(f"  {role:<10} {name:<16} password {deployment.passwords[name]}")
        print(f"Instructors open the formgrader at {deployment.url}services/{deployment.course_id}/formgrader "
              f"(or Services in the hub's menu). Ctrl-C stops the hub; `make hub-down` removes the accounts.")
        try:
            while hub.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
