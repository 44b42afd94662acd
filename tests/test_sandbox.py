"""The grading sandbox: what a kernel inside it can see, and that it starts wherever the course lives."""
import json
import shutil
import subprocess
import sys

import pytest

from utils.instructor.course import REPO_ROOT
from utils.sandbox import bwrap_command

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def sandboxed(tmp_path, code: str, blocked=()) -> subprocess.CompletedProcess:
    student, run = tmp_path / "student", tmp_path / "run"
    student.mkdir()
    run.mkdir()
    cmd = bwrap_command([sys.executable, "-c", code], bwrap=shutil.which("bwrap"), student_dir=str(student),
                        run_dir=str(run), blocked_modules=list(blocked), notebook="demo.ipynb",
                        cpu_seconds=60, data_bytes=4 * 2**30, file_bytes=2**26)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=student, timeout=120)


def test_tmp_is_emptied_before_the_environment_is_mounted():
    """An environment or course under /tmp (a CI checkout, a temporary course) must stay visible."""
    cmd = bwrap_command(["true"], bwrap="bwrap", student_dir="/tmp/s", run_dir="/tmp/r", blocked_modules=[],
                        notebook="x", cpu_seconds=1, data_bytes=1, file_bytes=1)
    tmpfs = cmd.index("--tmpfs")
    assert cmd[tmpfs + 1] == "/tmp"
    assert all(i > tmpfs for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind"))


def test_the_kernel_sees_the_environment_but_not_the_course(tmp_path):
    probe = (
        "import json, os, numpy, utils.recording\n"
        f"root = {str(REPO_ROOT)!r}\n"
        "print(json.dumps({'source': os.path.exists(os.path.join(root, 'source')),\n"
        "                  'config': os.path.exists(os.path.join(root, 'nbgrader_config.py')),\n"
        "                  'secret': os.path.exists(os.path.join(root, '.grading_secret')),\n"
        "                  'home': os.path.expanduser('~'), 'tmp': os.listdir('/tmp') != []}))\n"
        "open('answer.txt', 'w').write('ok')\n"
        "try:\n    open(os.path.join(root, 'utils', 'x.txt'), 'w')\nexcept OSError as e:\n    print('readonly', e.errno)\n")
    proc = sandboxed(tmp_path, probe)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[0])
    assert seen["source"] is False and seen["config"] is False and seen["secret"] is False
    assert seen["home"] == "/tmp"
    assert "readonly" in proc.stdout
    assert (tmp_path / "student" / "answer.txt").read_text() == "ok"


def test_a_blocked_library_says_why(tmp_path):
    proc = sandboxed(tmp_path, "import torch", blocked=["torch"])
    assert proc.returncode != 0
    assert "graded from scratch" in proc.stderr and "demo.ipynb" in proc.stderr


def test_no_network(tmp_path):
    proc = sandboxed(tmp_path, "import socket\ns = socket.socket()\ns.settimeout(2)\n"
                               "try:\n    s.connect(('1.1.1.1', 80)); print('connected')\n"
                               "except OSError as e:\n    print('refused', e)\n")
    assert "refused" in proc.stdout and "connected" not in proc.stdout
