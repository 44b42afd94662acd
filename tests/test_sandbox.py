"""The grading sandbox: what a kernel inside it can see, and that it starts wherever the course lives."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from utils.grading.sandbox import SandboxSettings, bwrap_command
from utils.instructor.course import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def sandboxed(tmp_path, code: str, blocked=()) -> subprocess.CompletedProcess:
    student, run = tmp_path / "student", tmp_path / "run"
    student.mkdir()
    run.mkdir()
    cmd = bwrap_command([sys.executable, "-c", code], SandboxSettings(
        bwrap=shutil.which("bwrap"), student_dir=str(student), run_dir=str(run), blocked_modules=list(blocked),
        notebook="demo.ipynb", cpu_seconds=60, data_bytes=4 * 2**30, file_bytes=2**26, tmp_bytes=2**26))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=student, timeout=120)


def test_tmp_is_emptied_before_the_environment_is_mounted():
    """An environment or course under /tmp (a CI checkout, a temporary course) must stay visible."""
    cmd = bwrap_command(["true"], SandboxSettings(bwrap="bwrap", student_dir="/tmp/s", run_dir="/tmp/r",
                                                  blocked_modules=[], notebook="x", cpu_seconds=1, data_bytes=1,
                                                  file_bytes=1, tmp_bytes=1))
    tmpfs = next(i for i, arg in enumerate(cmd) if arg == "--tmpfs" and cmd[i + 1] == "/tmp")
    assert all(i > tmpfs for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind"))


def test_the_kernel_sees_the_environment_but_not_the_course(tmp_path):
    probe = (
        "import json, os, numpy, utils.grading.in_kernel.recording\n"
        f"root = {str(REPO_ROOT)!r}\n"
        "print(json.dumps({'source': os.path.exists(os.path.join(root, 'source')),\n"
        "                  'config': os.path.exists(os.path.join(root, 'nbgrader_config.py')),\n"
        "                  'secret': os.path.exists(os.path.join(root, '.grading_secret')),\n"
        "                  'home': os.path.expanduser('~'), 'tmp': os.listdir('/tmp') != []}))\n"
        "open('answer.txt', 'w').write('ok')\n"
        "try:\n    open(os.path.join(root, 'utils', 'x.txt'), 'w')\n"
        "except OSError as e:\n    print('readonly', e.errno)\n")
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


# --------------------------------------------------------------------------- warm kernels (utils/grading/zygote.py)

BUDGET_ARGS = dict(memory_bytes=4 * 2**30, max_pids=256, tmp_bytes=2**26)


def _budget():
    from utils.grading.zygote import KernelBudget
    return KernelBudget(**BUDGET_ARGS)


BUDGET = None if shutil.which("bwrap") is None else _budget()

@pytest.fixture(scope="module")
def warm_course(tmp_path_factory):
    """Two students' folders under one base folder, and a zygote that may reach both."""
    from utils.grading.zygote import KernelZygote
    root = tmp_path_factory.mktemp("warm")
    for student in ("alice", "bob"):
        (root / "autograded" / student / "hw").mkdir(parents=True)
    (root / "autograded" / "bob" / "hw" / "answers.txt").write_text("bob's answers")
    (root / "runs").mkdir()
    zygote = KernelZygote(bwrap=shutil.which("bwrap"), notebook="hw.ipynb", blocked_modules=["torch"],
                          preload=["ipykernel.kernelapp", "numpy"], kernels_base=str(root), budget=BUDGET)
    yield root, zygote
    zygote.close()


