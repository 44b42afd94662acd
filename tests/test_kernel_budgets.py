"""Budgets per kernel, not per process: memory with its tmpfs files, processes, its folder, the notebook's time.

Each test starts code the way a grading kernel is started (bubblewrap, in a control group of its
own, in a kernel folder) and checks that going past a budget stops that code and nothing else.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from utils.grading import cgroups
from utils.grading.kernel_folder import KernelFolderError, KernelFolders
from utils.grading.sandbox import SandboxSettings, bwrap_command

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
needs_cgroups = pytest.mark.skipif(cgroups.create(2**30, 64) is None, reason=cgroups.availability())
MIB = 2**20


@pytest.fixture
def folders():
    kernels = KernelFolders()
    yield kernels
    kernels.close()


def run_budgeted(folder, code: str, memory_mb: int = 400, pids: int = 64, tmp_mb: int = 1024, timeout: int = 120):
    """``code`` in a sandbox in ``folder``, in a new control group; (completed process, group counters)."""
    group = cgroups.create(memory_mb * MIB, pids)
    cmd = bwrap_command([sys.executable, "-c", code], SandboxSettings(
        bwrap=shutil.which("bwrap"), student_dir=str(folder.work), run_dir=str(folder.run), blocked_modules=[],
        notebook="demo.ipynb", cpu_seconds=120, data_bytes=8 * 2**30, file_bytes=2**30, tmp_bytes=tmp_mb * MIB))
    try:
        proc = subprocess.run(cgroups.wrap_command(cmd, group), capture_output=True, text=True, timeout=timeout)
        counters = group.counters() if group else {}
        deadline = time.monotonic() + 10   # processes killed with the sandbox take a moment to exit
        while group and group.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        leftover = group.pids() if group else []
    finally:
        if group:
            group.remove()
    return proc, counters, leftover


@needs_cgroups
def test_files_in_tmp_and_dev_shm_count_towards_the_memory_budget(folders):
    folder = folders.new(64 * MIB, 100)
    code = ("import os\nblock = b'x' * 2**20\n"
            "for i in range(600):\n"
            "    with open(f'/tmp/f{i}' if i % 2 else f'/dev/shm/f{i}', 'wb') as f:\n"
            "        f.write(block)\n"
            "print('wrote 600 MiB')\n")
    proc, counters, leftover = run_budgeted(folder, code, memory_mb=300)
    assert "wrote 600 MiB" not in proc.stdout
    assert counters["oom_kill"] >= 1 or "No space left" in proc.stderr, (proc.returncode, proc.stderr[-500:])
    assert leftover == []


@needs_cgroups
def test_forked_children_share_one_memory_budget(folders):
    folder = folders.new(64 * MIB, 100)
    code = ("import os, time\n"
            "for i in range(8):\n"
            "    if os.fork() == 0:\n"
            "        data = bytearray(100 * 2**20)\n"
            "        for j in range(0, len(data), 4096):\n"
            "            data[j] = 1\n"
            "        time.sleep(30)\n"
            "        os._exit(0)\n"
            "time.sleep(3)\n"
            "print('all alive')\n")
    start = time.monotonic()
    proc, counters, leftover = run_budgeted(folder, code, memory_mb=300)
    assert counters["oom_kill"] >= 1
    assert leftover == [] and time.monotonic() - start < 60


@needs_cgroups
def test_a_fork_bomb_stops_at_the_process_budget(folders):
    folder = folders.new(64 * MIB, 100)
    code = ("import os, time\nstarted = 0\n"
            "for i in range(500):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(20)\n"
            "            os._exit(0)\n"
            "        started += 1\n"
            "    except OSError:\n"
            "        break\n"
            "print(started)\n")
    proc, counters, leftover = run_budgeted(folder, code, pids=40)
    started = int(proc.stdout.split()[-1])
    assert started < 40 and counters["pids_max"] >= 1
    assert leftover == []


def test_a_new_kernel_sees_only_its_own_processes(folders, tmp_path):
    folder = folders.new(64 * MIB, 100)
    code = ("import json, os\n"
            "print(json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))\n")
    proc, _, _ = run_budgeted(folder, code)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) <= 2     # bubblewrap's init and itself


def test_the_kernel_folder_has_a_size_and_file_budget(folders):
    folder = folders.new(8 * MIB, 50)
    if not folders.mounted:
        pytest.skip("the kernel folders are not a bounded tmpfs here (not root): usage is measured afterwards")
    code = ("import os\nmade = 0\n"
            "try:\n"
            "    for i in range(5000):\n"
            "        open(f'f{i}', 'w').close(); made += 1\n"
            "except OSError as e:\n"
            "    print('stopped', e.errno)\n"
            "try:\n"
            "    open('big', 'wb').write(b'x' * 200 * 2**20)\n"
            "except OSError as e:\n"
            "    print('big stopped', e.errno)\n"
            "print(made)\n")
    proc, _, _ = run_budgeted(folder, code)
    assert "stopped 28" in proc.stdout and "big stopped 28" in proc.stdout, proc.stdout + proc.stderr   # ENOSPC
    assert int(proc.stdout.split()[-1]) < 50 + 256
    usage = folder.usage()
    assert usage.bytes <= 8 * MIB + 64 * MIB


def test_the_grader_never_writes_inputs_through_a_link_the_kernel_planted(folders, tmp_path):
    folder = folders.new(64 * MIB, 100)
    outside = tmp_path / "gradebook.db"
    outside.write_text("grades")
    (folder.work / ".grading").mkdir()
    os.symlink(outside, folder.work / ".grading" / "test_cell.inputs.pkl")
    folder.write_inputs("test_cell", b"inputs")
    assert outside.read_text() == "grades"
    assert (folder.work / ".grading" / "test_cell.inputs.pkl").read_bytes() == b"inputs"
    shutil.rmtree(folder.work / ".grading")
    os.symlink(tmp_path, folder.work / ".grading")      # the whole folder replaced by a link
    folder.write_inputs("test_cell", b"inputs")
    assert not (tmp_path / "test_cell.inputs.pkl").exists()
    assert (folder.work / ".grading").is_dir() and not (folder.work / ".grading").is_symlink()


def test_student_files_are_copied_without_links_or_notebooks(folders, tmp_path):
    source = tmp_path / "submitted"
    (source / "data").mkdir(parents=True)
    (source / "data" / "table.csv").write_text("1,2")
    (source / "hw.ipynb").write_text("{}")
    os.symlink("/etc/passwd", source / "passwd")
    os.mkfifo(source / "pipe")
    folder = folders.new(64 * MIB, 100)
    folder.copy_student_files(source)
    assert sorted(str(p.relative_to(folder.work)) for p in folder.work.rglob("*")) == ["data", "data/table.csv"]
    small = folders.new(1 * MIB, 100)
    (source / "big.bin").write_bytes(b"x" * 2 * MIB)
    with pytest.raises(KernelFolderError, match="budget"):
        small.copy_student_files(source)