class WarmKernel:
    """A kernel forked by the zygote for one student, and a client that runs code in it."""

    def __init__(self, zygote, root, student: str, cpu_seconds: int = 60, run_base=None):
        import tempfile

        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file
        self.folder = root / "autograded" / student / "hw"
        self.run_dir = tempfile.mkdtemp(dir=run_base or root / "runs")
        connection = f"{self.run_dir}/kernel.json"
        write_connection_file(connection, transport="ipc", ip=f"{self.run_dir}/kernel")
        self.process = zygote.spawn(["-f", connection], env=dict(os.environ), cwd=str(self.folder),
                                    keep=[str(self.folder), self.run_dir],
                                    limits={"cpu": cpu_seconds, "data": 4 * 2**30, "fsize": 2**26})
        self.client = BlockingKernelClient()
        self.client.load_connection_file(connection)
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str) -> str:
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        self.client.execute_interactive(code, output_hook=hook, timeout=60)
        return "".join(out)

    def close(self) -> None:
        try:
            self.client.shutdown()
            self.process.wait(timeout=30)
        finally:
            self.client.stop_channels()


def test_a_warm_kernel_sees_only_its_own_student_folder(warm_course):
    root, zygote = warm_course
    kernel = WarmKernel(zygote, root, "alice")
    try:
        seen = json.loads(kernel.run(
            "import json, os\n"
            f"root = {str(root)!r}\n"
            "open('answer.txt', 'w').write('alice')\n"
            "def writable(path):\n"
            "    try:\n        open(path, 'w').close(); return True\n    except OSError:\n        return False\n"
            "print(json.dumps({'students': os.listdir(os.path.join(root, 'autograded')),\n"
            "    'bob': os.path.exists(os.path.join(root, 'autograded', 'bob', 'hw', 'answers.txt')),\n"
            "    'runs': os.listdir(os.path.join(root, 'runs')), 'tmp': os.listdir('/tmp'),\n"
            f"    'course': os.path.exists({str(REPO_ROOT / 'source')!r}), 'home': os.path.expanduser('~'),\n"
            "    'root_writable': writable('/planted'), 'dev_writable': writable('/dev/planted'),\n"
            "    'cwd': os.getcwd()}))\n"))
    finally:
        kernel.close()
    assert seen["students"] == ["alice"] and seen["bob"] is False
    assert seen["runs"] == [os.path.basename(kernel.run_dir)]
    assert seen["course"] is False and seen["home"] == "/tmp"
    assert seen["root_writable"] is False and seen["dev_writable"] is False
    assert seen["cwd"] == str(kernel.folder)
    assert (kernel.folder / "answer.txt").read_text() == "alice"


def test_a_warm_kernel_has_no_capabilities_and_cannot_read_the_zygote(warm_course):
    root, zygote = warm_course
    kernel = WarmKernel(zygote, root, "alice")
    try:
        status = kernel.run("print(open('/proc/self/status').read())")
        # its control pipe would be /proc/<zygote>/fd/0 or 1; memory and environment also refused
        parent = kernel.run(
            "import os\n"
            "zygote = f'/proc/{os.getppid()}'\n"
            "for name in ('environ', 'mem', 'fd/0', 'fd/1', 'fd/3', 'fd/4'):\n"
            "    try:\n        open(f'{zygote}/{name}', 'rb').close(); print(name, 'readable')\n"
            "    except FileNotFoundError:\n        print(name, 'absent')\n"
            "    except OSError as e:\n        print(name, 'denied', e.errno)\n")
        imported = kernel.run("import torch")
    finally:
        kernel.close()
    caps = dict(line.split(":\t") for line in status.splitlines() if line.startswith(("Cap", "NoNewPrivs")))
    assert {k: caps[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == \
        dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), "0000000000000000")
    assert caps["NoNewPrivs"].strip() == "1"
    assert "readable" not in parent and parent.count("denied") >= 4, parent
    assert "graded from scratch" in imported and "hw.ipynb" in imported


def test_what_a_warm_kernel_leaves_behind_is_gone_before_the_next(warm_course):
    root, zygote = warm_course
    first = WarmKernel(zygote, root, "alice")
    try:
        first.run("import subprocess\n"
                  "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
                  "open('/tmp/planted', 'w').write('x'); open('/dev/shm/planted', 'w').write('x')\n")
    finally:
        first.close()
    second = WarmKernel(zygote, root, "bob")
    try:
        seen = json.loads(second.run(
            "import json, os\n"
            "commands = [open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0].decode()\n"
            "            for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(json.dumps({'sleep': 'sleep' in commands, 'tmp': os.path.exists('/tmp/planted'),\n"
            "                  'shm': os.listdir('/dev/shm')}))\n"))
    finally:
        second.close()
    assert seen == {"sleep": False, "tmp": False, "shm": []}


def test_a_warm_kernel_over_its_cpu_limit_is_stopped(warm_course):
    root, zygote = warm_course
    kernel = WarmKernel(zygote, root, "alice", cpu_seconds=1)
    try:
        kernel.client.execute("while True: pass")
        assert kernel.process.wait(timeout=60) == 128 + signal.SIGXCPU   # as a shell reports a signal
    finally:
        kernel.client.stop_channels()


def _descendants(pid: int) -> list[int]:
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_a_warm_kernel_cannot_reach_its_zygote_and_a_stuck_zygote_is_replaced(tmp_path):
    """The kernel's parent is process 1 of its own PID namespace: signals stop nothing; a zygote that
    stops answering (for whatever reason) is killed and the next student gets a new one."""
    from utils.grading.zygote import ZygoteError, ZygotePool
    for student in ("alice", "bob"):
        (tmp_path / "autograded" / student / "hw").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    pool = ZygotePool()
    settings = dict(bwrap=shutil.which("bwrap"), notebook="hw.ipynb", blocked_modules=[],
                    preload=["ipykernel.kernelapp"], kernels_base=str(tmp_path), budget=BUDGET)
    try:
        first = pool.get(**settings)
        kernel = WarmKernel(first, tmp_path, "alice")
        seen = kernel.run("import os, signal\n"
                          "others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]\n"
                          "print(os.getppid(), others)\n"
                          "for pid in others:\n"
                          "    os.kill(pid, signal.SIGSTOP)\n")
        assert seen.strip() == "1 [1]", seen          # its parent, its own namespace's init, is all it sees
        assert first.request(op="poll", pid=kernel.process.pid)["returncode"] is None   # zygote still answers
        kernel.close()
        first.reply_timeout = 2
        for pid in _descendants(first.process.pid):
            os.kill(pid, signal.SIGSTOP)
        with pytest.raises(ZygoteError, match="did not answer"):
            first.request(op="reap")
        assert not first.alive()
        second = pool.get(**settings)
        assert second is not first and second.alive()
        kernel = WarmKernel(second, tmp_path, "bob")
        try:
            assert kernel.run("print(6 * 7)").strip() == "42"
        finally:
            kernel.close()
    finally:
        pool.close()


def test_the_course_reference_of_a_from_scratch_notebook_cannot_be_loaded(tmp_path):
    """Neither its source nor a compiled copy: the NumPy reference is a complete answer."""
    import importlib.util
    module = "utils.deformable_conv.computations"
    source = importlib.util.find_spec(module).origin
    import py_compile
    compiled = importlib.util.cache_from_source(source)
    try:
        py_compile.compile(source, cfile=compiled, doraise=True)
    except OSError:
        pytest.skip("the package folder is read-only here: no compiled copy to hide")
    probe = ("import importlib.machinery, json\n"
             "seen = {}\n"
             f"try:\n    import {module}\n    seen['import'] = 'loaded'\n"
             "except ImportError as e:\n    seen['import'] = str(e)\n"
             f"try:\n    importlib.machinery.SourcelessFileLoader('x', {compiled!r}).load_module()\n"
             "    seen['pyc'] = 'loaded'\n"
             "except Exception as e:\n    seen['pyc'] = type(e).__name__\n"
             "print(json.dumps(seen))\n")
    proc = sandboxed(tmp_path, probe, blocked=[module])
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert "graded from scratch" in seen["import"] and seen["pyc"] != "loaded", seen
